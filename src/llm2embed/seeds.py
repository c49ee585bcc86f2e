"""One config, several seeds: the pipeline run k times, and one table of mean ± std per task.

One training run is not a result: ``llm2embed pipeline CONFIG --seeds 3`` runs the config with seeds
s, s+1, s+2 (s = the config's seed, 42 by default) into ``<output>/seed-<s>/``, then writes
``<output>/seeds.md`` and ``seeds.json``: every model (baselines, each stage, the final encoder) × every task
as mean ± sample std over the seeds, and the training and wall time of each run. Each seed run is a normal
pipeline run, so a rerun skips finished seeds (and finished stages of an interrupted one); baselines are
embedded once for all seeds (shared embedding cache in ``<output>/embeddings``).

>>> summary = run_seeds(default_config(), "runs/default-seeds", seeds=3)   # doctest: +SKIP
>>> summary["table"]["final"]["stsb"]                                      # doctest: +SKIP
{'mean': 70.1, 'std': 1.2, 'n': 3, 'values': [69.0, 71.3, 70.0]}
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["final_role", "run_seeds", "seed_table", "seeds_markdown", "with_seed"]

DEFAULT_SEED = 42


def base_seed(config: dict[str, Any]) -> int:
    """The first stage's ``seed`` (42 when no stage sets one)."""
    from .pipeline import STAGES

    return next((int(config[s]["seed"]) for s in STAGES if config.get(s) and "seed" in config[s]), DEFAULT_SEED)


def with_seed(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """A copy of ``config`` whose every training stage uses ``seed``."""
    from .pipeline import STAGES

    out = copy.deepcopy(config)
    for stage in STAGES:
        if out.get(stage):
            out[stage]["seed"] = seed
    return out


def final_role(summary: dict[str, Any], stages: list[str]) -> str:
    """The table row of a run's final encoder: its stage, with the pooling when it was re-pooled.

    >>> final_role({"final": "runs/x/seed-42/simcse/encoder_last_token+mean"}, ["simcse"])
    'simcse (last_token+mean)'
    """
    final = Path(summary["final"])
    if not stages:
        return str(final)
    if final.name == "encoder":
        return stages[-1]
    return f"{stages[-1]} ({final.name.removeprefix('encoder_')})"


def _roles(summary: dict[str, Any], stages: list[str], reduced: str | None) -> dict[str, dict[str, float]]:
    """``{model role: {task: main score}}`` of one run; stage encoders become their stage's name."""
    final = summary["final"]
    names = {}
    for stage in stages:
        path = str(Path(final).parent.parent / stage / "encoder")
        names[path] = stage
    if stages and final not in names:  # handed out with another pooling (the pipeline's encoder_pooling_mode)
        names[final] = final_role(summary, stages)
    if reduced:
        names[f"{final}:{reduced}"] = f"{stages[-1]}:{reduced}" if stages else reduced
    scores: dict[str, dict[str, float]] = {}
    for part in ("stages", "final"):
        results = (summary.get("evaluation") or {}).get(part)
        if not results:
            continue
        for model, entry in results["models"].items():
            role = names.get(model, model)
            for task, info in results["tasks"].items():
                value = entry["scores"].get(task, {}).get(info["main_metric"])
                if value is not None:
                    scores.setdefault(role, {})[task] = float(value)
    return scores


def _stats(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if not math.isnan(v)]
    n = len(finite)
    mean = sum(finite) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else 0.0
    return {"mean": round(mean, 2), "std": round(std, 2), "n": n, "values": [round(v, 2) for v in values],
            "min": round(min(finite), 2) if finite else None}


def seed_table(runs: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{role: {task: {"mean", "std", "n", "values", "min"}}}`` over the seeds of ``runs``.

    >>> seed_table({1: {"final": {"stsb": 70.0}}, 2: {"final": {"stsb": 72.0}}})["final"]["stsb"]["std"]
    1.41
    """
    table: dict[str, dict[str, dict[str, Any]]] = {}
    roles = list(dict.fromkeys(role for scores in runs.values() for role in scores))
    for role in roles:
        tasks = list(dict.fromkeys(t for scores in runs.values() for t in scores.get(role, {})))
        table[role] = {t: _stats([runs[s][role][t] for s in runs if t in runs[s].get(role, {})]) for t in tasks}
    return table


def seeds_markdown(table: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """The mean ± std table (one row per model, one column per task) and the per-run times."""
    tasks = list(dict.fromkeys(t for row in table.values() for t in row))
    lines = ["| model | " + " | ".join(tasks) + " |", "| --- |" + " ---: |" * len(tasks)]
    for role, row in table.items():
        cells = []
        for t in tasks:
            cell = row.get(t)
            if cell is None:
                cells.append("")
            elif cell["n"] > 1:
                cells.append(f"{cell['mean']:.2f} ± {cell['std']:.2f}")
            else:
                cells.append(f"{cell['mean']:.2f}")
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    lines += ["", "| seed | training min | run wall min (this invocation) | kept checkpoint |", "| ---: | ---: | ---: | --- |"]
    for run in runs:
        kept = ", ".join(f"{stage} step {info['selection']['best_step']} (dev {info['selection']['best_score']:.2f})"
                         for stage, info in run["stages"].items() if info.get("selection"))
        lines.append(f"| {run['seed']} | {run['training_seconds'] / 60:.1f} | {run['wall_seconds'] / 60:.1f} | "
                     f"{kept} |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_seeds(config: dict[str, Any], output: str | os.PathLike, seeds: int = 3, nproc: int = 1,
              echo=print) -> dict[str, Any]:
    """Run ``config`` with ``seeds`` consecutive seeds and write ``seeds.md`` / ``seeds.json`` in ``output``."""
    from .pipeline import STAGES, check_evaluation_data, run_pipeline

    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    config = check_evaluation_data(config, echo)
    first = base_seed(config)
    stages = [s for s in STAGES if config.get(s)]
    reduced = (config.get("evaluation") or {}).get("reduced_precision")
    runs, scores = [], {}
    for seed in range(first, first + seeds):
        echo(f"=== seed {seed} ({seed - first + 1}/{seeds}) ===")
        summary = run_pipeline(with_seed(config, seed), output=out / f"seed-{seed}", nproc=nproc, echo=echo,
                               cache_dir=out / "embeddings")
        runs.append({"seed": seed, "training_seconds": summary["training_seconds"],
                     "wall_seconds": summary["wall_seconds"], "stages": summary["stages"]})
        scores[seed] = _roles(summary, stages, reduced)
        final = final_role(summary, stages)
    table = seed_table(scores)
    result = {"seeds": list(scores), "table": table, "runs": runs, "scores": scores, "final_role": final}
    _write_atomic(out / "seeds.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
    markdown = seeds_markdown(table, runs)
    _write_atomic(out / "seeds.md", markdown)
    echo("")
    echo(f"mean ± std over {seeds} seed(s) ({out / 'seeds.md'}):")
    echo(markdown)
    return result
