"""How the pipeline scores what it trained: baselines, the data check before training, the per-stage and final
reports, the reduced-precision gap and the dev-set selection each stage recorded.

>>> baseline_specs({"model": "smollm2-135m", "evaluation": {"baselines": None}})
['smollm2-135m', 'smollm2-135m:causal', 'smollm2-135m:prompteol']
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

__all__ = ["baseline_specs", "check_evaluation_data", "evaluate_run", "precision_gap", "stage_selection"]

CONTRASTIVE_STAGES = ("simcse", "supervised")


def baseline_specs(config: dict[str, Any]) -> list[str]:
    """The configured baselines, or the training-free ones of the config's model: untrained (as converted),
    causal with mean pooling, and PromptEOL (causal, template, last token)."""
    baselines = (config.get("evaluation") or {}).get("baselines")
    if baselines is not None:
        return list(baselines)
    model = str(config["model"])
    return [model, f"{model}:causal", f"{model}:prompteol"]


def check_evaluation_data(config: dict[str, Any], echo=print) -> dict[str, Any]:
    """Load the STS-B data the run needs before any training, so an offline machine learns it at once.

    Returns the config with what cannot be had switched off (STS-B scores, dev selection), after saying so
    and how to provide it.
    """
    from .public_data import DataUnavailableError, load_stsb

    config = copy.deepcopy(config)
    ev = config.setdefault("evaluation", {}) or {}
    config["evaluation"] = ev
    wants_test = any(t == "stsb" for t in (ev.get("stage_tasks") or []) + (ev.get("final_tasks") or []))
    wants_dev = ev.get("selection") == "stsb-dev" and any(config.get(s) for s in CONTRASTIVE_STAGES)
    for split, wanted in (("test", wants_test), ("dev", wants_dev)):
        if not wanted:
            continue
        try:
            load_stsb(split)
        except DataUnavailableError as exc:
            if split == "test":
                echo(f"WARNING: no STS-B scores in this run. {exc}")
                ev["stage_tasks"] = [t for t in ev.get("stage_tasks") or [] if t != "stsb"]
                ev["final_tasks"] = [t for t in ev.get("final_tasks") or [] if t != "stsb"]
            else:
                echo(f"WARNING: no dev-set selection in this run (each stage keeps its last step). {exc}")
                ev["selection"] = None
    return config


def evaluate_run(config, out: Path, stages: list[str], final, echo,
              cache_dir: Path | None = None) -> dict[str, Any]:
    """Every stage on the stage tasks (STS-B), the final encoder and baselines on the final tasks."""
    from .evaluation.runner import run_eval

    ev = config.get("evaluation") or {}
    stage_tasks = list(ev.get("stage_tasks") or [])
    final_tasks = list(ev.get("final_tasks") or [])
    results: dict[str, Any] = {}
    baselines = baseline_specs(config)
    reduced = ev.get("reduced_precision")
    reduced_name = f"{final}:{reduced}" if reduced else None
    cache = cache_dir or out / "report" / "embeddings"  # the final report reuses the stage report's embeddings
    if stage_tasks and stages:
        # in pipeline order, so the report's bars read left to right: baselines, each stage, reduced precision
        trained = [str(out / s / "encoder") for s in stages]
        handed_out = [] if str(final) in trained else [str(final)]  # re-pooled (encoder_pooling_mode)
        models = baselines + trained + handed_out + ([reduced_name] if reduced else [])
        results["stages"] = run_eval(models[0], tasks=stage_tasks, baselines=models[1:],
                                     report_dir=out / "report", cache_dir=cache, echo=echo)
        if reduced:
            results["reduced_precision"] = precision_gap(results["stages"], str(final), reduced_name, reduced)
            gap = results["reduced_precision"]
            echo("reduced precision: " + ", ".join(f"{task} {d['float32']:.2f} -> {d[reduced]:.2f} "
                                                    f"({d['difference']:+.2f})" for task, d in gap.items()))
    if final_tasks:
        trained_free = [b for b in baselines if b != str(config["model"])]  # the untrained bidirectional: STS only
        results["final"] = run_eval(str(final), tasks=final_tasks, baselines=trained_free,
                                    report_dir=out / "report" / "final", cache_dir=cache, echo=echo)
    return results


def stage_selection(folder: Path) -> dict[str, Any] | None:
    """The dev-set selection a contrastive stage recorded (which step was kept, its dev score)."""
    try:
        meta = json.loads((folder / "llm2embed_contrastive.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    selection = meta.get("selection")
    return selection if selection and selection.get("best_step") is not None else None


def precision_gap(results: dict[str, Any], full: str, reduced: str, dtype: str) -> dict[str, dict[str, float]]:
    """Main score of the final encoder in float32 and in reduced precision (model ``reduced``), per task."""
    gap = {}
    for task, info in results["tasks"].items():
        metric = info["main_metric"]
        a = results["models"][full]["scores"][task][metric]
        b = results["models"][reduced]["scores"][task][metric]
        gap[task] = {"float32": a, dtype: b, "difference": b - a}
    return gap
