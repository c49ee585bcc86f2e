"""Check ``llm2embed mntp --plan`` against measurement: estimated vs measured peak memory of real MNTP steps.

    python benchmarks/mntp_plan_check.py [--steps 3] [--cases smollm2-fp32,smollm2-bf16,llama3-width-2l]

Cases (the reference MNTP settings scaled to a CPU: batch 1, max_seq_length 512, all_mask, mlm_probability
0.8, LoRA r 16, gradient checkpointing on; Wikipedia train split):

* ``smollm2-fp32`` / ``smollm2-bf16``: the embedded SmolLM2-135M with ``torch_dtype`` float32 / bfloat16;
* ``smollm2-fp32-no-checkpointing``: as ``smollm2-fp32`` without gradient checkpointing, so that the
  activations of all 30 layers, not the masked logits, set the peak;
* ``llama3-width-2l``: a random-init model with Llama-3-8B's width (hidden 4096, intermediate 14336, 32 heads,
  8 kv heads, vocabulary 128256) and 2 layers, bfloat16 (1.49B parameters, most of them in the embeddings
  and the LM head); built from its config, the SmolLM2 tokenizer feeds it.

Each case runs in a fresh process: after the imports its RSS is the **baseline**; training starts, and at
the first step the bytes of every parameter are counted and the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs``). The **measured peak** is ``parameters + (VmHWM - RSS at the first step)``: the
model's weights plus everything the steps add (gradients, optimizer state, activations, logits), i.e. what
would sit in a GPU's memory; what only the host holds (the tokenized corpus, Python objects, leftovers of
loading) is left out. The whole process's ``VmHWM - baseline`` is printed too. glibc is told to serve every
allocation of 64 KiB or more with its own mmap (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the
RSS at once, as they leave a GPU's allocator. The estimate is ``plan_mntp(...).peak`` for the same config
(its fixed CUDA overhead left out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

LLAMA3_WIDTH = {"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
                "num_key_value_heads": 8, "vocab_size": 128256, "num_hidden_layers": 2,
                "max_position_embeddings": 8192, "rope_theta": 500000.0, "tie_word_embeddings": False}
CASES = ("smollm2-fp32", "smollm2-bf16", "llama3-width-2l", "smollm2-fp32-no-checkpointing")


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def case_config(case: str, folder: str, steps: int) -> dict:
    """The MNTP config of a case (the reference settings at batch 1 and 512 tokens)."""
    config = {
        "model_name_or_path": "smollm2-135m", "train_file": "wiki", "output_dir": os.path.join(folder, "out"),
        "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1, "max_seq_length": 512,
        "mask_token_type": "blank", "data_collator_type": "all_mask", "mlm_probability": 0.8, "lora_r": 16,
        "gradient_checkpointing": not case.endswith("no-checkpointing"),
        "torch_dtype": "float32" if case.startswith("smollm2-fp32") else "bfloat16",
        "attn_implementation": "sdpa", "stop_after_n_steps": steps, "max_train_samples": 64,
        "do_train": True, "do_eval": False, "eval_strategy": "no", "save_strategy": "no", "use_cpu": True,
        "disable_tqdm": True, "report_to": "none", "logging_steps": 1, "seed": 42,
    }
    if case == "llama3-width-2l":
        import transformers

        from llm2embed.sources import resolve_model

        model_dir = os.path.join(folder, "llama3-width-2l")
        transformers.LlamaConfig(**LLAMA3_WIDTH).save_pretrained(model_dir)  # config.json only
        config.update(model_name_or_path=model_dir, tokenizer_name=resolve_model("smollm2-135m"))
    return config


def child(case: str, folder: str, steps: int) -> None:
    """Run the steps in this process and print {"baseline", "peak"} in bytes."""
    import torch
    import transformers
    from transformers import TrainerCallback

    from llm2embed.training.mntp import train_mntp

    config = json.loads(Path(folder, "config.json").read_text())
    if case == "llama3-width-2l":  # no weights exist: build the model from its config (random init)
        def from_config(source, dtype=None, attn_implementation=None, **_):
            torch.manual_seed(0)
            cfg = transformers.AutoConfig.from_pretrained(source)
            return transformers.AutoModelForCausalLM.from_config(cfg, dtype=dtype,
                                                                 attn_implementation=attn_implementation)

        transformers.AutoModelForCausalLM.from_pretrained = from_config
    torch.set_num_threads(os.cpu_count() or 1)
    import datasets, peft, accelerate  # noqa: E401,F401 (imported by training anyway: part of the baseline)
    from transformers import Trainer  # noqa: F401
    baseline = _status_kib("VmRSS") * 1024
    marks = {}

    class ResetPeak(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                import gc

                tensors = {id(t): t for t in gc.get_objects() if isinstance(t, torch.nn.Parameter)}
                marks["parameters"] = sum(t.numel() * t.element_size() for t in tensors.values())
                marks["start"] = _status_kib("VmRSS") * 1024
                Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS

        def on_step_end(self, args, state, control, **kwargs):
            marks[f"after_step_{state.global_step}"] = _status_kib("VmRSS") * 1024
            marks[f"peak_step_{state.global_step}"] = _status_kib("VmHWM") * 1024

    train_mntp(config, callbacks=[ResetPeak()], fresh=True)
    print(json.dumps({"baseline": baseline, "peak": _status_kib("VmHWM") * 1024, **marks}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.steps)
        return

    import warnings

    from llm2embed.training.plan import GIB, plan_mntp

    warnings.simplefilter("ignore")
    rows = []
    for case in args.cases.split(","):
        with tempfile.TemporaryDirectory() as folder:
            config = case_config(case, folder, args.steps)
            Path(folder, "config.json").write_text(json.dumps(config))
            plan = plan_mntp(config)
            # glibc serves every allocation >= 64 KiB with its own mmap and gives it back when freed: RSS then
            # follows live memory instead of keeping freed tensors in its arenas
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
            out = subprocess.run([sys.executable, __file__, "--child", case, "--folder", folder,
                                  "--steps", str(args.steps)], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{case}: training failed")
            measured = json.loads(out.stdout.strip().splitlines()[-1])
        raw = measured["peak"] - measured["baseline"]
        peak = measured["peak"] - measured["start"] + measured["parameters"]
        terms = {k: v / GIB for k, v in plan.memory.items()}
        rows.append((case, plan, peak, raw))
        print(f"{case}: estimate {plan.peak / GIB:.2f} GiB (weights {terms['weights']:.2f}, LoRA state "
              f"{terms['lora_state']:.2f}, activations {terms['activations']:.2f}, masked logits "
              f"{terms['masked_logits']:.2f}); measured {peak / GIB:.2f} GiB = parameters "
              f"{measured['parameters'] / GIB:.2f} + growth during the steps "
              f"{(measured['peak'] - measured['start']) / GIB:.2f}; whole process over its baseline "
              f"{raw / GIB:.2f} GiB; estimate / measured = {plan.peak / peak:.3f}", flush=True)
    print()
    print("| case | parameters | estimate (GiB) | measured (GiB) | estimate / measured | process peak over baseline (GiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for case, plan, peak, raw in rows:
        print(f"| {case} | {plan.parameters / 1e6:,.0f}M | {plan.peak / GIB:.2f} | {peak / GIB:.2f} | "
              f"{plan.peak / peak:.3f} | {raw / GIB:.2f} |")


if __name__ == "__main__":
    main()
