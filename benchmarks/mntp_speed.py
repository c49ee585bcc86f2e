"""MNTP training speed on the embedded default model (CPU), the official run_mntp.py and llm2embed side by side.

    python benchmarks/mntp_speed.py [--steps 20] [--warmup 3] [--settings fp32,bf16]
    python benchmarks/mntp_speed.py --steps 2 --warmup 1 --seq-len 32     # smoke run
    python benchmarks/mntp_speed.py --skip-official                      # ours only (no ratios)

First the official ``experiments/run_mntp.py`` of llm2vec 0.2.3 (run from ``../shared/anchors``, in its own
venv, see ``benchmarks/anchor.py``) with ``configs/mntp_smol.json`` pointed at a temporary folder, then
``llm2embed.training.mntp.train_mntp`` once per setting of ours, each in its own process, with the same
settings: SmolLM2-135M (embedded default), max_seq_length 128, batch 8, LoRA r 16, fp32, mlm_probability 0.2,
mask_token_type blank, data_collator_type default, lr 5e-5 with linear decay over 1,000 steps, seed 42, the Wikipedia lead sections of
the train split (one per line for the official script). Both stop after warm-up + steps optimizer steps; the
time is taken from the end of the last warm-up step to the end of the last step, by the same kind of Trainer
callback. Prints the loss at every step, then s/step, tokens/s, peak RSS of each process and the ratios of
this run, and the losses at step 10 and at the last step.

``--settings`` (``benchmarks/training_runs.py``: ``fp32`` or ``bf16`` autocast with fp32 master weights, ``+gc``
activation checkpointing) change our runs only: the official always runs its reference settings (fp32, no
checkpointing).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def run_official(settings: dict, total: int, tmp: str):
    import anchor
    from llm2embed.training.corpora import wiki_train_texts

    train_file = os.path.join(tmp, "wiki_train.txt")
    Path(train_file).write_text("\n".join(" ".join(t.split()) for t in wiki_train_texts()) + "\n", encoding="utf-8")
    config = anchor.anchor_config(
        "mntp_smol", model_name_or_path=str(anchor.anchor_model("smollm2-135m")), train_file=train_file,
        output_dir=os.path.join(tmp, "official-out"), stop_after_n_steps=total, logging_steps=1,
        save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, **settings)
    config_file = os.path.join(tmp, "mntp_official.json")
    Path(config_file).write_text(json.dumps(config, indent=2))
    print(f"official run_mntp.py ({config_file}) ...", flush=True)
    return anchor.run_script("run_mntp.py", args=[config_file])


def train_ours(setting: dict, settings: dict, total: int, result: str, warmup: int, steps: int) -> None:
    import training_runs

    from llm2embed.training.mntp import train_mntp

    training_runs.apply_setting_in_process(setting)

    times: dict[int, float] = {}
    losses: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as out:
        config = {
            **settings, "model_name_or_path": "smollm2-135m", "train_file": "wiki", "output_dir": out,
            "stop_after_n_steps": total, "logging_steps": 1, "save_strategy": "no", "do_train": True,
            "do_eval": False, "eval_strategy": "no", "use_cpu": True, "disable_tqdm": True,
            "dataloader_num_workers": 0, "gradient_checkpointing": setting["gc"], "bf16": setting["bf16"],
        }
        train_mntp(config, fresh=True, callbacks=[training_runs.step_timer(times, losses)])
    training_runs.write_result(result, training_runs.our_figures(times, losses, warmup, steps,
                                                                 training_runs.label(setting)))


def main() -> None:
    import training_runs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (at least 1)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128, help="max_seq_length (tokens per packed block)")
    parser.add_argument("--settings", default="fp32,bf16",
                        help="comma-separated settings of ours, e.g. fp32,bf16+gc (see training_runs.py)")
    parser.add_argument("--skip-official", action="store_true", help="ours only: no side-by-side figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step's time includes start-up)")
    try:
        ours = [training_runs.parse_setting(s, allowed={"gc"})
                for s in (args.settings if args.child is None else args.child).split(",")]
    except ValueError as exc:
        parser.error(str(exc))

    batch, seq = args.batch_size, args.seq_len
    total = args.warmup + args.steps
    settings = {  # the same for both tools
        "max_seq_length": seq, "per_device_train_batch_size": batch, "lora_r": 16, "mlm_probability": 0.2,
        "mask_token_type": "blank", "data_collator_type": "default", "learning_rate": 5e-5,
        "lr_scheduler_type": "linear", "seed": 42, "torch_dtype": "float32", "max_steps": 1000,
        "gradient_checkpointing": False,
    }
    if args.child is not None:
        train_ours(ours[0], settings, total, args.result, args.warmup, args.steps)
        return

    figures: list[dict] = []
    if not args.skip_official:
        import anchor

        with tempfile.TemporaryDirectory() as tmp:
            run = run_official(settings, total, tmp)
        steps = anchor.step_figures(run, args.warmup, args.steps)
        figures.append({"tool": "official", "s_per_step": steps["s_per_step"], "peak_gb": run.peak_rss_mb / 1024,
                        "losses": steps["losses"], "setting": "fp32"})
    figures += training_runs.run_settings(__file__, args.settings.split(","), [
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(batch), "--seq-len", str(seq)])

    import torch

    official = figures[0] if figures[0]["tool"] == "official" else None
    print(f"\nMNTP, batch {batch} x {seq} tokens, LoRA r 16, {args.steps} steps timed after {args.warmup} warm-up, "
          f"{torch.get_num_threads()} threads; "
          + ("official llm2vec 0.2.3 run_mntp.py measured in this run" if official else "official skipped"))
    training_runs.print_training_table(figures, "tokens/s", batch * seq, total, setting_width=26)


if __name__ == "__main__":
    main()
