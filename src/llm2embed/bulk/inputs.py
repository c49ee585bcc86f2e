"""Reading a corpus for bulk encoding: .txt / .jsonl / .parquet files, folders and globs; errors name file and line."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path


SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".parquet")


class InputError(ValueError):
    """The corpus cannot be read; the message names the file (and the line or row)."""


def resolve_inputs(spec: str | os.PathLike) -> list[Path]:
    """The corpus files of ``spec``: a file, a folder (every supported file under it) or a glob; sorted.

    >>> resolve_inputs("data/*.jsonl")   # doctest: +SKIP
    [PosixPath('data/a.jsonl'), PosixPath('data/b.jsonl')]
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUPPORTED_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise InputError(f"input folder {path} holds no {'/'.join(SUPPORTED_SUFFIXES)} files")
    elif glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"input pattern {text!r} matches no file")
    else:
        raise InputError(f"input {path} does not exist")
    for f in files:
        if f.suffix not in SUPPORTED_SUFFIXES:
            raise InputError(f"input {f}: unsupported extension {f.suffix!r}; use {', '.join(SUPPORTED_SUFFIXES)}")
    return files


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason}: byte 0x{raw[exc.start]:02x} at "
                         f"column {exc.start + 1})") from None


def _jsonl_text(line: str, path: Path, lineno: int, field: str) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{lineno}: not valid JSON ({exc})") from None
    if not isinstance(row, dict) or field not in row:
        raise InputError(f"{path}:{lineno}: no {field!r} field (choose the field with --field)")
    value = row[field]
    if not isinstance(value, str):
        raise InputError(f"{path}:{lineno}: field {field!r} is {type(value).__name__}, not a string")
    return value


def line_rows(data: bytes, path: Path, fmt: str, field: str, first_line: int = 1):
    """``(text, line number, byte offset of the line's start, byte offset after it)`` for each row."""
    offset, lineno, size = 0, first_line, len(data)
    while offset < size:
        end = data.find(b"\n", offset)
        end = size if end < 0 else end + 1
        raw = data[offset:end].rstrip(b"\n")
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        text = _decode(raw, path, lineno)
        if fmt == ".txt":
            yield text, lineno, offset, end
        elif text.strip():
            yield _jsonl_text(text, path, lineno, field), lineno, offset, end
        offset, lineno = end, lineno + 1


def parquet_column(path: Path, field: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    if field not in names:
        raise InputError(f"{path}: no {field!r} column (columns: {names}; choose one with --field)")
    kind = pf.schema_arrow.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{path}: column {field!r} is {kind}, not a string column")
    return pf


def parquet_texts(path: Path, field: str, start: int, stop: int) -> list[str]:
    """Rows ``[start, stop)`` of a Parquet file's text column, reading only the row groups that hold them."""
    pf = parquet_column(path, field)
    groups, first, seen = [], None, 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if seen + n > start and seen < stop:
            groups.append(g)
            first = seen if first is None else first
        seen += n
    if not groups:
        return []
    texts = pf.read_row_groups(groups, columns=[field]).column(field).to_pylist()[start - first:stop - first]
    for i, text in enumerate(texts):
        if text is None:
            raise InputError(f"{path}: row {start + i} of column {field!r} is null")
    return texts


def read_texts(spec: str | os.PathLike, field: str = "text") -> list[str]:
    """Every row's text of a corpus (file, folder or glob), in id order; errors name the file and line."""
    texts: list[str] = []
    for path in resolve_inputs(spec):
        if path.suffix == ".parquet":
            texts.extend(parquet_texts(path, field, 0, parquet_column(path, field).metadata.num_rows))
        else:
            texts.extend(row[0] for row in line_rows(path.read_bytes(), path, path.suffix, field))
    return texts


