"""The whole recipe as one command: source model -> bidirectional -> MNTP -> SimCSE -> (supervised) -> evaluation.

    llm2embed pipeline                          # the embedded default, CPU-sized
    llm2embed pipeline pipeline.yaml --output runs/mine
    llm2embed pipeline --recipe llm2vec         # another recipe (see RECIPES)
    llm2embed pipeline --print-default-config   # the defaults, as YAML

The config is one YAML/JSON file; its ``mntp``, ``simcse`` and ``supervised`` sections are the official
llm2vec configs of each stage (paste yours in; ``null`` skips a stage), and the pipeline fills in
``model_name_or_path``, ``peft_model_name_or_path`` and ``output_dir`` to chain them. A file can start from
another with ``extends: base.yaml`` and change only some keys (:mod:`llm2embed.pipeline_config`).

Each stage writes into ``<output>/<stage>/`` and, when it is complete, a marker holding the hash of its own
settings and of every stage before it. A rerun skips a stage whose marker matches (so a killed pipeline
resumes where it stopped, and a stage killed midway resumes from its last checkpoint, its training time
counting the killed attempt up to that checkpoint), and a changed setting re-runs exactly that stage and the
ones after it. Paths inside the run folder enter the hash relative to it,
so a run folder that is moved or copied elsewhere still resumes and skips its finished stages.

>>> from llm2embed.pipeline import run_pipeline, default_config
>>> run_pipeline(default_config(), output="runs/default")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .pipeline_config import (DEFAULT_RECIPE, INHERITED_KEYS, RECIPES, STAGES, default_config, load_pipeline_config,
                              validate_pipeline_config)
from .pipeline_evaluation import baseline_specs, check_evaluation_data, evaluate_run, stage_selection

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_RECIPE", "RECIPES", "STAGES", "baseline_specs", "check_evaluation_data", "default_config",
           "load_pipeline_config", "run_pipeline", "stage_keys", "validate_pipeline_config"]

MARKER = "llm2embed_stage.json"


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_marker(folder: Path, data: dict) -> None:
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / MARKER)


def _location_free(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """``cfg`` with paths inside the run folder written relative to it, so a moved or copied run still matches."""
    root = str(out)
    return {k: "<output>" + v[len(root):] if isinstance(v, str) and (v == root or v.startswith(root + os.sep)) else v
            for k, v in cfg.items()}


def stage_keys(config: dict[str, Any], out: Path) -> list[tuple[str, dict[str, Any], str, str]]:
    """``(stage, settings, key, legacy key)`` of each enabled stage of a run in ``out``.

    A key hashes the model, the inherited settings and every stage up to this one, with paths inside ``out``
    made relative; the legacy key is the same chain over absolute paths (markers of older versions).

    >>> [(stage, key) for stage, _cfg, key, _legacy in stage_keys(default_config(), Path("runs/default"))]
    [('simcse', '3680ed05dce0b3aa')]
    """
    upstream = legacy = _hash(config["model"], config.get("pooling_mode") or "mean",
                              *(config.get(k) for k in ("bidirectional", "prompt_template", "max_length")))
    keyed = []
    for stage, cfg in _stage_configs(config, out):
        cfg = accelerator_defaults(cfg)
        upstream, legacy = _hash(upstream, stage, _location_free(cfg, out)), _hash(legacy, stage, cfg)
        keyed.append((stage, cfg, upstream, legacy))
    return keyed


def _prepare(folder: Path, key: str, legacy_key: str | None = None) -> bool:
    """Make ``folder`` ready for a stage with settings ``key``; returns True if it is already complete.

    ``legacy_key``: the key of markers written before keys were location-free; such a marker is upgraded."""
    marker = _marker(folder)
    if marker and legacy_key and marker.get("key") == legacy_key:
        marker["key"] = key
        _write_marker(folder, marker)
    if marker and marker.get("key") == key and marker.get("complete"):
        return True
    if folder.exists() and (marker is None or marker.get("key") != key):
        shutil.rmtree(folder)  # written with other settings (or by something else): start the stage over
        marker = None
    folder.mkdir(parents=True, exist_ok=True)
    _write_marker(folder, {"key": key, "complete": False, "attempt_started": time.time(),
                           "seconds_before": _seconds_kept(folder, marker) if marker else 0.0})
    return False


def _seconds_kept(folder: Path, marker: dict) -> float:
    """Training time of a stage's earlier, interrupted attempts that a resumed run keeps: from each attempt's
    start to its last checkpoint (work after that checkpoint is redone, and counted again)."""
    saved = [p.stat().st_mtime for p in folder.glob("checkpoint-*/trainer_state.json")]
    # markers of older versions lack the start: the marker file was written when that attempt started
    started = marker.get("attempt_started") or (folder / MARKER).stat().st_mtime
    reached = max(saved) - started if saved else 0.0
    return round(float(marker.get("seconds_before", 0.0)) + max(0.0, reached), 1)


def _stage_configs(config: dict[str, Any], out: Path) -> list[tuple[str, dict[str, Any]]]:
    """The enabled stages, each with model/adapter/output filled in to chain them."""
    chained, previous_encoder, mntp_dir = [], None, None
    for stage in STAGES:
        section = config.get(stage)
        if not section:
            continue
        cfg = dict(section)
        cfg["output_dir"] = str(out / stage)
        cfg.setdefault("disable_tqdm", False)
        if stage == "mntp":
            cfg["model_name_or_path"] = config["model"]
            mntp_dir = out / stage
        elif previous_encoder is not None:
            cfg["model_name_or_path"] = str(previous_encoder)
        else:
            cfg["model_name_or_path"] = config["model"]
            if mntp_dir is not None:
                cfg["peft_model_name_or_path"] = str(mntp_dir)
        if stage != "mntp":
            for key in INHERITED_KEYS:
                if config.get(key) is not None:
                    cfg.setdefault(key, config[key])
            if config.get("max_length"):
                cfg.setdefault("encoder_max_length", config["max_length"])
            selection = (config.get("evaluation") or {}).get("selection")
            if selection:
                cfg.setdefault("eval_dataset", selection)
            previous_encoder = out / stage / "encoder"
        chained.append((stage, cfg))
    return chained


def accelerator_defaults(cfg: dict[str, Any], cuda: bool | None = None) -> dict[str, Any]:
    """On a CUDA machine: bf16 autocast, gradient checkpointing and flash attention (SDPA where flash-attn is
    missing), unless the stage's config says otherwise. On CPU the config is used as written."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        cfg = {"bf16": True, "gradient_checkpointing": True, "attn_implementation": "flash_attention_2", **cfg}
    return cfg


def _train(stage: str, cfg: dict[str, Any], folder: Path, nproc: int) -> None:
    """Train one stage in this process, or data-parallel in ``nproc`` processes launched with torchrun."""
    if nproc > 1:
        path = folder / "stage_config.json"
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "llm2embed.cli", stage, str(path)]
        logger.info("launching %s", " ".join(command))
        subprocess.run(command, check=True)
    elif stage == "mntp":
        from .training.mntp import train_mntp

        train_mntp(cfg)
    else:
        from .training.contrastive import train_contrastive

        train_contrastive(cfg, mode=stage)


def _run_stage(stage: str, cfg: dict[str, Any], config: dict[str, Any], folder: Path, nproc: int = 1) -> Path:
    """Run one stage; return the encoder folder it produced."""
    from .encoder import Encoder

    _train(stage, cfg, folder, nproc)
    if stage == "mntp":
        encoder = Encoder.from_pretrained(config["model"], peft_model_name_or_path=folder,
                                          enable_bidirectional=config.get("bidirectional", True),
                                          pooling_mode=config.get("pooling_mode"),
                                          prompt_template=config.get("prompt_template"),
                                          max_length=config.get("max_length"))
        return encoder.save(folder / "encoder")
    return folder / "encoder"


def run_pipeline(config: dict[str, Any] | None = None, output: str | os.PathLike | None = None,
                 fresh: bool = False, evaluate: bool = True, nproc: int = 1, echo=print,
                 cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run (or resume) the pipeline; returns ``{"stages": {...}, "final": path, "evaluation": {...}}``.

    ``nproc > 1`` trains every stage data-parallel in that many processes (torchrun; one per GPU), while
    stage bookkeeping and evaluation stay in this process. ``cache_dir``: the embedding cache of the
    evaluation (default ``<output>/report/embeddings``; seed runs share one for the baselines).
    """
    config = config or default_config()
    validate_pipeline_config(config)
    config = check_evaluation_data(config, echo) if evaluate else config
    run_start = time.perf_counter()
    out = Path(output or config.get("output") or "runs/default")
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    summary: dict[str, Any] = {"stages": {}}
    final: str | Path = config["model"]
    stages = stage_keys(config, out)
    for index, (stage, cfg, key, legacy) in enumerate(stages, 1):
        folder = out / stage
        if _prepare(folder, key, legacy):
            echo(f"[{index}/{len(stages)}] {stage}: done earlier with the same settings, skipped")
            summary["stages"][stage] = {"skipped": True, **(_marker(folder) or {})}
        else:
            before = (_marker(folder) or {}).get("seconds_before", 0.0)
            resumed = f", resuming after {before / 60:.1f} min of an earlier run" if before else ""
            echo(f"[{index}/{len(stages)}] {stage}: running (output {folder}{resumed})")
            start = time.perf_counter()
            _run_stage(stage, cfg, config, folder, nproc)
            seconds = round(time.perf_counter() - start + before, 1)
            _write_marker(folder, {"key": key, "complete": True, "seconds": seconds, "seconds_before": before})
            summary["stages"][stage] = {"skipped": False, "seconds": seconds}
            echo(f"[{index}/{len(stages)}] {stage}: finished in {seconds / 60:.1f} min"
                 + (f" ({before / 60:.1f} of them before the resume)" if before else ""))
        selection = stage_selection(folder)
        if selection:
            summary["stages"][stage]["selection"] = selection
            echo(f"[{index}/{len(stages)}] {stage}: kept step {selection['best_step']} "
                 f"({selection['metric']} {selection['best_score']:.2f}; scored at steps "
                 f"{', '.join(str(int(h[0])) for h in selection['history'])})")
        final = folder / "encoder"
    if stages and config.get("encoder_pooling_mode"):
        from .repool import repool

        final = repool(final, config["encoder_pooling_mode"])
        echo(f"final encoder: {final} (pooling {config['encoder_pooling_mode']}, weights of {final.parent.name})")
    summary["final"] = str(final)
    summary["training_seconds"] = round(sum(v.get("seconds", 0) for v in summary["stages"].values()), 1)
    if evaluate:
        summary["evaluation"] = evaluate_run(config, out, [s for s, *_ in stages], final, echo,
                                             Path(cache_dir) if cache_dir else None)
    summary["wall_seconds"] = round(time.perf_counter() - run_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return summary
