"""The evaluation report: a markdown table, ``results.json`` and a bar chart ``report.png``.

``results`` is the dict :func:`llm2embed.evaluation.runner.run_eval` returns: ``results["models"][spec]["scores"]
[task][metric]`` holds every number (x 100) and ``results["tasks"][task]["main_metric"]`` names the one shown.

>>> print(markdown_table({"tasks": {"stsb": {"main_metric": "spearman"}},
...                       "models": {"a": {"scores": {"stsb": {"spearman": 16.25}}},
...                                  "b": {"scores": {"stsb": {"spearman": 37.15}}}}}))
| model | stsb (Spearman) |
| --- | ---: |
| a | 16.25 |
| b | **37.15** |
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["format_score", "main_scores", "markdown_table", "plot_report", "to_json", "write_report"]


def main_scores(results: dict) -> dict[str, dict[str, float | None]]:
    """model -> task -> the task's main score (``None`` where missing or NaN)."""
    out: dict[str, dict[str, float | None]] = {}
    for model, entry in results["models"].items():
        row = {}
        for task, info in results["tasks"].items():
            value = entry.get("scores", {}).get(task, {}).get(info["main_metric"])
            row[task] = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        out[model] = row
    return out


def format_score(value: float | None) -> str:
    """Two decimals, or ``n/a``.

    >>> format_score(16.254), format_score(None)
    ('16.25', 'n/a')
    """
    return "n/a" if value is None else f"{value:.2f}"


def _column_title(task: str, info: dict) -> str:
    from .tasks import METRIC_LABELS

    metric = info["main_metric"]
    return f"{task} ({METRIC_LABELS.get(metric, metric)})"


def markdown_table(results: dict) -> str:
    """Rows = models, columns = tasks (main score), the best of each column in bold (ties all bold)."""
    scores = main_scores(results)
    tasks = list(results["tasks"])
    best = {}
    for task in tasks:
        values = [round(row[task], 2) for row in scores.values() if row[task] is not None]
        best[task] = max(values) if values else None
    lines = ["| model | " + " | ".join(_column_title(t, results["tasks"][t]) for t in tasks) + " |",
             "| --- | " + " | ".join("---:" for _ in tasks) + " |"]
    for model, row in scores.items():
        cells = []
        for task in tasks:
            text = format_score(row[task])
            if row[task] is not None and len(scores) > 1 and round(row[task], 2) == best[task]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """NaN/inf -> None so the JSON is valid everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(results: dict) -> str:
    """``results`` as indented, strictly valid JSON (NaN becomes ``null``)."""
    return json.dumps(_clean(results), indent=2, default=str, allow_nan=False) + "\n"


def plot_report(results: dict, path: str | os.PathLike) -> Path:
    """A grouped bar chart (tasks on the x axis, one bar per model, main scores x 100) saved as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scores = main_scores(results)
    tasks = list(results["tasks"])
    models = list(scores)
    width = 0.8 / max(len(models), 1)
    fig = Figure(figsize=(max(6.0, 1.2 + 1.6 * len(tasks) * max(1, len(models)) ** 0.5), 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, model in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(tasks))]
        values = [scores[model][t] if scores[model][t] is not None else 0.0 for t in tasks]
        bars = ax.bar(xs, values, width=width, label=model)
        for bar, task in zip(bars, tasks):
            ax.annotate(format_score(scores[model][task]), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([_column_title(t, results["tasks"][t]) for t in tasks], fontsize=8)
    top = max([v for row in scores.values() for v in row.values() if v is not None] + [1.0])
    ax.set_ylim(min(0.0, *[v for row in scores.values() for v in row.values() if v is not None], 0.0), top * 1.15)
    ax.set_ylabel("score (x 100)")
    ax.set_title("llm2embed eval")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _markdown_document(results: dict) -> str:
    lines = ["# llm2embed evaluation", "", markdown_table(results), ""]
    lines.append("Scores are x 100; the best of each column is in bold. Every metric and setting is in "
                 "`results.json`.")
    lines.append("")
    lines.append("| task | kind | main metric | size | instruction (Encoders) |")
    lines.append("| --- | --- | --- | --- | --- |")
    for task, info in results["tasks"].items():
        size = ", ".join(f"{k} {v}" for k, v in info.get("sizes", {}).items())
        instruction = info.get("instruction") or "none"
        lines.append(f"| {task} | {info['kind']} | {info['main_metric']} | {size} | {instruction} |")
    lines.append("")
    lines.append("| model | kind | pooling | attention | max_length | dimension |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for model, entry in results["models"].items():
        s = entry.get("settings") or {}
        cells = [s.get(k) for k in ("kind", "pooling_mode", "attention", "max_length", "dimension")]
        lines.append(f"| {model} | " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    checks = results.get("reference_check") or []
    if checks:
        lines += ["", "Reference figures (STS-B test Spearman x 100, official llm2vec / sentence-transformers):", ""]
        for c in checks:
            lines.append(f"- {c['model']}: {format_score(c['measured'])} vs reference {c['reference']:.2f} "
                         f"({'ok' if c['ok'] else 'MISMATCH'}, tolerance {c['tolerance']})")
    return "\n".join(lines) + "\n"


def write_report(results: dict, folder: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.md``, ``results.json`` and ``report.png`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / "report.md", "json": folder / "results.json", "plot": folder / "report.png"}
    paths["markdown"].write_text(_markdown_document(results), encoding="utf-8")
    paths["json"].write_text(to_json(results), encoding="utf-8")
    plot_report(results, paths["plot"])
    return paths
