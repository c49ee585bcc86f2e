"""Bulk corpus embedding into Parquet shards, in one process or spread over a Ray cluster (Ray Data).

    llm2embed encode MODEL --input CORPUS --output DIR [--engine local|ray] [--address ADDR] [--workers N]
                           [--gpus-per-worker G] [--shard-rows R]

``CORPUS`` is a ``.txt`` (one text per line), ``.jsonl`` (a ``field`` per line) or ``.parquet`` file, a folder
of them or a glob. Before anything is encoded the driver reads the corpus once: it checks every line (bad
UTF-8, bad JSON and missing fields stop the run with the file and line named), hashes the bytes and cuts
every file into **shards of fixed row ranges** (``shard_rows`` rows, never across files). The cut is recorded
in ``DIR/plan.json`` and each shard becomes one file, ``DIR/shard-00000.parquet``, ..., with the columns

========== ========================================================================================
id         the row's position in the corpus (files in sorted order; a ``.txt`` row is a line, a
           ``.jsonl`` row a non-blank line, a ``.parquet`` row a row), ``int64``
text_hash  sha256 of the text's UTF-8 bytes, hex
embedding  ``fixed_size_list<float32>[dimension]``
text       the text itself (only with ``with_text=True`` / ``--with-text``)
========== ========================================================================================

A shard file is written to a temporary name and renamed into place (``os.replace``), so it exists
complete or not at all. A rerun of the same command reads ``plan.json``, skips the shards whose file is
complete and encodes the rest; a different corpus, model or setting is refused (``overwrite=True`` starts
over). ``DIR/_SUCCESS.json`` is written when every shard is there.

``engine="ray"``: the pending shards become a Ray Dataset (one row per shard) mapped by
``map_batches(ShardEncoder, compute=ActorPoolStrategy(size=workers))``: every worker is a Ray actor that
loads the encoder once and, per shard, reads its rows from the corpus, embeds them with
:meth:`Encoder.encode` (length-sorted batches) and writes the shard file. Ray restarts a killed actor and
retries its shards (Ray Data's actor defaults ``max_restarts=-1``, ``max_task_retries=-1``); a shard
that is written twice is written with the same content under the same name, so the output never holds a
row twice. On several machines the
corpus and ``DIR`` must be on a filesystem every node sees (NFS, a shared volume), and llm2embed installed
on every node. ``engine="local"`` runs the same shards in this process.

>>> from llm2embed.bulk import encode_corpus, read_shards
>>> encode_corpus("smollm2-135m", "corpus/*.jsonl", "out/emb", engine="ray", workers=2)  # doctest: +SKIP
{'rows': 20000, 'shards': 2, 'written': 2, 'skipped': 0, ...}
>>> ids, embeddings = read_shards("out/emb")                                            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["InputError", "Shard", "ShardEncoder", "encode_corpus", "plan_shards", "read_shard_texts",
           "read_shards", "read_texts", "resolve_inputs"]

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".parquet")
PLAN_FILE = "plan.json"
SUCCESS_FILE = "_SUCCESS.json"
DEFAULT_SHARD_ROWS = 10_000
FORMAT = "llm2embed-shards/1"


class InputError(ValueError):
    """The corpus cannot be read; the message names the file (and the line or row)."""


# ----------------------------------------------------------------------------------------------- inputs
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


def _line_rows(data: bytes, path: Path, fmt: str, field: str, first_line: int = 1):
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


def _parquet_column(path: Path, field: str):
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


def _parquet_texts(path: Path, field: str, start: int, stop: int) -> list[str]:
    """Rows ``[start, stop)`` of a Parquet file's text column, reading only the row groups that hold them."""
    pf = _parquet_column(path, field)
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
            texts.extend(_parquet_texts(path, field, 0, _parquet_column(path, field).metadata.num_rows))
        else:
            texts.extend(row[0] for row in _line_rows(path.read_bytes(), path, path.suffix, field))
    return texts


# ----------------------------------------------------------------------------------------------- shards
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
            n = _parquet_column(path, field).metadata.num_rows
            digest = _file_sha256(path)
            for start in range(0, n, shard_rows):
                rows = min(shard_rows, n - start)
                shards.append(Shard(len(shards), name, next_id + start, rows, row_start=start))
        else:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            n, open_shard = 0, None  # open_shard: [byte_start, first_line, rows]
            for _, lineno, start, stop in _line_rows(data, path, path.suffix, field):
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
        return _parquet_texts(path, field, shard.row_start, shard.row_start + shard.rows)
    with open(path, "rb") as fh:
        fh.seek(shard.byte_start)
        data = fh.read(shard.byte_stop - shard.byte_start)
    texts = [row[0] for row in _line_rows(data, path, path.suffix, field, shard.first_line)]
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


# ----------------------------------------------------------------------------------------------- workers
class ShardEncoder:
    """The Ray Data worker: loads the encoder once, then embeds and writes the shards it is given.

    Used as ``ds.map_batches(ShardEncoder, fn_constructor_kwargs=..., batch_size=1, compute=
    ActorPoolStrategy(size=N))`` over a dataset with one row per shard (the fields of :class:`Shard`).
    """

    def __init__(self, model: str, load_kwargs: dict[str, Any], output: str, settings: dict[str, Any],
                 threads: int | None = None):
        import torch

        from .encoder import Encoder

        if threads:
            torch.set_num_threads(max(1, int(threads)))
        self.encoder = Encoder.from_pretrained(model, **load_kwargs)
        self.output = Path(output)
        self.settings = settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fields = [f.name for f in dataclasses.fields(Shard)]
        done_index, done_rows = [], []
        for i in range(len(batch["index"])):
            values = {k: batch[k][i] for k in fields}
            shard = Shard(**{k: (str(v) if k == "path" else int(v)) for k, v in values.items()})
            done_rows.append(encode_shard(self.encoder, shard, self.output, self.settings))
            done_index.append(shard.index)
        return {"shard": np.asarray(done_index, dtype=np.int64), "rows": np.asarray(done_rows, dtype=np.int64),
                "pid": np.full(len(done_index), os.getpid(), dtype=np.int64)}


def _find_input_error(exc: BaseException) -> InputError | None:
    """The InputError inside a Ray task error (Ray wraps the worker's exception), if there is one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InputError):
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return None


def _run_ray(pending: list[Shard], folder: Path, model: str, load_kwargs: dict[str, Any], settings: dict[str, Any],
             address: str | None, workers: int | None, gpus_per_worker: float, cpus_per_worker: float,
             progress: Callable[[dict[str, int]], None] | None, show_progress: bool) -> None:
    try:
        import ray
    except ImportError:
        raise ImportError("--engine ray needs Ray Data: pip install 'llm2embed[ray]'") from None

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=show_progress,
                 logging_level="WARNING")
    try:
        resources = ray.cluster_resources()
        if gpus_per_worker and resources.get("GPU", 0) < gpus_per_worker:
            raise ValueError(f"--gpus-per-worker {gpus_per_worker}: the Ray cluster has "
                             f"{resources.get('GPU', 0):g} GPUs")
        if workers is None:
            workers = int(resources.get("GPU", 0) // gpus_per_worker) if gpus_per_worker \
                else int(resources.get("CPU", 1) // cpus_per_worker)
        workers = max(1, min(int(workers), len(pending)))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = show_progress
        if gpus_per_worker and not load_kwargs.get("device"):
            load_kwargs = {**load_kwargs, "device": "cuda"}
        items = [dataclasses.asdict(s) for s in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            ShardEncoder,
            fn_constructor_kwargs={"model": model, "load_kwargs": load_kwargs, "output": os.fspath(folder),
                                   "settings": settings, "threads": max(1, int(cpus_per_worker))},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker or None,
            # fault tolerance is Ray Data's default for actor pools (max_restarts=-1, max_task_retries=-1):
            # a killed worker is started again and the shards it held are retried there
        )
        for row in ds.iter_rows():
            if progress is not None:
                progress({"shard": int(row["shard"]), "rows": int(row["rows"]), "pid": int(row["pid"])})
    except Exception as exc:
        found = _find_input_error(exc)
        if found is not None:
            raise InputError(str(found)) from None
        raise
    finally:
        if started:
            ray.shutdown()


def _run_local(pending: list[Shard], folder: Path, model: str, load_kwargs: dict[str, Any],
               settings: dict[str, Any], progress, show_progress: bool) -> None:
    from tqdm.auto import tqdm

    from .encoder import Encoder

    encoder = Encoder.from_pretrained(model, **load_kwargs)
    for shard in tqdm(pending, desc="Shards", unit="shard", disable=not show_progress):
        rows = encode_shard(encoder, shard, folder, settings)
        if progress is not None:
            progress({"shard": shard.index, "rows": rows, "pid": os.getpid()})


def _check_plan(folder: Path, plan: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix shards of different runs; with ``overwrite`` remove the old ones."""
    path = folder / PLAN_FILE
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        changed = sorted(k for k in plan if old.get(k) != plan[k])
        if changed:
            raise InputError(f"{folder} holds shards of a different run (changed: {', '.join(changed)}); "
                             "use another --output folder or --overwrite")
        return
    if overwrite:
        for stale in [*folder.glob("shard-*.parquet"), folder / SUCCESS_FILE, path]:
            if stale.exists():
                stale.unlink()
    elif any(folder.glob("shard-*.parquet")):
        raise InputError(f"{folder} holds shard files but no {PLAN_FILE}; use another --output folder or --overwrite")
    path.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")


def encode_corpus(
    model: str | os.PathLike,
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0,
    cpus_per_worker: float = 1,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    field: str = "text",
    instruction: str | None = None,
    batch_size: int = 32,
    normalize: bool = False,
    with_text: bool = False,
    overwrite: bool = False,
    load_kwargs: dict[str, Any] | None = None,
    progress: Callable[[dict[str, int]], None] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Embed a corpus into Parquet shards under ``output`` (see the module docstring); resumable.

    Args:
        model: what ``Encoder.from_pretrained`` loads (a saved encoder, ``smollm2-135m``, a Hub id, ...);
            on a cluster it must be reachable from every node.
        input: a ``.txt``/``.jsonl``/``.parquet`` file, a folder of them or a glob.
        engine: ``local`` (this process) or ``ray`` (a Ray Data actor pool).
        address: Ray cluster address (``auto``, ``ray://host:10001``, ``host:6379``); default: the running
            cluster of ``$RAY_ADDRESS``, else a local one started for this call (and stopped after it).
        workers: Ray actors (default: the cluster's GPUs / ``gpus_per_worker``, or CPUs / ``cpus_per_worker``).
        gpus_per_worker / cpus_per_worker: resources each actor reserves (a worker with GPUs encodes on CUDA).
        shard_rows: rows per shard (the unit of work, of retry and of resume).
        with_text: also store the text in the shards (e.g. to fill a vector store from them).
        overwrite: delete the shards of an earlier, different run in ``output`` instead of refusing.
        load_kwargs: ``Encoder.from_pretrained`` keyword arguments (``pooling_mode``, ``torch_dtype``, ...).
        progress: called in this process with ``{"shard", "rows", "pid"}`` after each shard is written.

    Returns ``{"rows", "shards", "written", "skipped", "seconds", "output", "dimension"}``.

    >>> encode_corpus("out/my-encoder", "corpus.jsonl", "out/emb", engine="ray", workers=2)  # doctest: +SKIP
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    load_kwargs = _explicit_kwargs(load_kwargs or {})
    folder = Path(output).resolve()
    model = os.fspath(Path(model).resolve()) if Path(model).exists() else os.fspath(model)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output {folder} exists and is not a folder (shards are written into a folder)")
    t0 = time.perf_counter()
    shards, inputs = plan_shards(resolve_inputs(input), field, shard_rows)
    settings = {"field": field, "instruction": instruction or "", "normalize": bool(normalize),
                "with_text": bool(with_text), "batch_size": int(batch_size)}
    plan = {
        "format": FORMAT,
        "model": os.fspath(model),
        "load_kwargs": {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in load_kwargs.items()
                        if k != "device"},
        "settings": {k: v for k, v in settings.items() if k != "batch_size"},
        "inputs": inputs,
        "shard_rows": shard_rows,
        "shards": [dataclasses.asdict(s) for s in shards],
    }
    folder.mkdir(parents=True, exist_ok=True)
    _check_plan(folder, plan, overwrite)
    for tmp in folder.glob(".shard-*.tmp-*"):  # left by a worker killed while writing
        tmp.unlink(missing_ok=True)
    pending = [s for s in shards if not shard_complete(folder, s)]
    if pending and engine == "ray":
        _run_ray(pending, folder, os.fspath(model), load_kwargs, settings, address, workers, gpus_per_worker,
                 cpus_per_worker, progress, show_progress)
    elif pending:
        _run_local(pending, folder, os.fspath(model), load_kwargs, settings, progress, show_progress)
    missing = [s.name for s in shards if not shard_complete(folder, s)]
    if missing:
        raise RuntimeError(f"{len(missing)} shard(s) were not written: {', '.join(missing[:5])}; rerun the command")
    summary = {"rows": sum(s.rows for s in shards), "shards": len(shards), "written": len(pending),
               "skipped": len(shards) - len(pending), "seconds": round(time.perf_counter() - t0, 3),
               "output": os.fspath(folder), "dimension": _dimension(folder, shards)}
    (folder / SUCCESS_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _explicit_kwargs(load_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``Encoder.from_pretrained`` options that differ from its defaults (the same run from the API and
    the CLI then records the same plan)."""
    import inspect

    from .encoder import Encoder

    defaults = {name: p.default for name, p in inspect.signature(Encoder.from_pretrained).parameters.items()}
    return {k: v for k, v in load_kwargs.items() if not (k in defaults and defaults[k] == v) and v is not None}


def _dimension(folder: Path, shards: list[Shard]) -> int | None:
    import pyarrow.parquet as pq

    if not shards:
        return None
    return pq.ParquetFile(folder / shards[0].name).schema_arrow.field("embedding").type.list_size
