"""SimCSE training speed on the embedded default model (CPU), the official run_simcse.py and llm2embed side by side.

    python benchmarks/contrastive_speed.py [--steps 20] [--warmup 3] [--mntp-adapter DIR]
                                           [--settings fp32+bylen+gc,bf16+bylen+gc,bf16+bylen]
    python benchmarks/contrastive_speed.py --steps 2 --warmup 1 --batch-size 4 --seq-len 32   # smoke run
    python benchmarks/contrastive_speed.py --skip-official                                     # ours only

First the official ``experiments/run_simcse.py`` of llm2vec 0.2.3 (run from ``../shared/anchors``, in its own
venv, see ``benchmarks/anchor.py``) with ``configs/simcse_smol.json`` pointed at a temporary folder, then
``llm2embed.training.contrastive.train_contrastive(mode="simcse")`` once per setting of ours, each in its own
process, with the same settings:
SmolLM2-135M (embedded default), bidirectional, mean pooling, batch 32 sentences, max_seq_length 64, LoRA r
16, fp32, simcse_dropout 0.3, loss_scale 20, lr 3e-5, seed 42, SDPA, the sentences of the train split of the
embedded Wikipedia corpus (one per line, ``Wiki1M`` format, for the official script). Both stop after warm-up +
steps optimizer steps, timed from the end of the last warm-up step by the same kind of Trainer callback.
Prints the loss at every step, then s/step, sentence pairs/s, peak RSS of each process and the ratios of this
run, and the losses at step 10 and at the last step.

``--settings`` (``benchmarks/training_runs.py``: ``fp32`` or ``bf16`` autocast, ``+bylen`` length-grouped
batches, ``+gc`` activation checkpointing, ``+mbN`` GradCache mini-batches of N; same loss and gradients) change
our runs only: the official always runs its reference settings (fp32, in-batch loss, random batches). The
official runs without an MNTP adapter unless ``--official-mntp-adapter`` names one saved by its own
``run_mntp.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def run_official(settings: dict, total: int, adapter: str | None, tmp: str):
    import anchor
    from llm2embed.training.contrastive import wiki_train_sentences

    sentences_file = os.path.join(tmp, "wiki_sentences_train.txt")
    Path(sentences_file).write_text("\n".join(" ".join(s.split()) for s in wiki_train_sentences()) + "\n",
                                    encoding="utf-8")
    config = anchor.anchor_config(
        "simcse_smol", model_name_or_path=str(anchor.anchor_model("smollm2-135m")),
        peft_model_name_or_path=adapter, dataset_file_path=sentences_file, output_dir=os.path.join(tmp, "out"),
        stop_after_n_steps=total, logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True,
        **settings)
    config_file = os.path.join(tmp, "simcse_official.json")
    Path(config_file).write_text(json.dumps(config, indent=2))
    print(f"official run_simcse.py ({config_file}) ...", flush=True)
    return anchor.run_script("run_simcse.py", args=[config_file])


def train_ours(setting: dict, settings: dict, total: int, adapter: str | None, result: str, warmup: int,
               steps: int) -> None:
    import training_runs

    from llm2embed.training.contrastive import train_contrastive

    training_runs.apply_setting_in_process(setting)

    times: dict[int, float] = {}
    losses: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as out:
        train_contrastive({
            **settings, "model_name_or_path": "smollm2-135m", "peft_model_name_or_path": adapter,
            "dataset_name": "wiki", "output_dir": out, "stop_after_n_steps": total, "logging_steps": 1,
            "save_strategy": "no", "use_cpu": True, "disable_tqdm": True, "mini_batch_size": setting["mb"] or None,
            "bf16": setting["bf16"], "gradient_checkpointing": setting["gc"],
            "train_sampling_strategy": "group_by_length" if setting["bylen"] else "random",
        }, mode="simcse", fresh=True, callbacks=[training_runs.step_timer(times, losses)])
    training_runs.write_result(result, training_runs.our_figures(times, losses, warmup, steps,
                                                                 training_runs.label(setting)))


def main() -> None:
    import training_runs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (at least 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--seq-len", type=int, default=64, help="max_seq_length")
    parser.add_argument("--mntp-adapter", default=None, help="MNTP adapter merged before SimCSE (ours)")
    parser.add_argument("--official-mntp-adapter", default=None,
                        help="MNTP adapter for the official run (one saved by its run_mntp.py)")
    parser.add_argument("--settings", default="fp32+bylen+gc,bf16+bylen+gc,bf16+bylen",
                        help="comma-separated settings of ours, e.g. fp32+mb8,bf16+bylen (see training_runs.py)")
    parser.add_argument("--skip-official", action="store_true", help="ours only: no side-by-side figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step's time includes start-up)")
    try:
        ours = [training_runs.parse_setting(s, allowed={"gc", "bylen", "mb"})
                for s in (args.settings if args.child is None else args.child).split(",")]
    except ValueError as exc:
        parser.error(str(exc))
    batch = args.batch_size
    total = args.warmup + args.steps
    settings = {  # the same for both tools
        "per_device_train_batch_size": batch, "max_seq_length": args.seq_len, "lora_r": 16, "simcse_dropout": 0.3,
        "loss_scale": 20, "learning_rate": 3e-5, "seed": 42, "torch_dtype": "float32", "max_steps": 1000,
    }
    if args.child is not None:
        train_ours(ours[0], settings, total, args.mntp_adapter, args.result, args.warmup, args.steps)
        return

    figures: list[dict] = []
    if not args.skip_official:
        import anchor

        with tempfile.TemporaryDirectory() as tmp:
            run = run_official(settings, total, args.official_mntp_adapter, tmp)
        steps = anchor.step_figures(run, args.warmup, args.steps)
        figures.append({"tool": "official", "s_per_step": steps["s_per_step"], "peak_gb": run.peak_rss_mb / 1024,
                        "losses": steps["losses"], "setting": "fp32, in-batch"})
    child_args = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(batch),
                  "--seq-len", str(args.seq_len)]
    if args.mntp_adapter:
        child_args += ["--mntp-adapter", args.mntp_adapter]
    figures += training_runs.run_settings(__file__, args.settings.split(","), child_args)

    import torch

    official = figures[0] if figures[0]["tool"] == "official" else None
    print(f"\nSimCSE, batch {batch}, seq <= {args.seq_len}, LoRA r 16, {args.steps} steps timed after {args.warmup} "
          f"warm-up, {torch.get_num_threads()} threads; "
          + ("official llm2vec 0.2.3 run_simcse.py measured in this run" if official else "official skipped"))
    if official and (args.mntp_adapter or args.official_mntp_adapter) and not (
            args.mntp_adapter and args.official_mntp_adapter):
        print("note: only one of the two runs has an MNTP adapter (--mntp-adapter / --official-mntp-adapter)")
    training_runs.print_training_table(figures, "pairs/s", batch, total, setting_width=36)


if __name__ == "__main__":
    main()
