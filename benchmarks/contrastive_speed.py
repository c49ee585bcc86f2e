"""SimCSE training speed on the embedded default model (CPU, fp32).

    python benchmarks/contrastive_speed.py [--steps 20] [--warmup 3] [--mntp-adapter DIR] [--mini-batch-size 8]
                                           [--group-by-length] [--bf16]

``--group-by-length`` (batches of similar-length sentences: same data, less padding) and ``--bf16`` (bfloat16
autocast, fp32 master weights) are not part of the reference settings; the default pipeline uses both.

Settings of the reference run: SmolLM2-135M (embedded default; optionally with an MNTP adapter merged),
batch 32 sentences, max_seq_length 64, LoRA r 16, fp32, simcse_dropout 0.3, loss_scale 20, lr 3e-5, SDPA,
sentences of the train split of the embedded Wikipedia corpus. Prints the loss at every step, then sentence
pairs/s over the steps after the warm-up and the process's peak RSS. Reference (official run_simcse.py,
measured on the project's 2-core machine with /usr/bin/time -v): 16.65 s/step = 1.92 pairs/s, 16.2 GB peak
RSS; loss 0.92 at step 10, 0.59 at step 50, 0.25 at step 130, 0.21 at step 200.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

REFERENCE_PAIRS_PER_S = 1.92
REFERENCE_PEAK_RSS_GB = 16.2


def main() -> None:
    from transformers import TrainerCallback

    from llm2embed.training.contrastive import train_contrastive

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mntp-adapter", default=None, help="MNTP adapter merged before SimCSE")
    parser.add_argument("--mini-batch-size", type=int, default=8,
                        help="GradCache mini-batch (same loss and gradients; 0: plain in-batch loss)")
    parser.add_argument("--group-by-length", action="store_true", help="length-grouped batches")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (not the reference setting)")
    args = parser.parse_args()
    batch = 32
    times: dict[int, float] = {}
    losses: dict[int, float] = {}

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            times[state.global_step] = time.perf_counter()

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses[state.global_step] = logs["loss"]
                print(f"step {state.global_step:3d}  loss {logs['loss']:.4f}", flush=True)

    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as out:
        train_contrastive({
            "model_name_or_path": "smollm2-135m", "peft_model_name_or_path": args.mntp_adapter,
            "dataset_name": "wiki", "output_dir": out, "per_device_train_batch_size": batch, "max_seq_length": 64,
            "lora_r": 16, "simcse_dropout": 0.3, "loss_scale": 20, "learning_rate": 3e-5, "seed": 42,
            "stop_after_n_steps": total, "max_steps": 1000, "logging_steps": 1, "save_strategy": "no",
            "use_cpu": True, "disable_tqdm": True, "torch_dtype": "float32",
            "mini_batch_size": args.mini_batch_size or None, "bf16": args.bf16,
            "train_sampling_strategy": "group_by_length" if args.group_by_length else "random",
        }, mode="simcse", fresh=True, callbacks=[Timer()])
    per_step = (times[total] - times[args.warmup]) / args.steps
    pairs_per_s = batch / per_step
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"\n{args.steps} steps after {args.warmup} warm-up: {per_step:.2f} s/step, {pairs_per_s:.2f} sentence "
          f"pairs/s ({pairs_per_s / REFERENCE_PAIRS_PER_S:.2f}x the official script's {REFERENCE_PAIRS_PER_S})")
    print(f"peak RSS {peak_gb:.2f} GB ({peak_gb / REFERENCE_PEAK_RSS_GB:.2f}x the official {REFERENCE_PEAK_RSS_GB} GB)")
    print(f"loss at step 10: {losses.get(10, float('nan')):.2f} (official 0.92)")


if __name__ == "__main__":
    main()
