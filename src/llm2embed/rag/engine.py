"""RAG end to end: index files into the vector store with ``embed``, answer with ``generate`` of the same model.

Indexing (:meth:`RAG.index`) is incremental and crash-safe:

1. every ``.txt``/``.md``/``.jsonl`` file under the given paths is hashed (sha256 of its bytes);
2. a file whose points in the store all carry that hash, ``n_chunks`` of them, is skipped;
3. a new or changed file is chunked (token windows with overlap), embedded in slices of ``write_every``
   chunks and written slice by slice; only when all its chunks are in are the points of its older
   version deleted;
4. files that were indexed and no longer exist are removed from the store.

A crash at any point leaves every earlier file complete and searchable (each write is its own
transaction); the file being written is either still its old version, or both versions at once until the
rerun redoes it (point ids are deterministic, so nothing is duplicated).

Asking (:meth:`RAG.ask`): the question is embedded as a query (the model's stored query instruction), the
``k`` nearest chunks are numbered as sources in a prompt, and the same model, adapter off and causal,
answers; the answer comes back with its sources cited by file and chunk.

>>> from llm2embed.rag import RAG
>>> rag = RAG("out/rag-store", model="runs/default/simcse/encoder")        # doctest: +SKIP
>>> rag.index(["docs/", "notes.md"])                                       # doctest: +SKIP
IndexReport(files=12, indexed=12, skipped=0, removed=0, chunks=87)
>>> print(rag.ask("How is the store kept consistent?", k=4).format())      # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chunking import chunk_spans, file_hash, find_files, read_documents
from .store import Hit, VectorStore, open_store

logger = logging.getLogger(__name__)

__all__ = ["RAG", "Answer", "IndexReport", "default_model", "load_rag_model"]

DEFAULT_RUN = Path("runs/default")
# without a trained encoder: the training-free PromptEOL encoder of the embedded default (STS-B test 65.30,
# wiki retrieval nDCG@10 62.93, against 18.66 for causal mean pooling; docs/pipeline.md)
UNTRAINED_DEFAULT = "smollm2-135m:prompteol"
SYSTEM_PROMPT = ("You answer the question using only the numbered sources. Cite the sources you use like [1]. "
                 "If the sources do not contain the answer, say that you do not know.")


def _trained_pooling_twin(final: Path) -> Path | None:
    """``STAGE/encoder`` when ``final`` is its re-pooled sibling (``llm2embed.repool``), else ``None``."""
    from ..encoder import METADATA_FILE

    try:
        meta = json.loads((final / METADATA_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    twin = final.parent / "encoder"
    if meta.get("trained_pooling_mode") and twin != final and (twin / METADATA_FILE).is_file():
        return twin
    return None


def default_model(run: str | os.PathLike = DEFAULT_RUN) -> tuple[str, str]:
    """``(model spec, why)``: the default pipeline's final encoder when ``run`` has one, else the embedded default.

    The final encoder is the one ``run/summary.json`` names, else the last of ``supervised``/``simcse``
    ``encoder/`` folders present. A final encoder handed out with another pooling than it was trained with
    (the pipeline's ``encoder_pooling_mode``) is replaced by its trained-pooling twin beside it: the default
    hands out ``last_token+mean``, and the last token alone retrieves better (wiki nDCG@10 77.95 vs 76.83).
    """
    from ..dual import _is_saved_encoder

    run = Path(run)
    candidates = []
    summary = run / "summary.json"
    if summary.is_file():
        try:
            final = json.loads(summary.read_text()).get("final")
        except json.JSONDecodeError:
            final = None
        if final:
            trained = _trained_pooling_twin(Path(final))
            if trained is not None:
                candidates.append((trained, f"the final encoder of {summary} with its trained pooling "
                                            "(better for retrieval)"))
            candidates.append((Path(final), f"the final encoder of {summary}"))
    for stage in ("supervised", "simcse"):
        candidates.append((run / stage / "encoder", f"the {stage} encoder of {run}"))
    for path, why in candidates:
        if _is_saved_encoder(path) and (path / "adapter" / "adapter_config.json").is_file():
            return str(path), f"{why}: {path}"
    return UNTRAINED_DEFAULT, (f"no trained encoder under {run}: the embedded default {UNTRAINED_DEFAULT} "
                               "(training-free PromptEOL)")


class _EmbeddingOnly:
    """A baseline that embeds but cannot generate: an Encoder (``:causal`` ...) or a SentenceTransformer."""

    def __init__(self, spec: str, max_length: int | None = None):
        from ..evaluation.models import load_model, parse_model_spec

        parsed = parse_model_spec(spec)
        self.spec = spec
        self.model = load_model(parsed, max_length=max_length)
        self.uses_instructions = parsed.uses_instructions
        self.tokenizer = self.model.tokenizer

    @property
    def query_prompt(self) -> str:
        from ..integrations import query_instruction

        return query_instruction(self.model) if self.uses_instructions else ""

    def embed(self, texts, *, kind: str = "document", instruction: str | None = None, batch_size: int = 32,
              normalize: bool = True, show_progress_bar: bool = False) -> np.ndarray:
        items = [texts] if isinstance(texts, str) else list(texts)
        prompt = instruction if instruction is not None else (self.query_prompt if kind == "query" else "")
        if prompt and self.uses_instructions:
            items = [[prompt, t] for t in items]
        out = self.model.encode(items, batch_size=batch_size, normalize_embeddings=normalize,
                                show_progress_bar=show_progress_bar, convert_to_numpy=True)
        return out[0] if isinstance(texts, str) else out

    def complete(self, *args, **kwargs):
        raise ValueError(f"{self.spec} is an embedding-only model: it cannot answer. Index and ask with an "
                         "llm2embed encoder (its base model generates), or use retrieve()")


def load_rag_model(spec: str | os.PathLike):
    """A model for RAG: a :class:`~llm2embed.dual.DualModel` when ``spec`` can generate (a saved encoder
    with its adapter, or a decoder spec), else an embedding-only baseline (``minilm``, ``X:causal``, a plain
    sentence-transformers folder) that can index and retrieve but not answer. ``X:prompteol`` (the
    training-free PromptEOL encoder of decoder ``X``) is a dual model too."""
    from ..dual import DualModel, _is_saved_encoder

    text = os.fspath(spec)
    path = Path(text).expanduser()
    if ":" in text and not path.exists() or text == "minilm":
        from ..evaluation.models import parse_model_spec

        parsed = parse_model_spec(text)  # the spec suffixes of `llm2embed eval`
        if parsed.prompt_template and parsed.dtype is None:  # a training-free template: it embeds and answers
            return DualModel.from_pretrained(parsed.source, prompt_template=parsed.prompt_template)
        return _EmbeddingOnly(text)
    if path.is_dir() and (path / "modules.json").is_file() and not (
            _is_saved_encoder(path) and (path / "adapter" / "adapter_config.json").is_file()):
        return _EmbeddingOnly(text)  # merged-only or foreign sentence-transformers folder
    return DualModel.from_pretrained(text)


@dataclass
class IndexReport:
    """What :meth:`RAG.index` did: files seen, (re)indexed, skipped as unchanged, removed; chunks written."""

    files: int = 0
    indexed: int = 0
    skipped: int = 0
    removed: int = 0
    chunks: int = 0
    removed_sources: list[str] = field(default_factory=list, repr=False)


@dataclass
class Answer:
    """A generated answer and the retrieved chunks it was given (``hits[i]`` is source ``[i + 1]``)."""

    question: str
    text: str
    hits: list[Hit]

    def format(self) -> str:
        lines = [self.text.strip() or "(no answer)", "", "Sources:"]
        for i, hit in enumerate(self.hits, 1):
            lines.append(f"[{i}] {hit.citation}  (score {hit.score:.3f})")
        return "\n".join(lines)


class RAG:
    """Index files into a vector store and answer questions, with one model for retrieval and generation.

    Args:
        store: a folder (Qdrant local mode, created if missing), a server URL, or a :class:`VectorStore`.
        model: a :class:`~llm2embed.dual.DualModel` (or baseline) or a spec for :func:`load_rag_model`.
            ``None``: the model the store was indexed with, else :func:`default_model`.
        chunk_tokens, overlap: the token windows (in the model's tokenizer, or ``chunk_tokenizer``'s).
        instruction: query instruction for retrieval (default: the one stored in the model).

    >>> rag = RAG("out/rag-store")                                  # doctest: +SKIP
    >>> report = rag.index(["docs/"])                               # doctest: +SKIP
    >>> answer = rag.ask("Which vector store is used?", k=4)        # doctest: +SKIP
    >>> print(answer.format())                                      # doctest: +SKIP
    """

    def __init__(self, store: str | os.PathLike | VectorStore, model: Any = None, *, chunk_tokens: int = 200,
                 overlap: int = 40, chunk_tokenizer=None, instruction: str | None = None, write_every: int = 64,
                 echo=print):
        self.store = store if isinstance(store, VectorStore) else open_store(store)
        self.chunk_tokens, self.overlap = int(chunk_tokens), int(overlap)
        self.chunk_tokenizer = chunk_tokenizer
        self.instruction = instruction
        self.write_every = int(write_every)
        self.echo = echo or (lambda *_: None)
        self._model = None
        self.model_spec: str | None = None
        if model is not None and not isinstance(model, (str, os.PathLike)):
            self._model, self.model_spec = model, getattr(model, "spec", None) or repr(model)
        elif model is not None:
            self.model_spec = _canonical_spec(model)

    # ---------------------------------------------------------------- model
    @property
    def model(self):
        if self._model is None:
            if self.model_spec is None:
                recorded = (self.store.any_payload() or {}).get("model")
                if recorded:
                    self.model_spec = recorded
                    self.echo(f"model: {recorded} (the one this store was indexed with)")
                else:
                    self.model_spec, why = default_model()
                    self.echo(f"model: {why}")
            self._model = load_rag_model(self.model_spec)
        return self._model

    def _check_model(self, state: dict[str, dict[str, Any]]) -> None:
        recorded = {e["model"] for e in state.values()} - {None}
        if recorded and recorded != {self.model_spec}:
            raise ValueError(f"the store {self.store.location} was indexed with {sorted(recorded)[0]}, not "
                             f"{self.model_spec}: embeddings of two models cannot be mixed; pass --model "
                             f"{sorted(recorded)[0]} or use a new --store")

    # ---------------------------------------------------------------- indexing
    def index(self, paths: Iterable[str | os.PathLike], *, progress: bool = True, batch_size: int = 32) -> IndexReport:
        """Index (or re-index) files; see the module docstring for what is skipped, redone and removed."""
        from tqdm.auto import tqdm

        files = find_files(paths)
        state = self.store.scan()
        if self.model_spec is not None:  # a wrong model is an error before it is loaded
            self._check_model(state)
        model = self.model
        self._check_model(state)
        tokenizer = self.chunk_tokenizer or model.tokenizer
        report = IndexReport(files=len(files))
        current = {str(f) for f in files}
        for source in sorted(set(state) - current):
            if source is not None and not Path(source).exists():
                self.store.delete_source(source)
                report.removed += 1
                report.removed_sources.append(source)

        planned = []  # (source, digest, payloads)
        for path in files:
            source, digest = str(path), file_hash(path)
            entry = state.get(source)
            if entry and entry["hashes"] == {digest: entry["n_chunks"].get(digest)}:
                report.skipped += 1
                continue
            payloads = []
            for doc in read_documents(path):
                for start, end in chunk_spans(doc.text, tokenizer, self.chunk_tokens, self.overlap):
                    payloads.append({"source": source, "record": doc.record, "title": doc.title,
                                     "start": start, "end": end, "text": doc.text[start:end]})
            for i, p in enumerate(payloads):
                p.update(chunk=i, n_chunks=len(payloads), file_hash=digest, model=self.model_spec)
            planned.append((source, digest, payloads))

        total = sum(len(p) for _, _, p in planned)
        if planned and total:
            dimension = model.embedding_dimension if hasattr(model, "embedding_dimension") else \
                int(model.embed(["dimension probe"]).shape[-1])
            self.store.ensure(dimension)
        with tqdm(total=total, unit="chunk", desc="Indexing", disable=not progress) as bar:
            for source, digest, payloads in planned:
                for start in range(0, len(payloads), self.write_every):
                    part = payloads[start:start + self.write_every]
                    vectors = model.embed([p["text"] for p in part], batch_size=batch_size)
                    self.store.upsert(vectors, part)
                    bar.update(len(part))
                if self.store.exists():
                    self.store.delete_stale(source, digest)  # the older version goes once the new one is whole
                report.indexed += 1
                report.chunks += len(payloads)
        return report

    # ---------------------------------------------------------------- asking
    def retrieve(self, question: str, k: int = 4) -> list[Hit]:
        """The ``k`` chunks nearest to ``question`` (embedded as a query), best first."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question must be a non-empty string")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        vector = self.model.embed([question], kind="query", instruction=self.instruction)[0]
        return self.store.search(vector, k)

    def retrieve_many(self, questions: Sequence[str], k: int = 4, batch_size: int = 32) -> list[list[Hit]]:
        """:meth:`retrieve` for many questions, embedded in batches."""
        vectors = self.model.embed(list(questions), kind="query", instruction=self.instruction,
                                   batch_size=batch_size)
        return [self.store.search(v, k) for v in vectors]

    def ask(self, question: str, k: int = 4, max_new_tokens: int = 256, **generate_kwargs: Any) -> Answer:
        """Retrieve ``k`` chunks and answer from them with the same model; cites sources by file and chunk."""
        hits = self.retrieve(question, k)
        messages = build_messages(question, hits)
        completion = self.model.complete(messages, max_new_tokens=max_new_tokens, **generate_kwargs)
        return Answer(question, completion.text, hits)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_messages(question: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    """The chat messages for an answer: numbered sources (citation and text), then the question."""
    sources = "\n\n".join(f"[{i}] ({_label(hit)})\n{hit.payload.get('text', '').strip()}"
                          for i, hit in enumerate(hits, 1))
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {question.strip()}"}]


def _label(hit: Hit) -> str:
    """A source's short name in the prompt: file name (and title); the printed citation has the full path."""
    title = hit.payload.get("title")
    return Path(str(hit.payload.get("source", "?"))).name + (f": {title}" if title else "")


def _canonical_spec(model: str | os.PathLike) -> str:
    """A saved folder's absolute path (so the store records what loads it from anywhere), else the spec."""
    path = Path(os.fspath(model)).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(model)
