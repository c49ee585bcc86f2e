"""Where run-time data comes from: a local override, the project's data folder, else a public Hub dataset.

The product needs a few public datasets at run time (STS-B for scores and for model selection on dev, NLI
triplets for the supervised example). Each is looked up in this order:

1. an environment variable naming a local copy (``$LLM2EMBED_STSB_DIR``, ``$LLM2EMBED_NLI_FILE``);
2. a ``shared/data`` folder beside the working directory or above the installed package (the project's
   development machines have one; users normally don't);
3. its public copy on the Hugging Face Hub, loaded with ``datasets.load_dataset`` and cached like any dataset
   (``~/.cache/huggingface``; offline use afterwards with ``HF_DATASETS_OFFLINE=1``).

When none works (offline and no local copy), :class:`DataUnavailableError` says all three ways to provide it.

>>> pairs = load_stsb("dev")          # doctest: +SKIP
>>> len(pairs), stsb_source("dev")    # doctest: +SKIP
(1500, '../shared/data/stsb/sts-dev.csv')
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DataUnavailableError", "NLI_HUB", "STSB_HUB", "load_nli_triplets", "load_stsb", "local_stsb_file",
           "nli_local_file", "set_hub_loader", "stsb_source"]

STSB_ENV = "LLM2EMBED_STSB_DIR"
NLI_ENV = "LLM2EMBED_NLI_FILE"
# public copies of the STS Benchmark: (dataset id, {our split: its split}, score scale); the first one that
# loads wins. Spearman is rank-based, so the 0-1 and 0-5 scales give identical scores.
STSB_HUB: tuple[tuple[str, dict[str, str]], ...] = (
    ("sentence-transformers/stsb", {"train": "train", "dev": "validation", "test": "test"}),
    ("mteb/stsbenchmark-sts", {"train": "train", "dev": "validation", "test": "test"}),
)
STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
# NLI triplets (anchor, entailed positive, contradicting negative) for supervised training
NLI_HUB = ("sentence-transformers/all-nli", "triplet", "train")
NLI_LOCAL = "nli/snli_triplets.jsonl"

_hub_loader: Callable[..., Any] | None = None
_hub_unreachable: str | None = None  # set by the first connection failure: later loads fail at once


class DataUnavailableError(FileNotFoundError):
    """No local copy and the Hub could not be reached (or does not have the dataset)."""


def set_hub_loader(loader: Callable[..., Any] | None) -> None:
    """Replace ``datasets.load_dataset`` (tests; ``None`` restores it) and forget cached loads."""
    global _hub_loader, _hub_unreachable
    _hub_loader, _hub_unreachable = loader, None
    _load_stsb_cached.cache_clear()


def _load_dataset(*args, **kwargs):
    if _hub_loader is not None:
        return _hub_loader(*args, **kwargs)
    from datasets import load_dataset

    return load_dataset(*args, **kwargs)


def _shared_data_dirs() -> list[Path]:
    """``shared/data`` folders beside the working directory or above this package (development machines)."""
    here = Path(__file__).resolve()
    candidates = [Path.cwd().parent / "shared/data", *(p / "shared/data" for p in here.parents)]
    return [c for c in dict.fromkeys(candidates) if c.is_dir()]


def local_stsb_file(split: str = "test") -> Path | None:
    """The local STS-B file of ``split`` (``$LLM2EMBED_STSB_DIR``, then ``shared/data/stsb``), or None."""
    name = _stsb_file_name(split)
    env = os.environ.get(STSB_ENV)
    if env:
        path = Path(env, name)
        if not path.is_file():
            raise DataUnavailableError(f"${STSB_ENV}={env} has no {name}")
        return path
    for data in _shared_data_dirs():
        if (data / "stsb" / name).is_file():
            return data / "stsb" / name
    return None


def _stsb_file_name(split: str) -> str:
    if split not in STSB_FILES:
        raise ValueError(f"STS-B split must be one of {sorted(STSB_FILES)}, got {split!r}")
    return STSB_FILES[split]


def stsb_source(split: str = "test") -> str:
    """Where :func:`load_stsb` takes ``split`` from: a local path or ``hub:<dataset id>`` (loads it to know)."""
    return _load_stsb_cached(split)[1]


def load_stsb(split: str = "test"):
    """STS-B ``split`` (``train``, ``dev`` or ``test``) as :class:`~llm2embed.evaluation.sts.STSPairs`.

    Local copy first (``$LLM2EMBED_STSB_DIR``, ``shared/data/stsb``), else the Hub (``sentence-transformers/stsb``,
    then ``mteb/stsbenchmark-sts``); raises :class:`DataUnavailableError` naming every way to provide it.
    """
    return _load_stsb_cached(split)[0]


@functools.lru_cache(maxsize=8)
def _load_stsb_cached(split: str):
    from .evaluation.sts import STSPairs, load_sts

    local = local_stsb_file(split)
    if local is not None:
        return load_sts(local), str(local)
    global _hub_unreachable
    errors = [f"not tried: the Hub was unreachable earlier in this run ({_hub_unreachable})"] if _hub_unreachable \
        else []
    for dataset_id, splits in STSB_HUB if not _hub_unreachable else ():
        try:
            rows = _load_dataset(dataset_id, split=splits[split])
        except Exception as exc:  # offline, renamed, gated: try the next copy, then explain
            errors.append(f"{dataset_id}: {type(exc).__name__}: {str(exc)[:200]}")
            if _is_offline(exc):
                _hub_unreachable = f"{type(exc).__name__}: {str(exc)[:120]}"
                break
            continue
        missing = {"sentence1", "sentence2", "score"} - set(rows.column_names)
        if missing:
            errors.append(f"{dataset_id}: no column(s) {sorted(missing)}")
            continue
        pairs = STSPairs(list(rows["sentence1"]), list(rows["sentence2"]),
                         np.asarray(rows["score"], dtype=np.float64))
        return pairs, f"hub:{dataset_id}"
    raise DataUnavailableError(
        f"STS-B {split} split not found. Provide it in one of three ways: (1) set ${STSB_ENV} to a folder "
        f"holding {STSB_FILES[split]} (the STS Benchmark's tab-separated files); (2) put those files in "
        f"shared/data/stsb beside the working directory; (3) let it load from the Hugging Face Hub "
        f"({STSB_HUB[0][0]}) once while online — it is cached for later offline runs. "
        f"Hub attempts: {'; '.join(errors)}")


def _is_offline(exc: BaseException) -> bool:
    """A connection failure (no point trying another Hub copy) rather than a missing dataset."""
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(names & {"ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "Timeout",
                         "ConnectTimeout", "ReadTimeout"}) or "offline" in str(exc).lower()


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def nli_local_file() -> Path | None:
    """The local NLI triplet file (``$LLM2EMBED_NLI_FILE``, then ``shared/data/nli/snli_triplets.jsonl``)."""
    env = os.environ.get(NLI_ENV)
    if env:
        if not Path(env).is_file():
            raise DataUnavailableError(f"${NLI_ENV}={env} does not exist")
        return Path(env)
    return next((d / NLI_LOCAL for d in _shared_data_dirs() if (d / NLI_LOCAL).is_file()), None)


def load_nli_triplets(limit: int | None = None) -> tuple[list[dict[str, str]], str]:
    """NLI triplets as rows with ``query``, ``positive``, ``negative``, and where they came from.

    Local file first (JSONL with those keys), else the Hub's ``sentence-transformers/all-nli`` (``triplet``
    subset, train split; ``limit`` rows at most, in the dataset's order).
    """
    from .jsonl import jsonl_rows

    local = nli_local_file()
    if local is not None:
        rows = [row for _, row in jsonl_rows(local.read_text(encoding="utf-8"), local)]
        return rows[:limit] if limit else rows, str(local)
    dataset_id, subset, split = NLI_HUB
    try:
        ds = _load_dataset(dataset_id, subset, split=split if not limit else f"{split}[:{limit}]")
    except Exception as exc:
        raise DataUnavailableError(
            f"NLI triplets not found. Provide them in one of three ways: (1) set ${NLI_ENV} to a JSONL file "
            f"with query/positive/negative rows; (2) put it at shared/data/{NLI_LOCAL} beside the working "
            f"directory; (3) let it load from the Hugging Face Hub ({dataset_id}, subset {subset}) once while "
            f"online. Hub error: {type(exc).__name__}: {str(exc)[:200]}") from None
    rows = [{"query": a, "positive": p, "negative": n}
            for a, p, n in zip(ds["anchor"], ds["positive"], ds["negative"])]
    return rows, f"hub:{dataset_id}/{subset}"
