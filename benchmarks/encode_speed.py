"""Encoding speed on the STS-B test sentences, the official llm2vec 0.2.3 and llm2embed side by side.

    python benchmarks/encode_speed.py                        # official fp32, then ours in fp32 and bf16, batch 32
    python benchmarks/encode_speed.py --dtypes float32       # one precision of ours
    python benchmarks/encode_speed.py --pairs 8              # smoke run: 8 pairs = 16 sentences
    python benchmarks/encode_speed.py --skip-official        # ours only (no ratios)

Encodes the 2,758 sentences of ``sts-test.csv`` (both columns, repeats included; ``--pairs N``: the first N
pairs) first with the official tool, in its own venv (``benchmarks/anchor.py``, built once):
``LLM2Vec.from_pretrained(<SmolLM2 prepared for transformers 4.44>, pooling_mode="mean",
enable_bidirectional=True, torch_dtype=float32).encode(..., batch_size)``, then with
``Encoder.from_pretrained("smollm2-135m")`` (bidirectional, mean pooling, max_length 512) per precision. Each
runs in its own process (peak RSS is its own), after one warm-up batch, with the same thread settings. Prints
sentences/s, peak RSS and the ratios to the official from this run, the STS-B test Spearman x100, cosine to
our fp32 embeddings (mean, 1st percentile, min) and the minimum per-sentence cosine to the official's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runs in the anchor venv: argv = model folder, sentences JSON, batch size, output .npy
OFFICIAL_ENCODE = r"""
import json, os, sys, time
import numpy as np, torch
from llm2vec import LLM2Vec

folder, sentences_file, batch, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sentences = json.load(open(sentences_file))
model = LLM2Vec.from_pretrained(folder, device_map="cpu", torch_dtype=torch.float32, pooling_mode="mean",
                                enable_bidirectional=True)
model.encode(sentences[:batch], batch_size=batch, show_progress_bar=False)  # warm-up, as for ours
start = time.perf_counter()
emb = model.encode(sentences, batch_size=batch, show_progress_bar=False)
seconds = time.perf_counter() - start
np.save(out, torch.as_tensor(emb).float().numpy())
json.dump({"seconds": seconds, "sentences_per_s": len(sentences) / seconds, "threads": torch.get_num_threads()},
          open(os.environ["ANCHOR_RESULT"], "w"))
"""


def child(dtype: str, batch_size: int, sentences_file: str, out: str) -> None:
    import torch

    from llm2embed import Encoder

    sentences = json.loads(Path(sentences_file).read_text())
    encoder = Encoder.from_pretrained("smollm2-135m", torch_dtype=dtype)
    encoder.encode(sentences[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    emb = encoder.encode(sentences, batch_size=batch_size, show_progress_bar=False)
    seconds = time.perf_counter() - start
    np.save(out + ".npy", emb)
    Path(out + ".json").write_text(json.dumps({
        "seconds": seconds, "sentences_per_s": len(sentences) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads(),
    }))


def run_official(sentences_file: str, batch_size: int, out: str) -> dict:
    import anchor

    folder = anchor.anchor_model("smollm2-135m")
    run = anchor.run_snippet(OFFICIAL_ENCODE, args=[folder, sentences_file, batch_size, out + ".npy"])
    return {**run.result, "peak_rss_mb": run.peak_rss_mb}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated precisions of ours")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=None, help="only the first N STS-B test pairs (smoke runs)")
    parser.add_argument("--skip-official", action="store_true", help="ours only: no side-by-side figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sentences", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch_size, args.sentences, args.out)
        return

    from llm2embed.evaluation.sts import spearman
    from llm2embed.public_data import load_stsb

    pairs = load_stsb("test")
    n = min(args.pairs or len(pairs), len(pairs))
    sentences = pairs.sentences1[:n] + pairs.sentences2[:n]
    scores = np.asarray(pairs.scores[:n])
    rows, embeddings = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        sentences_file = os.path.join(tmp, "sentences.json")
        Path(sentences_file).write_text(json.dumps(sentences))
        if not args.skip_official:
            print("official llm2vec 0.2.3, float32 ...", flush=True)
            out = os.path.join(tmp, "official")
            rows.append({"tool": "official", "dtype": "float32", **run_official(sentences_file, args.batch_size, out)})
            embeddings["official"] = np.load(out + ".npy")
        for dtype in args.dtypes.split(","):
            print(f"llm2embed, {dtype} ...", flush=True)
            out = os.path.join(tmp, dtype)
            subprocess.run([sys.executable, __file__, "--child", dtype, "--out", out, "--sentences", sentences_file,
                            "--batch-size", str(args.batch_size)], check=True)
            rows.append({"tool": "llm2embed", "dtype": dtype, **json.loads(Path(out + ".json").read_text())})
            embeddings[dtype] = np.load(out + ".npy")

    for r in rows:
        e = embeddings["official" if r["tool"] == "official" else r["dtype"]]
        r["spearman"] = 100 * spearman(_cos(e[:n], e[n:]), scores)
    official = rows[0] if rows[0]["tool"] == "official" else None
    ours_fp32 = embeddings.get("float32")
    threads = sorted({r["threads"] for r in rows})
    print(f"\nSTS-B test, {len(sentences)} sentences, batch {args.batch_size}, threads {'/'.join(map(str, threads))}, "
          f"SmolLM2-135M (bidirectional, mean pooling); "
          + ("official llm2vec 0.2.3 measured in this run" if official else "official skipped"))
    print(f"{'tool':<11}{'dtype':<10}{'sent/s':>9}{'vs official':>13}{'peak RSS MB':>13}{'vs official':>13}"
          f"{'Spearman':>10}{'cos fp32 mean':>15}{'p1':>8}{'min':>8}{'cos official min':>18}")
    for r in rows:
        e = embeddings["official" if r["tool"] == "official" else r["dtype"]]
        line = f"{r['tool']:<11}{r['dtype']:<10}{r['sentences_per_s']:>9.1f}"
        line += f"{r['sentences_per_s'] / official['sentences_per_s']:>12.2f}x" if official else f"{'-':>13}"
        line += f"{r['peak_rss_mb']:>13.0f}"
        line += f"{r['peak_rss_mb'] / official['peak_rss_mb']:>12.2f}x" if official else f"{'-':>13}"
        line += f"{r['spearman']:>10.2f}"
        if ours_fp32 is not None:
            c = _cos(e, ours_fp32)
            line += f"{c.mean():>15.4f}{np.percentile(c, 1):>8.4f}{c.min():>8.4f}"
        else:
            line += f"{'-':>15}{'-':>8}{'-':>8}"
        line += f"{_cos(e, embeddings['official']).min():>18.6f}" if official else f"{'-':>18}"
        print(line)
    if official and ours_fp32 is not None:
        c = _cos(ours_fp32, embeddings["official"])
        print(f"fp32 cosine official vs llm2embed, per sentence: min {c.min():.6f}, mean {c.mean():.6f} "
              f"({'same embeddings' if c.min() >= 0.99995 else 'EMBEDDINGS DIFFER'} at 4 decimals)")


if __name__ == "__main__":
    main()
