"""Retrieval for RAG with LlamaIndex over the held-out Wikipedia articles of the embedded corpus.

Builds a LlamaIndex ``VectorStoreIndex`` with a saved llm2embed encoder loaded by LlamaIndex's own
``HuggingFaceEmbedding`` (no llm2embed code on the query path), then prints the top passages for each query.
No LLM is called: this is the retrieval half of a RAG pipeline; hand the passages to any LLM you like
(``index.as_query_engine(llm=...)``).

    pip install llama-index-core llama-index-embeddings-huggingface
    python examples/rag_llamaindex.py --model out/my-encoder --articles 300 --query "Who painted the Mona Lisa?"

``--model`` is a saved encoder folder; anything else (``smollm2-135m``, a Hub id, a .gguf file) is converted
first and saved, with ``--instruction`` as its query instruction, to ``--save-to`` (default: a temporary
folder). Without ``--query`` the example asks the short descriptions of a few indexed articles (the queries of
the project's wiki-retrieval benchmark) and marks the article each one describes with ``*``.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

DEFAULT_INSTRUCTION = "Given a short description or question, retrieve the Wikipedia passage it is about:"


def held_out_sample(n: int, max_words: int = 120, corpus_file: str | None = None):
    """``n`` held-out articles (deterministic sample: ordered by sha256 of the title), text cut to ``max_words``."""
    from llm2embed.evaluation.wiki import document_text, is_held_out, load_wiki_articles

    articles = [a for a in load_wiki_articles(corpus_file) if is_held_out(a.title) and a.extract.strip()]
    articles.sort(key=lambda a: hashlib.sha256(a.title.encode("utf-8")).hexdigest())
    return [(a.title, document_text(a.extract, max_words), a.description) for a in articles[:n]]


def saved_encoder(model: str, instruction: str, save_to: str | None) -> str:
    """``model`` if it is a saved encoder folder, else convert it, store ``instruction`` and save it."""
    if (Path(model) / "modules.json").is_file():
        return model
    from llm2embed import Encoder
    from llm2embed.integrations import set_query_instruction

    target = save_to or tempfile.mkdtemp(prefix="llm2embed-rag-")
    encoder = Encoder.from_pretrained(model)
    set_query_instruction(encoder, instruction)
    encoder.save(target)
    print(f"converted {model} -> {target} (query instruction: {instruction!r})")
    return target


def build_index(model_path: str, articles, chunk_size: int = 256, device: str = "cpu"):
    """A ``VectorStoreIndex`` over ``(title, text, description)`` articles; node text is the passage only."""
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    from llm2embed.integrations import llamaindex_embedding

    # the one line that matters: HuggingFaceEmbedding with the model's stored query instruction
    embed_model = llamaindex_embedding(model_path, device=device)
    documents = [Document(text=text, metadata={"title": title},
                          excluded_embed_metadata_keys=["title"]) for title, text, _ in articles]
    return VectorStoreIndex.from_documents(
        documents, embed_model=embed_model, transformations=[SentenceSplitter(chunk_size=chunk_size, chunk_overlap=16)]
    )


def retrieve(index, queries: list[str], top_k: int = 3):
    """``[(query, [(title, score, passage), ...]), ...]`` from the index's retriever (no LLM involved)."""
    retriever = index.as_retriever(similarity_top_k=top_k)
    results = []
    for query in queries:
        hits = retriever.retrieve(query)
        results.append((query, [(h.node.metadata["title"], float(h.score), h.node.get_content()) for h in hits]))
    return results


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="saved encoder folder or model spec")
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION, help="query instruction when converting")
    parser.add_argument("--save-to", default=None, help="where a converted model is saved")
    parser.add_argument("--articles", type=int, default=300, help="held-out articles to index")
    parser.add_argument("--max-words", type=int, default=120, help="words kept of each article's lead")
    parser.add_argument("--query", action="append", default=None, help="a query (repeatable)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--corpus-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    articles = held_out_sample(args.articles, args.max_words, args.corpus_file)
    model_path = saved_encoder(args.model, args.instruction, args.save_to)
    index = build_index(model_path, articles)
    if args.query:
        queries, targets = args.query, [None] * len(args.query)
    else:
        sample = [a for a in articles if a[2]][:5]
        queries, targets = [a[2] for a in sample], [a[0] for a in sample]

    results = retrieve(index, queries, args.top_k)
    for (query, hits), target in zip(results, targets):
        print(f"\nQ: {query}" + (f"   (describes: {target})" if target else ""))
        for rank, (title, score, passage) in enumerate(hits, 1):
            mark = "*" if title == target else " "
            snippet = passage if len(passage) <= 160 else passage[:157] + "..."
            print(f" {mark}{rank}. [{score:.3f}] {title}: {snippet}")
    return results


if __name__ == "__main__":
    main()
