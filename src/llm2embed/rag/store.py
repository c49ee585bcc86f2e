"""The vector store: Qdrant, embedded on disk by default, the same client code against a Qdrant server.

``open_store("my-store")`` opens (or creates) Qdrant's *local mode* in that folder: no server, points kept
in SQLite (every write is its own transaction) and searched in memory. ``open_store("http://host:6333")``
talks to a Qdrant server with the same calls, for when one machine is no longer enough. Local mode lets
one process open a folder at a time (Qdrant locks it); a second gets a clear error.

Every point is one chunk; its payload says where it came from and how it was made::

    {"source": "/abs/path/notes.md", "chunk": 3, "text": "...", "start": 812, "end": 1460,
     "file_hash": "<sha256 of the file>", "n_chunks": 7, "record": null, "title": null,
     "model": "runs/default/simcse/encoder"}

A file is complete in the store when it has ``n_chunks`` points with its current ``file_hash``: that is
what lets a re-index skip unchanged files and redo a file a crash left half-written (see
:mod:`llm2embed.rag.engine`). Point ids are deterministic (uuid5 of source, hash and chunk), so writing a
chunk twice replaces it.

>>> store = open_store("out/rag-store")                       # doctest: +SKIP
>>> store.search(vector, k=4)[0].payload["source"]            # doctest: +SKIP
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLLECTION", "Hit", "VectorStore", "open_store"]

COLLECTION = "llm2embed"
_NAMESPACE = uuid.UUID("6f1d6c4e-3b0c-4b8e-9a51-2f4c7d1e8a90")


@dataclass
class Hit:
    """One retrieved chunk: cosine score and payload (``source``, ``chunk``, ``text``, ...)."""

    score: float
    payload: dict[str, Any]

    @property
    def citation(self) -> str:
        """``file#chunk`` (``file:line#chunk`` for a JSONL record); a file under the working folder relative to it."""
        source = self.payload.get("source", "?")
        try:
            relative = os.path.relpath(source)
            source = source if relative.startswith("..") else relative
        except ValueError:  # another drive (Windows)
            pass
        record = self.payload.get("record")
        where = f"{source}:{record}" if record else source
        title = self.payload.get("title")
        return f"{where}#chunk{self.payload.get('chunk')}" + (f" ({title})" if title else "")


def point_id(source: str, digest: str, chunk: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{source}\0{digest}\0{chunk}"))


class VectorStore:
    """The operations the RAG engine needs, over a ``QdrantClient`` and one collection (cosine distance)."""

    def __init__(self, client, collection: str = COLLECTION, location: str | None = None):
        self.client = client
        self.collection = collection
        self.location = location

    @property
    def remote(self) -> bool:
        return bool(self.location) and self.location.startswith(("http://", "https://"))

    # ---------------------------------------------------------------- collection
    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def dimension(self) -> int | None:
        if not self.exists():
            return None
        vectors = self.client.get_collection(self.collection).config.params.vectors
        return int(vectors.size)

    def ensure(self, dimension: int) -> None:
        """Create the collection for ``dimension``-d vectors, or check an existing one has that size."""
        from qdrant_client import models

        current = self.dimension()
        if current is None:
            self.client.create_collection(self.collection, vectors_config=models.VectorParams(
                size=int(dimension), distance=models.Distance.COSINE))
            if self.remote:  # a server indexes the filter field (local mode has no payload indexes)
                self.client.create_payload_index(self.collection, "source", models.PayloadSchemaType.KEYWORD)
        elif current != int(dimension):
            raise ValueError(f"the store {self.location or self.collection} holds {current}-d vectors; this model "
                             f"gives {dimension}-d: use the model it was indexed with or a new --store")

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count) if self.exists() else 0

    # ---------------------------------------------------------------- per-file state
    def scan(self) -> dict[str, dict[str, Any]]:
        """``{source: {"hashes": {file_hash: points}, "n_chunks": {file_hash: n}, "model": str}}`` in one pass."""
        state: dict[str, dict[str, Any]] = {}
        if not self.exists():
            return state
        offset = None
        while True:
            points, offset = self.client.scroll(self.collection, limit=1024, offset=offset, with_vectors=False,
                                                with_payload=["source", "file_hash", "n_chunks", "model"])
            for p in points:
                payload = p.payload or {}
                entry = state.setdefault(payload.get("source"), {"hashes": {}, "n_chunks": {}, "model": None})
                digest = payload.get("file_hash")
                entry["hashes"][digest] = entry["hashes"].get(digest, 0) + 1
                entry["n_chunks"][digest] = payload.get("n_chunks")
                entry["model"] = payload.get("model")
            if offset is None:
                return state

    def delete_source(self, source: str) -> None:
        from qdrant_client import models

        if self.exists():
            self.client.delete(self.collection, points_selector=models.FilterSelector(filter=models.Filter(
                must=[models.FieldCondition(key="source", match=models.MatchValue(value=source))])))

    def delete_stale(self, source: str, keep_hash: str) -> None:
        """Delete the points of ``source`` whose ``file_hash`` is not ``keep_hash`` (an older version)."""
        from qdrant_client import models

        self.client.delete(self.collection, points_selector=models.FilterSelector(filter=models.Filter(
            must=[models.FieldCondition(key="source", match=models.MatchValue(value=source))],
            must_not=[models.FieldCondition(key="file_hash", match=models.MatchValue(value=keep_hash))])))

    def upsert(self, vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        from qdrant_client import models

        points = [models.PointStruct(id=point_id(p["source"], p["file_hash"], p["chunk"]),
                                     vector=[float(x) for x in v], payload=p)
                  for v, p in zip(vectors, payloads)]
        if points:
            self.client.upsert(self.collection, points=points, wait=True)

    # ---------------------------------------------------------------- search
    def search(self, vector: np.ndarray, k: int = 4) -> list[Hit]:
        if not self.exists():
            raise ValueError(f"the store {self.location or self.collection} is empty: run `llm2embed rag index` first")
        result = self.client.query_points(self.collection, query=[float(x) for x in vector], limit=int(k),
                                          with_payload=True)
        return [Hit(float(p.score), dict(p.payload or {})) for p in result.points]

    def any_payload(self) -> dict[str, Any] | None:
        if not self.exists():
            return None
        points, _ = self.client.scroll(self.collection, limit=1, with_vectors=False, with_payload=True)
        return dict(points[0].payload) if points else None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(location: str | os.PathLike, collection: str = COLLECTION, api_key: str | None = None) -> VectorStore:
    """A :class:`VectorStore` on a local folder (Qdrant local mode, created if missing) or a server URL.

    >>> open_store("out/rag-store")              # embedded, on disk          # doctest: +SKIP
    >>> open_store("http://localhost:6333")      # a Qdrant server, same API  # doctest: +SKIP
    """
    try:
        from qdrant_client import QdrantClient
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the RAG store needs `pip install 'llm2embed[rag]'` (qdrant-client)") from exc
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        return VectorStore(QdrantClient(url=text, api_key=api_key), collection, text)
    folder = Path(text).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--store {folder} is a file; expected a folder (created if missing) or a server URL")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        client = QdrantClient(path=str(folder))
    except RuntimeError as exc:  # the folder is locked by another process
        raise RuntimeError(f"cannot open the store {folder}: {exc}") from None
    return VectorStore(client, collection, str(folder))
