"""The whole recipe as one command: source model -> bidirectional -> MNTP -> SimCSE -> (supervised) -> evaluation.

    llm2embed pipeline                          # the embedded default, CPU-sized
    llm2embed pipeline pipeline.yaml --output runs/mine
    llm2embed pipeline --print-default-config   # the defaults, as YAML

The config is one YAML/JSON file; its ``mntp``, ``simcse`` and ``supervised`` sections are the official
llm2vec configs of each stage (paste yours in; ``null`` skips a stage), and the pipeline fills in
``model_name_or_path``, ``peft_model_name_or_path`` and ``output_dir`` to chain them.

Each stage writes into ``<output>/<stage>/`` and, when it is complete, a marker holding the hash of its own
settings and of every stage before it. A rerun skips a stage whose marker matches (so a killed pipeline
resumes where it stopped, and a stage killed midway resumes from its last checkpoint), and a changed setting
re-runs exactly that stage and the ones after it.

>>> from llm2embed.pipeline import run_pipeline, default_config
>>> run_pipeline(default_config(), output="runs/default")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
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

logger = logging.getLogger(__name__)

__all__ = ["STAGES", "default_config", "load_pipeline_config", "run_pipeline"]

STAGES = ("mntp", "simcse", "supervised")
MARKER = "llm2embed_stage.json"

# Sized for a 2-core CPU (AVX-512 bf16): the step counts and batch sizes of the official recipe's small-budget
# comparison, with the learning rates, bf16 autocast and length-grouped batches that make that budget work.
# docs/pipeline.md has the measurements behind every value.
_DEFAULT = {
    "model": "smollm2-135m",
    "output": "runs/default",
    "pooling_mode": "mean",
    "mntp": {
        "train_file": "wiki", "max_seq_length": 128, "per_device_train_batch_size": 8, "mlm_probability": 0.2,
        "mask_token_type": "blank", "data_collator_type": "default", "lora_r": 16, "learning_rate": 1e-4,
        "bf16": True, "stop_after_n_steps": 200, "max_steps": 200, "save_steps": 50, "logging_steps": 10,
        "seed": 42,
    },
    "simcse": {
        "dataset_name": "wiki", "max_seq_length": 64, "per_device_train_batch_size": 32, "simcse_dropout": 0.3,
        "loss_scale": 20, "learning_rate": 1e-3, "lora_r": 16, "bf16": True,
        "train_sampling_strategy": "group_by_length", "stop_after_n_steps": 100, "max_steps": 100,
        "save_steps": 50, "logging_steps": 10, "seed": 42,
    },
    "supervised": None,
    "evaluation": {
        "stage_tasks": ["stsb"],
        "final_tasks": ["stsb", "wiki"],
        "baselines": ["smollm2-135m", "smollm2-135m:causal"],
        "reduced_precision": "bfloat16",
    },
}


def default_config() -> dict[str, Any]:
    """The default pipeline (embedded SmolLM2 + embedded Wikipedia corpus, CPU-sized)."""
    return copy.deepcopy(_DEFAULT)


def load_pipeline_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a YAML/JSON pipeline file on top of the defaults; unknown top-level keys are errors."""
    from .training.config import ConfigError, load_config_file, suggest_key

    config = default_config()
    if path is None:
        return config
    user = load_config_file(path)
    for key, value in user.items():
        if key not in config:
            near = suggest_key(key, set(config))
            raise ConfigError(f"unknown pipeline key {key!r}" + (f"; did you mean {near!r}?" if near else ""))
        if isinstance(value, dict) and isinstance(config[key], dict) and key != "supervised":
            config[key] = {**config[key], **value} if key == "evaluation" else value
        else:
            config[key] = value
    return config


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


def _prepare(folder: Path, key: str) -> bool:
    """Make ``folder`` ready for a stage with settings ``key``; returns True if it is already complete."""
    marker = _marker(folder)
    if marker and marker.get("key") == key and marker.get("complete"):
        return True
    if folder.exists() and (marker is None or marker.get("key") != key):
        shutil.rmtree(folder)  # written with other settings (or by something else): start the stage over
    folder.mkdir(parents=True, exist_ok=True)
    _write_marker(folder, {"key": key, "complete": False})
    return False


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
            cfg.setdefault("pooling_mode", config.get("pooling_mode", "mean"))
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
                                          pooling_mode=config.get("pooling_mode", "mean"))
        return encoder.save(folder / "encoder")
    return folder / "encoder"


def run_pipeline(config: dict[str, Any] | None = None, output: str | os.PathLike | None = None,
                 fresh: bool = False, evaluate: bool = True, nproc: int = 1, echo=print) -> dict[str, Any]:
    """Run (or resume) the pipeline; returns ``{"stages": {...}, "final": path, "evaluation": {...}}``.

    ``nproc > 1`` trains every stage data-parallel in that many processes (torchrun; one per GPU), while
    stage bookkeeping and evaluation stay in this process.
    """
    config = config or default_config()
    out = Path(output or config.get("output") or "runs/default")
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    summary: dict[str, Any] = {"stages": {}}
    upstream = _hash(config["model"], config.get("pooling_mode", "mean"))
    final: str | Path = config["model"]
    stages = [(stage, accelerator_defaults(cfg)) for stage, cfg in _stage_configs(config, out)]
    for index, (stage, cfg) in enumerate(stages, 1):
        key = _hash(upstream, stage, cfg)
        folder = out / stage
        if _prepare(folder, key):
            echo(f"[{index}/{len(stages)}] {stage}: done earlier with the same settings, skipped")
            summary["stages"][stage] = {"skipped": True, **(_marker(folder) or {})}
        else:
            echo(f"[{index}/{len(stages)}] {stage}: running (output {folder})")
            start = time.perf_counter()
            _run_stage(stage, cfg, config, folder, nproc)
            seconds = time.perf_counter() - start
            _write_marker(folder, {"key": key, "complete": True, "seconds": round(seconds, 1)})
            summary["stages"][stage] = {"skipped": False, "seconds": round(seconds, 1)}
            echo(f"[{index}/{len(stages)}] {stage}: finished in {seconds / 60:.1f} min")
        upstream = key
        final = folder / "encoder"
    summary["final"] = str(final)
    if evaluate:
        summary["evaluation"] = _evaluate(config, out, [s for s, _ in stages], final, upstream, echo)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return summary


def _evaluate(config, out: Path, stages: list[str], final, key: str, echo) -> dict[str, Any]:
    """Every stage on the stage tasks (STS-B), the final encoder and baselines on the final tasks."""
    from .evaluation.runner import run_eval
    from .evaluation.sts import default_stsb_dir

    ev = config.get("evaluation") or {}
    stage_tasks = list(ev.get("stage_tasks") or [])
    final_tasks = list(ev.get("final_tasks") or [])
    if default_stsb_dir() is None:
        echo("STS-B not found (../shared/data/stsb or $LLM2EMBED_STSB_DIR): skipping the STS-B scores")
        stage_tasks = [t for t in stage_tasks if t != "stsb"]
        final_tasks = [t for t in final_tasks if t != "stsb"]
    results: dict[str, Any] = {}
    baselines = list(ev.get("baselines") or [])
    reduced = ev.get("reduced_precision")
    reduced_name = f"{final}:{reduced}" if reduced else None
    cache = out / "report" / "embeddings"  # shared: the final report reuses the STS-B embeddings of the first
    if stage_tasks and stages:
        # in pipeline order, so the report's bars read left to right: baselines, each stage, reduced precision
        models = baselines + [str(out / s / "encoder") for s in stages] + ([reduced_name] if reduced else [])
        results["stages"] = run_eval(models[0], tasks=stage_tasks, baselines=models[1:],
                                     report_dir=out / "report", cache_dir=cache, echo=echo)
        if reduced:
            results["reduced_precision"] = _precision_gap(results["stages"], str(final), reduced_name, reduced)
            gap = results["reduced_precision"]
            echo("reduced precision: " + ", ".join(f"{task} {d['float32']:.2f} -> {d[reduced]:.2f} "
                                                    f"({d['difference']:+.2f})" for task, d in gap.items()))
    if final_tasks:
        results["final"] = run_eval(str(final), tasks=final_tasks, baselines=baselines[-1:],
                                    report_dir=out / "report" / "final", cache_dir=cache, echo=echo)
    return results


def _precision_gap(results: dict[str, Any], full: str, reduced: str, dtype: str) -> dict[str, dict[str, float]]:
    """Main score of the final encoder in float32 and in reduced precision (model ``reduced``), per task."""
    gap = {}
    for task, info in results["tasks"].items():
        metric = info["main_metric"]
        a = results["models"][full]["scores"][task][metric]
        b = results["models"][reduced]["scores"][task][metric]
        gap[task] = {"float32": a, dtype: b, "difference": b - a}
    return gap
