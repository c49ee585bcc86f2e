"""Bulk encoding throughput: the Ray Data path with 1 and 2 workers against single-process ``Encoder.encode``.

    python benchmarks/bulk_encode.py [--n 20000] [--model smollm2-135m] [--shard-rows 500] [--batch-size 32]

Input: sentences of the held-out Wikipedia articles (``md5(title) % 5 == 0``, see ``evaluation/wiki.py``),
whitespace collapsed, split after ``.``/``!``/``?``, at least 3 words, in title order; the first ``--n``
(the held-out split has 7,359 such sentences, so ``--n`` above that uses them all). Every configuration
embeds the same ``.txt`` file:

* ``Encoder.encode``: one process, all CPU threads, model already loaded (encode time only);
* ``local shards``: ``llm2embed encode --output DIR`` in this process (model load + Parquet shards);
* ``ray, 1 worker``: ``--engine ray --workers 1 --cpus-per-worker <all>``;
* ``ray, 2 workers``: ``--engine ray --workers 2 --cpus-per-worker <all / 2>``.

The Ray rows are end to end (worker start, model load in every worker, reading, encoding, writing shards)
on a local cluster started once before them (its start-up time is printed separately). On one 2-core
machine Ray cannot be faster than one process using both cores: the rows measure its overhead; the point
of the Ray path is that the same command spreads over the GPUs of a cluster (see README).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path


def heldout_sentences(n: int) -> list[str]:
    from llm2embed.evaluation.wiki import is_held_out, load_wiki_articles

    sentences = []
    for article in load_wiki_articles():
        if is_held_out(article.title):
            text = " ".join(article.extract.split())
            sentences += [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 3]
    return sentences[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="sentences (default 20000: all 7,359 there are)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--shard-rows", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import numpy as np
    import ray
    import torch

    from llm2embed import Encoder
    from llm2embed.bulk import encode_corpus, read_shards

    cores = os.cpu_count() or 1
    sentences = heldout_sentences(args.n)
    print(f"{len(sentences)} held-out Wikipedia sentences, model {args.model}, {cores} CPU cores, "
          f"shards of {args.shard_rows}, batch {args.batch_size}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp, "sentences.txt")
        corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")

        encoder = Encoder.from_pretrained(args.model)
        torch.set_num_threads(cores)
        t0 = time.perf_counter()
        reference = encoder.encode(sentences, batch_size=args.batch_size)
        rows.append(("Encoder.encode (1 process, model loaded)", time.perf_counter() - t0, None))
        del encoder

        def run(name, engine, **kwargs):
            out = Path(tmp, name.replace(" ", "_").replace(",", ""))
            t = time.perf_counter()
            encode_corpus(args.model, corpus, out, engine=engine, shard_rows=args.shard_rows,
                          batch_size=args.batch_size, show_progress=False, **kwargs)
            seconds = time.perf_counter() - t
            ids, emb = read_shards(out)
            cos = (emb * reference).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(reference, axis=1)
            assert ids.tolist() == list(range(len(sentences)))
            rows.append((name, seconds, float(cos.min())))

        run("local shards (1 process, incl. model load)", "local")
        t = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        print(f"ray.init (local cluster): {time.perf_counter() - t:.1f} s")
        try:
            run("ray, 1 worker", "ray", workers=1, cpus_per_worker=cores)
            run("ray, 2 workers", "ray", workers=2, cpus_per_worker=max(1, cores // 2))
        finally:
            ray.shutdown()

    base = rows[0][1]
    print()
    print("| path | seconds | sentences/s | vs Encoder.encode | min cosine to Encoder.encode |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, cos in rows:
        print(f"| {name} | {seconds:.1f} | {len(sentences) / seconds:.1f} | {base / seconds:.2f}x | "
              f"{'' if cos is None else f'{cos:.5f}'} |")


if __name__ == "__main__":
    main()
