"""MNTP training speed on the embedded default model (CPU, fp32).

    python benchmarks/mntp_speed.py [--steps 20] [--warmup 3] [--gradient-checkpointing] [--bf16]

``--bf16`` trains under bfloat16 autocast (fp32 master weights; AVX-512 bf16 CPUs), not part of the reference
settings: it is the option the default pipeline uses.

Settings of the reference run: SmolLM2-135M (embedded default), max_seq_length 128, batch 8, LoRA r 16,
fp32, mlm_probability 0.2, mask_token_type blank, data_collator_type default, lr 5e-5 with linear decay,
seed 42, Wikipedia lead sections of the train split. Prints the loss at every step, then tokens/s over the
steps after the warm-up and the peak RSS of the process. Reference (official run_mntp.py, transformers 4.44.2,
SDPA, measured on the project's 2-core machine with /usr/bin/time -v): 5.3 s/step = 193 tokens/s, 5.36 GB peak
RSS, loss 6.05 at step 10 and 5.29 at step 20.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

REFERENCE_TOKENS_PER_S = 193.0
REFERENCE_PEAK_RSS_GB = 5.36


def main() -> None:
    from transformers import TrainerCallback

    from llm2embed.training.mntp import train_mntp

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (not the reference setting)")
    args = parser.parse_args()

    batch, seq = 8, 128
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
        config = {
            "model_name_or_path": "smollm2-135m", "train_file": "wiki", "output_dir": out,
            "max_seq_length": seq, "per_device_train_batch_size": batch, "lora_r": 16,
            "mlm_probability": 0.2, "mask_token_type": "blank", "data_collator_type": "default",
            "learning_rate": 5e-5, "lr_scheduler_type": "linear", "seed": 42, "torch_dtype": "float32",
            "stop_after_n_steps": total, "max_steps": 1000, "logging_steps": 1, "save_strategy": "no",
            "do_train": True, "do_eval": False, "eval_strategy": "no", "use_cpu": True, "disable_tqdm": True,
            "gradient_checkpointing": args.gradient_checkpointing, "dataloader_num_workers": 0, "bf16": args.bf16,
        }
        train_mntp(config, fresh=True, callbacks=[Timer()])
    seconds = times[total] - times[args.warmup]
    per_step = seconds / args.steps
    tokens_per_s = batch * seq / per_step
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"\n{args.steps} steps after {args.warmup} warm-up: {per_step:.2f} s/step, {tokens_per_s:.0f} tokens/s "
          f"({tokens_per_s / REFERENCE_TOKENS_PER_S:.2f}x the official script's {REFERENCE_TOKENS_PER_S:.0f})")
    print(f"peak RSS {peak_gb:.2f} GB ({peak_gb / REFERENCE_PEAK_RSS_GB:.2f}x the official {REFERENCE_PEAK_RSS_GB} GB)")
    print(f"loss at step 10: {losses.get(10, float('nan')):.2f} (official 6.05), "
          f"step 20: {losses.get(20, float('nan')):.2f} (official 5.29)")


if __name__ == "__main__":
    main()
