"""Shards of fixed row ranges: the plan, one Parquet file per shard written atomically, reading them back."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import InputError, line_rows, parquet_column, parquet_texts

PLAN_FILE = "plan.json"
SUCCESS_FILE = "_SUCCESS.json"
DEFAULT_SHARD_ROWS = 10_000
FORMAT = "llm2embed-shards/1"


@dataclass(frozen=True)
class Shard:
    """A fixed row range of one corpus file: rows ``first_id .. first_id + rows - 1`` of the corpus.

    Line files are cut by bytes (``byte_start``, ``byte_stop``; ``first_line`` for messages), Parquet files
    by rows of the file (``row_start``).
    """

    index: int
    path: str
    first_id: int
    rows: int
    byte_start: int = -1
    byte_stop: int = -1
    first_line: int = 1
    row_start: int = -1

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}.parquet"


def plan_shards(files: list[Path], field: str = "text", shard_rows: int = DEFAULT_SHARD_ROWS
                ) -> tuple[list[Shard], list[dict[str, Any]]]:
    """Cut the corpus into shards of at most ``shard_rows`` rows; also returns ``[{path, bytes, sha256, rows}]``.

    Reads every file once and validates every row (UTF-8, JSON, the field), so a bad corpus fails before
    any work is spread out.
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    shards: list[Shard] = []
    inputs: list[dict[str, Any]] = []
    next_id = 0
    for path in files:
        name = os.fspath(path.resolve())  # workers may run in another folder or on another node
        if path.suffix == ".parquet":
            n = parquet_column(path, field).metadata.num_rows
            digest = _file_sha256(path)
            for start in range(0, n, shard_rows):
                rows = min(shard_rows, n - start)
                shards.append(Shard(len(shards), name, next_id + start, rows, row_start=start))
        else:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            n, open_shard = 0, None  # open_shard: [byte_start, first_line, rows]
            for _, lineno, start, stop in line_rows(data, path, path.suffix, field):
                if open_shard is None:
                    open_shard = [start, lineno, 0, stop]
                open_shard[2] += 1
                open_shard[3] = stop
                if open_shard[2] == shard_rows:
                    shards.append(Shard(len(shards), name, next_id + n, shard_rows, open_shard[0],
                                        stop, open_shard[1]))
                    n, open_shard = n + shard_rows, None
            if open_shard is not None:
                shards.append(Shard(len(shards), name, next_id + n, open_shard[2], open_shard[0],
                                    open_shard[3], open_shard[1]))
                n += open_shard[2]
        inputs.append({"path": name, "bytes": path.stat().st_size, "sha256": digest, "rows": n})
        next_id += n
    return shards, inputs


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_shard_texts(shard: Shard, field: str = "text") -> list[str]:
    """The texts of one shard, read from its corpus file (only its own bytes or row groups)."""
    path = Path(shard.path)
    if path.suffix == ".parquet":
        return parquet_texts(path, field, shard.row_start, shard.row_start + shard.rows)
    with open(path, "rb") as fh:
        fh.seek(shard.byte_start)
        data = fh.read(shard.byte_stop - shard.byte_start)
    texts = [row[0] for row in line_rows(data, path, path.suffix, field, shard.first_line)]
    if len(texts) != shard.rows:
        raise InputError(f"{path} changed while being encoded: expected {shard.rows} rows from line "
                         f"{shard.first_line}, found {len(texts)}")
    return texts


def text_hash(text: str) -> str:
    """sha256 of the text's UTF-8 bytes, hex (the ``text_hash`` column)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def shard_table(shard: Shard, texts: list[str], embeddings: np.ndarray, with_text: bool = False):
    """The Arrow table of one shard: ``id``, ``text_hash``, ``embedding`` (and ``text``)."""
    import pyarrow as pa

    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    columns = {
        "id": pa.array(np.arange(shard.first_id, shard.first_id + shard.rows, dtype=np.int64)),
        "text_hash": pa.array([text_hash(t) for t in texts], pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
    }
    if with_text:
        columns["text"] = pa.array(texts, pa.string())
    return pa.table(columns)


def write_atomic(table, target: Path) -> None:
    """Write a Parquet file to a temporary sibling, then rename it into place (complete or absent)."""
    import pyarrow.parquet as pq

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def shard_complete(folder: Path, shard: Shard) -> bool:
    """Whether the shard's file exists with all its rows."""
    import pyarrow.parquet as pq

    path = folder / shard.name
    if not path.is_file():
        return False
    try:
        return pq.ParquetFile(path).metadata.num_rows == shard.rows
    except Exception:  # an unreadable file is not complete; it is rewritten
        return False


def encode_shard(encoder, shard: Shard, folder: Path, settings: dict[str, Any]) -> int:
    """Read, embed (``Encoder.encode``: length-sorted batches) and write one shard; returns its rows."""
    texts = read_shard_texts(shard, settings["field"])
    inputs = [[settings["instruction"], t] for t in texts] if settings.get("instruction") else texts
    emb = encoder.encode(inputs, batch_size=settings["batch_size"], show_progress_bar=False,
                         normalize_embeddings=settings["normalize"])
    write_atomic(shard_table(shard, texts, emb, settings["with_text"]), folder / shard.name)
    return shard.rows


def read_shards(folder: str | os.PathLike, columns: tuple[str, ...] = ("id", "embedding")):
    """Load a shard folder back: ``(ids, embeddings)`` sorted by id (or a table with other ``columns``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    files = sorted(folder.glob("shard-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no shard-*.parquet files in {folder}")
    table = pa.concat_tables([pq.read_table(f, columns=list(columns)) for f in files])
    table = table.sort_by("id") if "id" in columns else table
    if tuple(columns) != ("id", "embedding"):
        return table
    emb = table.column("embedding").combine_chunks()
    return table.column("id").to_numpy(), emb.values.to_numpy().reshape(len(table), -1)


