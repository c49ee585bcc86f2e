"""Our side of the training benchmarks: settings as short labels, one process per setting, one table.

A setting is ``+``-joined tokens, e.g. ``bf16+bylen+gc``: ``fp32`` or ``bf16`` (autocast, fp32 master
weights), ``gc`` (activation checkpointing), ``bylen`` (length-grouped batches), ``mbN`` (GradCache mini-batches
of N), ``castw`` (bf16 only: keep the frozen weights in fp32 so that autocast casts them at every forward, as
before ``frozen_weights_as``; for measuring that lever). Each setting trains in its own process, so the peak
RSS printed is that setting's alone.

>>> parse_setting("bf16+bylen+gc", allowed={"gc", "bylen"})
{'bf16': True, 'gc': True, 'bylen': True, 'mb': 0, 'castw': False}
>>> label(parse_setting("fp32+mb8", allowed={"mb"}))
'fp32, GradCache 8'
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_setting(text: str, allowed: set[str]) -> dict:
    """``"bf16+gc"`` -> ``{"bf16": True, "gc": True, ...}``; an unknown token is an error naming it."""
    if not text.strip():
        raise ValueError("empty setting (settings are comma-separated, e.g. fp32,bf16+gc)")
    setting = {"bf16": False, "gc": False, "bylen": False, "mb": 0, "castw": False}
    for token in filter(None, text.strip().split("+")):
        if token in ("fp32", "bf16"):
            setting["bf16"] = token == "bf16"
        elif token == "castw":
            setting["castw"] = True
        elif token in ("gc", "bylen") and token in allowed:
            setting[token] = True
        elif (m := re.fullmatch(r"mb(\d+)", token)) and "mb" in allowed:
            setting["mb"] = int(m.group(1))
        else:
            raise ValueError(f"unknown token {token!r} in setting {text!r}; known: fp32, bf16, castw, "
                             + ", ".join(sorted(a if a != "mb" else "mbN" for a in allowed)))
    if setting["castw"] and not setting["bf16"]:
        raise ValueError(f"castw only means something with bf16 (setting {text!r})")
    return setting


def label(setting: dict) -> str:
    """The setting as the table prints it."""
    parts = ["bf16" if setting["bf16"] else "fp32"]
    if setting["mb"]:
        parts.append(f"GradCache {setting['mb']}")
    if setting["bylen"]:
        parts.append("by length")
    if setting["gc"]:
        parts.append("checkpointing")
    if setting["castw"]:
        parts.append("fp32 frozen")
    return ", ".join(parts)


def apply_setting_in_process(setting: dict) -> None:
    """``castw``: this process trains without :func:`frozen_weights_as` (autocast casts the fp32 weights)."""
    if not setting["castw"]:
        return
    import contextlib

    from llm2embed.training import lora, mntp

    def unchanged(_model, _training_args):
        return contextlib.nullcontext(0)

    lora.frozen_weights_for_training = mntp.frozen_weights_for_training = unchanged


def step_timer(times: dict, losses: dict):
    """A Trainer callback recording the end time and loss of each optimizer step (printing the loss)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times[state.global_step] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses[state.global_step] = logs["loss"]
                print(f"step {state.global_step:3d}  loss {logs['loss']:.4f}", flush=True)

    return StepTimer()


def our_figures(times: dict, losses: dict, warmup: int, steps: int, setting: str) -> dict:
    """Our training run's figures, timed like the official one: seconds per step after ``warmup`` steps, the
    process's peak RSS (GB), the losses by step and the setting's label.

    >>> our_figures({1: 2.0, 3: 6.0}, {3: 0.5}, warmup=1, steps=2, setting="fp32")["s_per_step"]
    2.0
    """
    return {"tool": "llm2embed", "s_per_step": (times[warmup + steps] - times[warmup]) / steps,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
            "losses": losses, "setting": setting}


def write_result(path: str, figures: dict) -> None:
    Path(path).write_text(json.dumps(figures))


def run_settings(script: str, settings: list[str], argv: list[str]) -> list[dict]:
    """Run ``script --child SETTING --result FILE *argv`` once per setting, one after the other."""
    out = []
    for setting in settings:
        print(f"llm2embed, {setting} ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "result.json"
            subprocess.run([sys.executable, script, "--child", setting, "--result", str(result), *argv], check=True)
            figures = json.loads(result.read_text())
        figures["losses"] = {int(k): v for k, v in figures["losses"].items()}
        out.append(figures)
    return out


def print_training_table(figures: list[dict], rate_name: str, per_step: float, total: int,
                         setting_width: int = 28) -> None:
    """One line per run: tool, setting, s/step, rate (``per_step`` units per step, e.g. pairs or tokens), both
    ratios to the official run in ``figures`` (when there is one) and the loss at step 10 and at the end."""
    official = next((f for f in figures if f["tool"] == "official"), None)
    print(f"{'tool':<11}{'setting':<{setting_width}}{'s/step':>8}{rate_name:>10}{'vs official':>13}"
          f"{'peak RSS GB':>13}{'vs official':>13}{'loss@10':>9}{f'loss@{total}':>9}")
    for f in figures:
        line = f"{f['tool']:<11}{f['setting']:<{setting_width}}{f['s_per_step']:>8.2f}{per_step / f['s_per_step']:>10.2f}"
        line += f"{official['s_per_step'] / f['s_per_step']:>12.2f}x" if official else f"{'-':>13}"
        line += f"{f['peak_gb']:>13.2f}"
        line += f"{f['peak_gb'] / official['peak_gb']:>12.2f}x" if official else f"{'-':>13}"
        line += f"{f['losses'].get(10, float('nan')):>9.2f}{f['losses'].get(total, float('nan')):>9.2f}"
        print(line)
