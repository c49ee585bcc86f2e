"""The ablation table: every seed sweep under a folder, one row per setting, mean ± std over seeds per task.

Each setting is a pipeline config run with ``--seeds`` into ``ROOT/<name>/`` (see benchmarks/ablations/):

    llm2embed pipeline benchmarks/ablations/prompteol_simcse.yaml --seeds 3 --output runs/ablations/prompteol_simcse
    python benchmarks/ablation_table.py runs/ablations            # prints the markdown table

Rows: the training-free baselines (from the first sweep that scored them), then each setting's final encoder
with the number of seeds, the lowest STS-B test seed, the training minutes per run and the kept checkpoints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TASKS = ("stsb", "wiki-retrieval", "wiki-classification", "wiki-clustering")
HEADERS = ("STS-B test", "wiki retrieval nDCG@10", "wiki classification acc.", "wiki clustering V")


def cell(stats: dict | None) -> str:
    if not stats:
        return ""
    if stats["n"] > 1 and stats["std"] > 0:  # deterministic baselines print their one value
        return f"{stats['mean']:.2f} ± {stats['std']:.2f}"
    return f"{stats['mean']:.2f}"


def rows(root: Path) -> list[str]:
    sweeps = sorted(p for p in root.iterdir() if (p / "seeds.json").is_file())
    if not sweeps:
        raise SystemExit(f"no seed sweeps (*/seeds.json) under {root}")
    out = ["| setting | seeds | " + " | ".join(HEADERS) + " | lowest STS-B seed | training min/run | kept step (dev) |",
           "| --- | ---: |" + " ---: |" * len(HEADERS) + " ---: | ---: | --- |"]
    baselines_done = False
    for sweep in sweeps:
        data = json.loads((sweep / "seeds.json").read_text())
        table, runs = data["table"], data["runs"]
        stage_roles = [r for r in table if r.split(" ")[0] in ("mntp", "simcse", "supervised")]
        if not baselines_done:
            for role in table:
                if ":" in role and not role.startswith(tuple(stage_roles)):
                    out.append(f"| {role} (no training) | | " + " | ".join(cell(table[role].get(t)) for t in TASKS)
                               + " | | | |")
            baselines_done = True
        final = data.get("final_role") or stage_roles[-1]  # e.g. "simcse (last_token+mean)" when re-pooled
        stage = final.split(" ")[0]
        stats = table[final]
        minutes = [r["training_seconds"] / 60 for r in runs]
        kept = "; ".join(f"{info['selection']['best_step']} ({info['selection']['best_score']:.1f})"
                         for r in runs for name, info in r["stages"].items()
                         if name == stage and info.get("selection"))
        low = stats.get("stsb", {}).get("min")
        out.append(f"| {sweep.name} | {len(runs)} | " + " | ".join(cell(stats.get(t)) for t in TASKS)
                   + f" | {'' if low is None else f'{low:.2f}'} | {sum(minutes) / len(minutes):.1f} | {kept} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="runs/ablations", help="folder of seed sweeps")
    print("\n".join(rows(Path(parser.parse_args().root))))


if __name__ == "__main__":
    main()
