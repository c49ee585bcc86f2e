"""Retrieval quality of ``llm2embed rag`` on the held-out Wikipedia articles, and example answers with citations.

    python benchmarks/rag_quality.py                       # best encoder found, MiniLM, the causal baseline
    python benchmarks/rag_quality.py --model runs/default/simcse/encoder --examples 5

Every held-out article of the embedded corpus (2,011; the split of ``llm2embed.evaluation.wiki``) is written
as one JSONL record (``title`` + the first ``--max-words`` words of its lead: 24 by default, the documents of
the wiki benchmark, which keeps a run within minutes per 135M model on a CPU; 0 = the whole lead) and indexed through :class:`llm2embed.rag.RAG`: the
same token-window chunking for every model (200 tokens, overlap 40, SmolLM2's tokenizer), the Qdrant store
in local mode. The queries are the wiki benchmark's retrieval queries (1,925 distinct article descriptions);
a query is a hit at k when one of the k chunks retrieved by ``RAG.retrieve_many`` belongs to an article with
that description. Encoders embed queries with the wiki benchmark's instruction; MiniLM gets none (as in
``llm2embed eval``). Prints recall@1/4/10 per model and a Markdown table, then asks ``--examples`` questions
about indexed articles with the first model (``RAG.ask``: the same weights retrieve and answer) and prints
each answer as ``llm2embed rag ask`` does.

The first model defaults to :func:`llm2embed.rag.default_model` (the default pipeline's final encoder when
``runs/default`` has one, else the untrained bidirectional embedded default, which is then said).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

KS = (1, 4, 10)
QUESTIONS = "What can you tell me about {title}?"


def write_corpus(path: Path, max_words: int | None) -> tuple[dict[str, str], dict[str, set[str]], list[tuple[str, str]]]:
    """Held-out articles -> JSONL; returns (queries by id, relevant titles by id, [(title, description)])."""
    from llm2embed.evaluation.wiki import build_wiki_benchmark, document_text, is_held_out, load_wiki_articles

    articles = [a for a in load_wiki_articles() if is_held_out(a.title) and a.extract.strip()]
    with open(path, "w", encoding="utf-8") as fh:
        for a in articles:
            fh.write(json.dumps({"title": a.title, "text": document_text(a.extract, max_words)}) + "\n")
    retrieval = build_wiki_benchmark().retrieval
    sample = sorted(articles, key=lambda a: hashlib.sha256(a.title.encode()).hexdigest())
    return retrieval.queries, retrieval.relevant, [(a.title, a.description) for a in sample]


def recall(hits_per_query, relevant_per_query, k: int) -> float:
    found = sum(bool({h.payload.get("title") for h in hits[:k]} & relevant)
                for hits, relevant in zip(hits_per_query, relevant_per_query))
    return found / len(hits_per_query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="first model (default: llm2embed.rag.default_model())")
    parser.add_argument("--baseline", action="append", default=None,
                        help="further models (default: minilm and smollm2-135m:causal)")
    parser.add_argument("--examples", type=int, default=5, help="questions answered with the first model")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-words", type=int, default=24,
                        help="words kept of each article (default 24, the wiki benchmark's documents; 0: whole lead)")
    parser.add_argument("--store-dir", default=None, help="keep the stores here (default: a temporary folder)")
    args = parser.parse_args()

    from llm2embed.dual import DualModel
    from llm2embed.evaluation.tasks import DEFAULT_INSTRUCTIONS
    from llm2embed.rag import RAG, default_model, load_rag_model

    first, why = (args.model, "given") if args.model else default_model()
    models = [first] + (args.baseline or ["minilm", "smollm2-135m:causal"])
    instruction = DEFAULT_INSTRUCTIONS["wiki-retrieval"]
    print(f"first model: {first} ({why}); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.store_dir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        corpus = root / "wiki-held-out.jsonl"
        queries, relevant, sample = write_corpus(corpus, args.max_words or None)
        qids = sorted(queries)
        texts, wanted = [queries[q] for q in qids], [relevant[q] for q in qids]
        chunker = DualModel.from_pretrained("smollm2-135m").tokenizer  # the same chunks for every model
        rows, first_rag = [], None
        for i, spec in enumerate(models):
            model = load_rag_model(spec)
            uses = getattr(model, "uses_instructions", True)
            rag = RAG(root / f"store-{i}", model=model, chunk_tokenizer=chunker,
                      instruction=instruction if uses else "")
            t0 = time.perf_counter()
            report = rag.index([corpus], progress=False)
            index_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            hits = rag.retrieve_many(texts, k=max(KS))
            query_s = time.perf_counter() - t0
            scores = {k: recall(hits, wanted, k) for k in KS}
            rows.append((spec, scores, report.chunks, index_s, query_s))
            print(f"{spec}: " + ", ".join(f"recall@{k} {v * 100:.2f}" for k, v in scores.items())
                  + f" ({report.chunks} chunks indexed in {index_s:.0f} s, {len(texts)} queries in {query_s:.0f} s)",
                  flush=True)
            if i == 0:
                first_rag = rag
            else:
                rag.close()
                del model

        print(f"\n{len(texts)} queries, {first_rag.store.count()} chunks of {len(sample)} held-out articles\n")
        print("| model | " + " | ".join(f"recall@{k}" for k in KS) + " |")
        print("| --- | " + " | ".join("---:" for _ in KS) + " |")
        for spec, scores, *_ in rows:
            print(f"| {spec} | " + " | ".join(f"{scores[k] * 100:.2f}" for k in KS) + " |")

        if args.examples and hasattr(first_rag.model, "chat_tokenizer"):
            first_rag.instruction = None  # questions, not descriptions: the model's own query instruction
            print(f"\nExample answers ({first}; retrieval and answer from the same weights, k=4):")
            for title, _ in sample[:args.examples]:
                question = QUESTIONS.format(title=title)
                answer = first_rag.ask(question, k=4, max_new_tokens=args.max_new_tokens, temperature=0)
                print(f"\n$ llm2embed rag ask \"{question}\" --store STORE --k 4\n{answer.format()}", flush=True)
        first_rag.close()


if __name__ == "__main__":
    main()
