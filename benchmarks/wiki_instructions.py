"""Choose the instruction for topic classification and clustering on the Wikipedia dev split, then report test.

Each candidate is an instruction JSON file (``none``: no instruction on those tasks, today's default). Every
candidate is scored on ``wiki-dev-classification`` and ``wiki-dev-clustering`` (train-split articles); the one
with the best mean of accuracy and V-measure over the trained models (``--models``) is chosen there, and only the
chosen one and ``none`` are then scored on the test tasks. Baselines get the same instructions, so the
comparison with them stays fair. Reports and embeddings go under ``--output`` (a rerun recomputes nothing).

    python benchmarks/wiki_instructions.py \\
        --models runs/ablations/prompteol_simcse/seed-42/simcse/encoder \\
        --candidates none benchmarks/instructions/wiki_topic.json \\
        --test-models runs/ablations/prompteol_simcse/seed-4{2,3,4}/simcse/encoder \\
        --test-cache runs/instructions/test-cache    # a copy of runs/ablations/prompteol_simcse/embeddings
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from llm2embed.evaluation.runner import run_eval

DEV_TASKS = ("wiki-dev-classification", "wiki-dev-clustering")
TEST_TASKS = ("wiki-classification", "wiki-clustering")


def candidate_name(candidate: str) -> str:
    return "none" if candidate.lower() == "none" else Path(candidate).stem


def instructions_of(candidate: str) -> str | None:
    """``None`` keeps the built-in table (no instruction on classification or clustering)."""
    return None if candidate.lower() == "none" else candidate


def scores(results: dict, tasks: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """model -> (accuracy, V-measure) on ``tasks``."""
    return {model: tuple(entry["scores"][t][results["tasks"][t]["main_metric"]] for t in tasks)
            for model, entry in results["models"].items()}


def evaluate(candidate: str, models: list[str], baselines: list[str], tasks: tuple[str, ...], folder: Path,
             cache_dir: str | None = None) -> dict:
    return scores(run_eval(models[0], tasks=list(tasks), baselines=models[1:] + baselines, report_dir=folder,
                           instructions=instructions_of(candidate), cache_dir=cache_dir,
                           show_progress_bar=False), tasks)


def table(title: str, by_candidate: dict[str, dict[str, tuple[float, ...]]]) -> str:
    lines = [f"### {title}", "", "| instructions | model | classification acc. | clustering V |",
             "| --- | --- | ---: | ---: |"]
    for name, by_model in by_candidate.items():
        lines += [f"| {name} | {model} | {acc:.2f} | {v:.2f} |" for model, (acc, v) in by_model.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="trained encoders the choice is made for (dev)")
    parser.add_argument("--test-models", nargs="*", default=None, help="encoders reported on test (default: --models)")
    parser.add_argument("--baselines", nargs="*", default=["smollm2-135m:causal", "smollm2-135m:prompteol"])
    parser.add_argument("--candidates", nargs="+", required=True, help="instruction JSON files, or none")
    parser.add_argument("--dev-baselines", action="store_true",
                        help="score the baselines on dev too (for information; the choice uses --models only)")
    parser.add_argument("--output", default="runs/instructions")
    parser.add_argument("--test-cache", default=None,
                        help="embedding cache for the test phase, e.g. a copy of a seed sweep's embeddings/ folder "
                             "(the uninstructed test embeddings are then read, not recomputed)")
    args = parser.parse_args()
    out = Path(args.output)

    dev = {candidate_name(c): evaluate(c, args.models, args.baselines if args.dev_baselines else [], DEV_TASKS,
                                       out / f"dev-{candidate_name(c)}") for c in args.candidates}
    print(table("dev (train-split articles)", dev))

    def trained_mean(by_model: dict[str, tuple[float, ...]]) -> float:
        return statistics.mean(sum(by_model[m]) / 2 for m in args.models)

    chosen = max(args.candidates, key=lambda c: trained_mean(dev[candidate_name(c)]))
    print(f"\nchosen on dev: {candidate_name(chosen)} (mean of accuracy and V-measure over --models "
          f"{trained_mean(dev[candidate_name(chosen)]):.2f})\n")

    finals = list(dict.fromkeys(["none", chosen]))
    test_models = args.test_models or args.models
    test = {candidate_name(c): evaluate(c, test_models, args.baselines, TEST_TASKS, out / f"test-{candidate_name(c)}",
                                        args.test_cache) for c in finals}
    print(table("test (held-out articles; reported, never used to choose)", test))
    for name, by_model in test.items():
        print(f"{name}: trained models on test, " + ", ".join(
            f"{label} {mean_std([by_model[m][i] for m in test_models])}"
            for i, label in enumerate(("classification", "clustering"))))


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


if __name__ == "__main__":
    main()
