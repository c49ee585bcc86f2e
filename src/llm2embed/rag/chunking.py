"""Reading files for RAG and cutting them into overlapping token windows.

=========  =====================================================================================
suffix     what becomes a document
=========  =====================================================================================
``.txt``   the whole file (UTF-8)
``.md``    the whole file (UTF-8; Markdown is kept as written)
``.jsonl`` one document per line: an object with a ``text`` (or ``content``) string, optionally a
           ``title`` (or ``id``) that is stored with its chunks and shown in citations
=========  =====================================================================================

A chunk is a window of ``chunk_tokens`` tokens of the embedding model's tokenizer; consecutive windows
share ``overlap`` tokens, so a sentence cut by one boundary is whole in the next chunk. Chunks never cross
JSONL records. A chunk's text is the exact slice of the original text (character offsets from the fast
tokenizer), not a detokenization.

>>> chunk_spans("one two three four five", tokenizer, chunk_tokens=3, overlap=1)   # doctest: +SKIP
[(0, 13), (8, 23)]
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUFFIXES", "Document", "chunk_spans", "file_hash", "find_files", "read_documents"]

SUFFIXES = (".txt", ".md", ".jsonl")


@dataclass(frozen=True)
class Document:
    """A text to chunk, with where it came from (``record``: the 1-based JSONL line)."""

    text: str
    record: int | None = None
    title: str | None = None


def find_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files to index: each file given, and every ``.txt``/``.md``/``.jsonl`` file under each folder
    (recursively, hidden entries skipped), sorted, without duplicates. A missing path or a file of another
    type given by name is a ``FileNotFoundError``/``ValueError`` naming it."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                rel = file.relative_to(path).parts
                if file.is_file() and file.suffix.lower() in SUFFIXES and not any(p.startswith(".") for p in rel):
                    found.setdefault(file.resolve(), None)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise ValueError(f"{path}: cannot index {path.suffix or 'files without a suffix'}; "
                                 f"accepted: {', '.join(SUFFIXES)}")
            found.setdefault(path.resolve(), None)
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return list(found)


def file_hash(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes (what decides whether a re-index can skip it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_documents(path: str | os.PathLike) -> list[Document]:
    """The documents of one file (see the module docstring); errors name the file and line."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from None
    if path.suffix.lower() != ".jsonl":
        return [Document(content)] if content.strip() else []
    from ..jsonl import jsonl_rows

    docs = []
    for lineno, row in jsonl_rows(content, path):
        text = row.get("text", row.get("content")) if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise ValueError(f"{path}:{lineno} needs a string 'text' (or 'content') field")
        title = row.get("title", row.get("id"))
        if text.strip():
            docs.append(Document(text, lineno, None if title is None else str(title)))
    return docs


def chunk_spans(text: str, tokenizer, chunk_tokens: int = 200, overlap: int = 40) -> list[tuple[int, int]]:
    """Character spans of token windows over ``text``: ``chunk_tokens`` long, ``overlap`` shared.

    Uses the tokenizer's offset mapping, so each span is an exact slice of ``text``; an empty or
    whitespace-only text gives no chunk.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if not 0 <= overlap < chunk_tokens:
        raise ValueError(f"overlap must be >= 0 and smaller than chunk_tokens ({chunk_tokens}), got {overlap}")
    if not text.strip():
        return []
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    offsets = [(s, e) for s, e in offsets if e > s]
    if not offsets:
        return [(0, len(text))]
    spans, step = [], chunk_tokens - overlap
    for start in range(0, len(offsets), step):
        window = offsets[start:start + chunk_tokens]
        spans.append((window[0][0], window[-1][1]))
        if start + chunk_tokens >= len(offsets):
            break
    return spans
