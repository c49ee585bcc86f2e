"""Running the shards: in this process, or on a Ray cluster (one actor per worker, loaded once)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import InputError, resolve_inputs
from .shards import (DEFAULT_SHARD_ROWS, FORMAT, PLAN_FILE, SUCCESS_FILE, Shard, encode_shard, plan_shards,
                     shard_complete)


class ShardEncoder:
    """The Ray Data worker: loads the encoder once, then embeds and writes the shards it is given.

    Used as ``ds.map_batches(ShardEncoder, fn_constructor_kwargs=..., batch_size=1, compute=
    ActorPoolStrategy(size=N))`` over a dataset with one row per shard (the fields of :class:`Shard`).
    """

    def __init__(self, model: str, load_kwargs: dict[str, Any], output: str, settings: dict[str, Any],
                 threads: int | None = None):
        import torch

        from ..encoder import Encoder

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

    from ..encoder import Encoder

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

    from ..encoder import Encoder

    defaults = {name: p.default for name, p in inspect.signature(Encoder.from_pretrained).parameters.items()}
    return {k: v for k, v in load_kwargs.items() if not (k in defaults and defaults[k] == v) and v is not None}


def _dimension(folder: Path, shards: list[Shard]) -> int | None:
    import pyarrow.parquet as pq

    if not shards:
        return None
    return pq.ParquetFile(folder / shards[0].name).schema_arrow.field("embedding").type.list_size
