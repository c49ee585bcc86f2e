"""Memory and mode-switch cost of the dual model (one copy of the weights for embedding and generation).

    python benchmarks/dual_model.py                          # a saved encoder with a LoRA adapter is made first
    python benchmarks/dual_model.py --encoder runs/default/simcse/encoder

**Memory.** Each setting runs in its own fresh Python process, which loads, embeds 32 STS-B sentences and
generates 16 tokens, then reports its peak RSS (``VmHWM``):

- ``dual``: ``DualModel.from_pretrained(encoder)``: the base weights once, the adapter unmerged on top;
- ``separate``: ``Encoder.from_pretrained(encoder)`` (its merged weights) plus the base
  ``AutoModelForCausalLM`` for generation, in one process: what a user needs today to get both;
- ``encoder`` and ``generator``: each of them alone in its own process (two services, the usual deployment
  when the serving engine cannot switch modes); their peaks are summed;
- ``imports``: the same imports and nothing loaded (the floor every process pays).

Target: dual <= 0.6x. Every process pays the same import floor (torch, transformers,
sentence-transformers, peft: about 0.6 GB here), so the one-process ratio cannot reach 0.6 for a 135M model;
it is printed with and without the floor.

**Switch cost.** In the dual process: the median time of one embed call of 32 STS-B sentences, and the median
time of what a call adds to switch modes: taking the lock and switching the LoRA layers off and on again
(``DualModel._adapter_off``; the attention mode is a per-call keyword: it costs nothing extra). Also the median embed time right after a
generate call against right after an embed call. Target: switch < 1 % of the embed call.

Without ``--encoder`` a saved encoder is made from the embedded default with a LoRA adapter (r 16 on every
projection, random non-zero B) in a temporary folder: the same size as a trained one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

GENERATE_TOKENS = 16
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def sentences(n: int = 32) -> list[str]:
    """The first ``n`` distinct STS-B test sentences (``$LLM2EMBED_STSB_DIR`` or ../shared/data/stsb)."""
    import os
    from pathlib import Path

    from llm2embed.evaluation.sts import load_sts

    folder = Path(os.environ.get("LLM2EMBED_STSB_DIR") or Path(__file__).resolve().parents[2] / "shared/data/stsb")
    if not (folder / "sts-test.csv").is_file():
        sys.exit(f"STS-B not found in {folder}: set LLM2EMBED_STSB_DIR")
    pairs = load_sts(folder / "sts-test.csv")
    return list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))[:n]


def make_encoder(path: str) -> str:
    import torch
    from peft import LoraConfig, get_peft_model

    from llm2embed import Encoder

    encoder = Encoder.from_pretrained("smollm2-135m")
    transformer = encoder.st_model[0]
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(transformer.model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    transformer.model = peft_model.eval()
    encoder.save(path)
    return path


def child(mode: str, encoder_path: str) -> dict:
    """Runs in a fresh process: load per ``mode``, embed + generate once, report peak RSS (and timings)."""
    import torch
    from transformers import AutoModelForCausalLM  # noqa: F401  (the same imports in every mode)

    from llm2embed import Encoder
    from llm2embed.dual import DualModel

    texts = sentences()
    out: dict = {"mode": mode}
    if mode == "dual":
        dual = DualModel.from_pretrained(encoder_path)
        dual.embed(texts)
        dual.complete(MESSAGES, max_new_tokens=GENERATE_TOKENS, temperature=0)
        out.update(switch_costs(dual, texts))
    else:  # "separate" (both in this process), "encoder" or "generator" (one of them alone)
        from transformers import AutoTokenizer

        from llm2embed import resolve_model
        from llm2embed.dual import adapter_chain

        if mode in ("separate", "encoder"):
            encoder = Encoder.from_pretrained(encoder_path)
            encoder.encode(texts, normalize_embeddings=True)
        if mode in ("separate", "generator"):
            base = resolve_model(adapter_chain(encoder_path)[0])
            generator = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
            ids = AutoTokenizer.from_pretrained(base).apply_chat_template(
                MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
            with torch.inference_mode():
                generator.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                   max_new_tokens=GENERATE_TOKENS, do_sample=False)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``; unlike ``ru_maxrss`` it is not inherited across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def switch_costs(dual, texts, repeats: int = 5) -> dict:
    embed_times, after_generate, after_embed, switch = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dual.embed(texts)
        embed_times.append(time.perf_counter() - t0)
    for _ in range(3):
        dual.complete(MESSAGES, max_new_tokens=1, temperature=0)
        t0 = time.perf_counter()
        dual.embed(texts)
        after_generate.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dual.embed(texts)
        after_embed.append(time.perf_counter() - t0)
    for _ in range(200):
        t0 = time.perf_counter()
        with dual.lock, dual._adapter_off():
            pass
        switch.append(time.perf_counter() - t0)
    return {"embed32_ms": statistics.median(embed_times) * 1000,
            "switch_ms": statistics.median(switch) * 1000,
            "embed_after_generate_ms": statistics.median(after_generate) * 1000,
            "embed_after_embed_ms": statistics.median(after_embed) * 1000,
            "lora_layers": sum(1 for m in dual.peft_model.modules() if hasattr(m, "lora_A") and m.lora_A)}


def run_child(mode: str, encoder_path: str) -> dict:
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import dual_model; "
            f"print('RESULT', json.dumps(dual_model.child({mode!r}, {encoder_path!r})))")
    if mode == "imports":
        code = ("import json, sys, torch, transformers, sentence_transformers, peft, llm2embed.dual; "
                "sys.path.insert(0, 'benchmarks'); import dual_model; "
                "print('RESULT', json.dumps({'mode': 'imports', 'peak_rss_mb': dual_model.peak_rss_mb()}))")
    if mode == "make":
        code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import dual_model; "
                f"print('RESULT', json.dumps(dual_model.make_encoder({encoder_path!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=None, help="a saved encoder folder with adapter/ (default: made)")
    args = parser.parse_args()
    import os

    with tempfile.TemporaryDirectory() as tmp:
        path = args.encoder or run_child("make", os.path.join(tmp, "lora-encoder"))  # keeps this process small
        results = {mode: run_child(mode, path) for mode in ("imports", "dual", "separate", "encoder", "generator")}
    dual, separate, floor = results["dual"], results["separate"], results["imports"]
    ratio = dual["peak_rss_mb"] / separate["peak_rss_mb"]
    print(f"encoder: {args.encoder or 'smollm2-135m + random LoRA r16 on all projections (made)'}; "
          f"{dual['lora_layers']} LoRA layers; cores {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}")
    print(f"peak RSS: dual {dual['peak_rss_mb']:.0f} MB, encoder + generator {separate['peak_rss_mb']:.0f} MB, "
          f"imports only {floor['peak_rss_mb']:.0f} MB")
    two = results["encoder"]["peak_rss_mb"] + results["generator"]["peak_rss_mb"]
    print(f"dual / (encoder + generator in one process): {ratio:.2f}x; above the imports: "
          f"{(dual['peak_rss_mb'] - floor['peak_rss_mb']) / (separate['peak_rss_mb'] - floor['peak_rss_mb']):.2f}x")
    print(f"dual / (encoder process {results['encoder']['peak_rss_mb']:.0f} MB + generator process "
          f"{results['generator']['peak_rss_mb']:.0f} MB = {two:.0f} MB): {dual['peak_rss_mb'] / two:.2f}x "
          "(target <= 0.6)")
    share = dual["switch_ms"] / dual["embed32_ms"]
    print(f"embed call of 32 STS-B sentences: {dual['embed32_ms']:.1f} ms (median); mode switch (lock + "
          f"adapter off and on): {dual['switch_ms']:.3f} ms = {share * 100:.3f} % (target < 1 %)")
    print(f"embed right after a generate call {dual['embed_after_generate_ms']:.1f} ms vs right after an embed "
          f"call {dual['embed_after_embed_ms']:.1f} ms")
    print(json.dumps({"ratio": ratio, "ratio_two_processes": dual["peak_rss_mb"] / two, "switch_share": share, **{f"{k}_rss_mb": v["peak_rss_mb"]
                                                               for k, v in results.items()}}))


if __name__ == "__main__":
    main()
