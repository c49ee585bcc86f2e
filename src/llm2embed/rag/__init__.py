"""Retrieval-augmented generation with one model: index with ``embed``, answer with ``generate``.

>>> from llm2embed.rag import RAG
>>> with RAG("out/rag-store") as rag:                      # default model: see default_model()
...     rag.index(["docs/"])
...     print(rag.ask("Which vector store does llm2embed use?").format())   # doctest: +SKIP

Modules: :mod:`~llm2embed.rag.chunking` (files -> token windows), :mod:`~llm2embed.rag.store` (Qdrant,
embedded or server), :mod:`~llm2embed.rag.engine` (indexing, retrieval, answers),
:mod:`~llm2embed.rag.cli` (``llm2embed rag index|ask``).
"""

from .engine import RAG, Answer, IndexReport, default_model, load_rag_model
from .store import Hit, VectorStore, open_store

__all__ = ["RAG", "Answer", "Hit", "IndexReport", "VectorStore", "default_model", "load_rag_model", "open_store"]
