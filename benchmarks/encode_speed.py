"""Encoding speed of the embedded default model on the STS-B test sentences, fp32 and reduced precision.

    python benchmarks/encode_speed.py                   # fp32 and bf16, batch 32, CPU
    python benchmarks/encode_speed.py --dtypes float32  # one precision

Encodes all 2,758 sentences of ``sts-test.csv`` (both columns, repeats included) with
``Encoder.from_pretrained("smollm2-135m")`` (bidirectional, mean pooling, max_length 512) and prints, per
precision: sentences/s (after one warm-up batch), peak RSS of that process, the STS-B test Spearman x100,
and how close the embeddings are to fp32 (cosine: mean, 1st percentile, min). Each precision runs in its own
process so peak RSS is its own. Reference for comparison (measured on the project's 2-core machine):
the official llm2vec 0.2.3 (transformers 4.44.2, fp32, mean pooling, bidirectional) encodes the same
sentences at 34.1 sentences/s with Spearman 16.25.
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

OFFICIAL_LLM2VEC_SENTENCES_PER_S = 34.1  # measured reference, see the module docstring


def child(dtype: str, batch_size: int, out: str) -> None:
    import torch

    from llm2embed import Encoder
    from llm2embed.evaluation.sts import spearman
    from llm2embed.public_data import load_stsb

    pairs = load_stsb("test")
    sentences = pairs.sentences1 + pairs.sentences2
    encoder = Encoder.from_pretrained("smollm2-135m", torch_dtype=dtype)
    encoder.encode(sentences[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    emb = encoder.encode(sentences, batch_size=batch_size, show_progress_bar=False)
    seconds = time.perf_counter() - start
    n = len(pairs)
    a, b = emb[:n], emb[n:]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.save(out + ".npy", emb)
    result = {
        "dtype": dtype,
        "sentences": len(sentences),
        "seconds": seconds,
        "sentences_per_s": len(sentences) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stsb_test_spearman": 100 * spearman(cos, pairs.scores),
        "threads": torch.get_num_threads(),
    }
    Path(out + ".json").write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated precisions")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch_size, args.out)
        return

    results, embeddings = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes.split(","):
            out = os.path.join(tmp, dtype)
            subprocess.run([sys.executable, __file__, "--child", dtype, "--out", out,
                            "--batch-size", str(args.batch_size)], check=True)
            results.append(json.loads(Path(out + ".json").read_text()))
            embeddings[dtype] = np.load(out + ".npy")

    ref = embeddings.get("float32")
    print(f"\nSTS-B test, {results[0]['sentences']} sentences, batch {args.batch_size}, "
          f"{results[0]['threads']} threads, embedded default (SmolLM2-135M, bidirectional, mean pooling)")
    header = (f"{'dtype':<10}{'sent/s':>9}{'vs llm2vec':>12}{'peak RSS MB':>13}{'Spearman':>10}"
              f"{'cos mean':>10}{'cos p1':>9}{'cos min':>9}")
    print(header)
    for r in results:
        line = (f"{r['dtype']:<10}{r['sentences_per_s']:>9.1f}{r['sentences_per_s'] / OFFICIAL_LLM2VEC_SENTENCES_PER_S:>11.2f}x"
                f"{r['peak_rss_mb']:>13.0f}{r['stsb_test_spearman']:>10.2f}")
        if ref is not None:
            e = embeddings[r["dtype"]]
            cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)
            line += f"{cos.mean():>10.4f}{np.percentile(cos, 1):>9.4f}{cos.min():>9.4f}"
        print(line)
    print(f"(official llm2vec 0.2.3 reference: {OFFICIAL_LLM2VEC_SENTENCES_PER_S} sentences/s, fp32, Spearman 16.25)")


if __name__ == "__main__":
    main()
