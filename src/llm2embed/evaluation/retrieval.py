"""Retrieval: rank a corpus for each query by cosine similarity; nDCG@10, MRR@10 and Recall@100 (x 100).

Reads the BEIR layout::

    folder/corpus.jsonl     {"_id": "d1", "title": "...", "text": "..."}   (title optional, prepended)
    folder/queries.jsonl    {"_id": "q1", "text": "..."}
    folder/qrels/test.tsv   query-id <TAB> corpus-id <TAB> score            (header line optional)

A document is relevant when its qrels score is > 0 (binary relevance). Ranking and metrics are those of
sentence-transformers' ``InformationRetrievalEvaluator`` (ties broken by ascending corpus id), run on
embeddings computed beforehand so they can be cached.

>>> data = load_beir("my-beir-folder")                                       # doctest: +SKIP
>>> evaluate_retrieval(encoder, data, "Given a question, retrieve passages that answer it")  # doctest: +SKIP
{'ndcg@10': 41.2, 'mrr@10': 37.0, 'recall@100': 88.5}
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .embedding import embed_texts

__all__ = ["RetrievalData", "evaluate_retrieval", "load_beir", "retrieval_metrics"]


@dataclass
class RetrievalData:
    """Queries and corpus (id -> text) and the relevant corpus ids of each query."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]
    name: str = "retrieval"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.relevant = {q: set(d) for q, d in self.relevant.items() if q in self.queries and d}
        missing = {d for docs in self.relevant.values() for d in docs} - set(self.corpus)
        if missing:
            raise ValueError(f"{self.name}: qrels name {len(missing)} corpus ids that are not in the corpus, "
                             f"e.g. {sorted(missing)[:3]}")
        if not self.relevant:
            raise ValueError(f"{self.name}: no query has a relevant document")

    @property
    def query_ids(self) -> list[str]:
        """The queries that are scored: those with at least one relevant document, in file order."""
        return [q for q in self.queries if q in self.relevant]

    def sizes(self) -> dict[str, int]:
        return {"queries": len(self.query_ids), "corpus": len(self.corpus),
                "relevant_pairs": sum(len(v) for v in self.relevant.values())}


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not valid JSON: {exc}") from exc
    return rows


def _row_id(row: dict, path: Path) -> str:
    value = row.get("_id", row.get("id"))
    if value is None:
        raise ValueError(f"{path}: a row has neither '_id' nor 'id': {str(row)[:80]}")
    return str(value)


def _read_qrels(path: Path) -> dict[str, set[str]]:
    relevant: dict[str, set[str]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, cols in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not cols or (lineno == 1 and cols[0] in ("query-id", "query_id", "qid")):
                continue
            if len(cols) < 3:
                raise ValueError(f"{path}:{lineno}: expected query-id, corpus-id, score")
            if float(cols[2]) > 0:
                relevant.setdefault(cols[0], set()).add(cols[1])
    return relevant


def load_beir(folder: str | os.PathLike, split: str = "test") -> RetrievalData:
    """Load a BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``)."""
    folder = Path(folder)
    paths = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
             "qrels": folder / "qrels" / f"{split}.tsv"}
    for what, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"BEIR folder {folder}: {what} file {path} does not exist")
    corpus = {}
    for row in _read_jsonl(paths["corpus"]):
        title, text = str(row.get("title") or "").strip(), str(row.get("text") or "")
        corpus[_row_id(row, paths["corpus"])] = f"{title} {text}".strip() if title else text
    queries = {_row_id(row, paths["queries"]): str(row["text"]) for row in _read_jsonl(paths["queries"])}
    return RetrievalData(queries, corpus, _read_qrels(paths["qrels"]), name=folder.name)


class _Precomputed:
    """Stands in for a SentenceTransformer inside its IR evaluator: returns the query embeddings given."""

    similarity_fn_name = "cosine"

    def __init__(self, embeddings):
        self.embeddings = embeddings

    def encode_query(self, sentences, **kwargs):
        if len(sentences) != len(self.embeddings):
            raise ValueError("query embeddings do not match the evaluator's queries")
        return self.embeddings


def retrieval_metrics(query_emb: np.ndarray, corpus_emb: np.ndarray, data: RetrievalData) -> dict[str, float]:
    """nDCG@10, MRR@10, Recall@100 (x 100) from embeddings of ``data.query_ids`` and of ``data.corpus``.

    Rows of ``query_emb`` follow ``data.query_ids``; rows of ``corpus_emb`` follow ``data.corpus``.
    """
    import torch
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    query_ids = data.query_ids
    if len(query_emb) != len(query_ids) or len(corpus_emb) != len(data.corpus):
        raise ValueError(f"got {len(query_emb)} query / {len(corpus_emb)} corpus embeddings for "
                         f"{len(query_ids)} queries / {len(data.corpus)} documents")
    evaluator = InformationRetrievalEvaluator(
        queries={q: data.queries[q] for q in query_ids}, corpus=data.corpus, relevant_docs=data.relevant,
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[100], map_at_k=[100],
        score_functions={"cosine": cos_sim}, write_csv=False,
    )
    q = torch.as_tensor(np.asarray(query_emb, dtype=np.float32))
    c = torch.as_tensor(np.asarray(corpus_emb, dtype=np.float32))
    scores = evaluator.compute_all_metrics(_Precomputed(q), corpus_embeddings=c)["cosine"]
    return {"ndcg@10": 100.0 * float(scores["ndcg@k"][10]), "mrr@10": 100.0 * float(scores["mrr@k"][10]),
            "recall@100": 100.0 * float(scores["recall@k"][100])}


def evaluate_retrieval(encoder, data: RetrievalData, query_instruction: str | None = None, batch_size: int = 32,
                       show_progress_bar: bool | None = None) -> dict[str, float]:
    """Embed queries (with ``query_instruction``) and documents (never with one), return the metrics."""
    query_ids = data.query_ids
    q = embed_texts(encoder, [data.queries[i] for i in query_ids], query_instruction, batch_size, show_progress_bar)
    c = embed_texts(encoder, list(data.corpus.values()), None, batch_size, show_progress_bar)
    return retrieval_metrics(q, c, data)
