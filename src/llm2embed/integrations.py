"""Use a saved llm2embed encoder from sentence-transformers and LlamaIndex, with no llm2embed import there.

A saved encoder is a standard sentence-transformers folder: ``config.json`` carries ``"is_causal": false``
(transformers builds bidirectional masks from it), ``Pooling`` has ``include_prompt=False`` (instruction
tokens are attended to but not pooled) and ``config_sentence_transformers.json`` stores the query
instruction as a sentence-transformers *prompt*::

    {"prompts": {"query": "Given a question, retrieve passages that answer it:\\n", "document": ""},
     "default_prompt_name": null}

so documents get no prompt and ``SentenceTransformer.encode_query`` applies the instruction exactly as
``Encoder.encode([[instruction, query]])`` does.

Storing the instruction::

    from llm2embed import Encoder
    from llm2embed.integrations import set_query_instruction

    enc = Encoder.from_pretrained("smollm2-135m")
    set_query_instruction(enc, "Given a question, retrieve passages that answer it:")
    enc.save("out/my-encoder")

Using it elsewhere::

    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer("out/my-encoder")            # bidirectional, prompts loaded
    q = model.encode_query(["who wrote Hamlet?"])            # == enc.encode([[instruction, "who wrote Hamlet?"]])
    d = model.encode_document(["Hamlet is a tragedy by William Shakespeare."])   # no prompt

    from llm2embed.integrations import llamaindex_embedding
    embed_model = llamaindex_embedding("out/my-encoder")     # HuggingFaceEmbedding with query_instruction set

LlamaIndex's ``HuggingFaceEmbedding`` replaces the saved prompts with its own ``query_instruction`` and
``text_instruction`` arguments (empty when not given), so without ``query_instruction=`` queries are embedded
*without* the instruction. :func:`llamaindex_embedding` (or ``query_instruction=stored_query_prompt(path)``)
restores it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .encoder import format_instruction

__all__ = [
    "DOCUMENT_PROMPT",
    "QUERY_PROMPT",
    "encode_documents",
    "encode_queries",
    "llamaindex_embedding",
    "query_instruction",
    "set_query_instruction",
    "stored_query_prompt",
]

QUERY_PROMPT = "query"
DOCUMENT_PROMPT = "document"
ST_CONFIG_FILE = "config_sentence_transformers.json"


def set_query_instruction(encoder, instruction: str | None) -> str:
    """Store ``instruction`` as the encoder's sentence-transformers ``query`` prompt; return the prompt text.

    ``encoder`` is an :class:`~llm2embed.Encoder` (or a ``SentenceTransformer``). Its prompts become
    ``{"query": format_instruction(instruction), "document": ""}`` (other prompt names are kept) and
    ``default_prompt_name`` is left unset, so plain ``encode`` and ``encode_document`` use no prompt.
    ``Encoder.save`` writes the prompts into the folder. ``None`` or ``""`` removes the instruction.
    ``Encoder.encode`` is unaffected: it applies instructions only to ``[instruction, text]`` pairs.

    >>> set_query_instruction(enc, "Retrieve passages about music: ")   # doctest: +SKIP
    'Retrieve passages about music:\\n'
    """
    prompt = format_instruction(instruction or "")
    st_model = encoder.st_model if hasattr(encoder, "st_model") else encoder
    prompts = {k: v for k, v in dict(st_model.prompts or {}).items() if v is not None}
    prompts[QUERY_PROMPT] = prompt
    prompts[DOCUMENT_PROMPT] = ""
    st_model.prompts = prompts
    st_model.default_prompt_name = None
    return prompt


def query_instruction(model) -> str:
    """The stored query prompt text of an ``Encoder``, a ``SentenceTransformer`` or a saved folder ('' if none).

    >>> query_instruction("out/my-encoder")                 # doctest: +SKIP
    'Given a question, retrieve passages that answer it:\\n'
    """
    if isinstance(model, (str, os.PathLike)):
        return stored_query_prompt(model)
    st_model = model.st_model if hasattr(model, "st_model") else model
    return (st_model.prompts or {}).get(QUERY_PROMPT) or ""


def stored_query_prompt(path: str | os.PathLike) -> str:
    """The ``query`` prompt saved in a sentence-transformers folder, read from its config ('' if none).

    Reads ``config_sentence_transformers.json`` only (no model is loaded), so it is cheap enough to call
    when building a LlamaIndex embedding: ``HuggingFaceEmbedding(model_name=path,
    query_instruction=stored_query_prompt(path))``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a saved encoder folder")
    config_path = folder / ST_CONFIG_FILE
    if not config_path.is_file():
        return ""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from exc
    return (config.get("prompts") or {}).get(QUERY_PROMPT) or ""


def encode_queries(encoder, queries, **encode_kwargs):
    """``encoder.encode`` of queries with the stored query instruction (none stored: plain texts).

    >>> encode_queries(enc, ["who wrote Hamlet?"]).shape    # doctest: +SKIP
    (1, 576)
    """
    single = isinstance(queries, str)
    items = [queries] if single else list(queries)
    prompt = query_instruction(encoder)
    out = encoder.encode([[prompt, q] for q in items] if prompt else items, **encode_kwargs)
    return out[0] if single else out


def encode_documents(encoder, documents, **encode_kwargs):
    """``encoder.encode`` of documents with the stored document prompt (llm2embed stores none)."""
    single = isinstance(documents, str)
    items = [documents] if single else list(documents)
    prompt = (encoder.st_model.prompts or {}).get(DOCUMENT_PROMPT) or ""
    out = encoder.encode([[prompt, d] for d in items] if prompt else items, **encode_kwargs)
    return out[0] if single else out


def llamaindex_embedding(path: str | os.PathLike, **kwargs: Any):
    """LlamaIndex's ``HuggingFaceEmbedding`` for a saved encoder, with the stored query instruction applied.

    ``HuggingFaceEmbedding`` overrides saved prompts with its own arguments, so this passes
    ``query_instruction=stored_query_prompt(path)`` (and ``text_instruction=""``) unless given in ``kwargs``.
    Needs ``pip install llama-index-embeddings-huggingface``.

    >>> from llm2embed.integrations import llamaindex_embedding
    >>> embed_model = llamaindex_embedding("out/my-encoder", device="cpu")   # doctest: +SKIP
    >>> len(embed_model.get_query_embedding("who wrote Hamlet?"))           # doctest: +SKIP
    576
    """
    try:
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("llamaindex_embedding needs `pip install llama-index-embeddings-huggingface`") from exc

    kwargs.setdefault("query_instruction", stored_query_prompt(path) or None)
    kwargs.setdefault("text_instruction", None)
    return HuggingFaceEmbedding(model_name=os.fspath(path), **kwargs)
