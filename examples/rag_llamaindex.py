"""RAG with LlamaIndex and one model: llm2embed embeddings for the index, the same weights answering.

Builds a LlamaIndex ``VectorStoreIndex`` over held-out Wikipedia articles of the embedded corpus with
``DualModelEmbedding`` (the encoder: LoRA adapter on, bidirectional), prints the top passages of each query,
then answers each query through ``index.as_query_engine(llm=DualModelLLM(...))``: the same
:class:`~llm2embed.dual.DualModel`, adapter off and causal, with the base model's chat template. One copy of
the weights does both; everything runs offline.

    pip install llama-index-core
    python examples/rag_llamaindex.py --model out/my-encoder --articles 300 --query "Who painted the Mona Lisa?"

``--model`` is a saved encoder folder; anything else (``smollm2-135m``, a Hub id, a .gguf file) is converted
first and saved, with ``--instruction`` as its query instruction, to ``--save-to`` (default: a temporary
folder). Without ``--query`` the example asks the short descriptions of a few indexed articles (the queries of
the project's wiki-retrieval benchmark) and marks the article each one describes with ``*``. ``--no-answer``
stops after retrieval; a model whose tokenizer has no chat template cannot answer and retrieves only.
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


def build_index(embed_model, articles, chunk_size: int = 256):
    """A ``VectorStoreIndex`` over ``(title, text, description)`` articles; node text is the passage only."""
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    documents = [Document(text=text, metadata={"title": title},
                          excluded_embed_metadata_keys=["title"], excluded_llm_metadata_keys=["title"])
                 for title, text, _ in articles]
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


def answer(index, llm, queries: list[str], top_k: int = 3):
    """``[(query, answer, [source titles]), ...]`` from LlamaIndex's query engine answering with ``llm``."""
    engine = index.as_query_engine(llm=llm, similarity_top_k=top_k)
    out = []
    for query in queries:
        response = engine.query(query)
        out.append((query, str(response).strip(), [n.node.metadata["title"] for n in response.source_nodes]))
    return out


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="saved encoder folder or model spec")
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION, help="query instruction when converting")
    parser.add_argument("--save-to", default=None, help="where a converted model is saved")
    parser.add_argument("--articles", type=int, default=300, help="held-out articles to index")
    parser.add_argument("--max-words", type=int, default=120, help="words kept of each article's lead")
    parser.add_argument("--query", action="append", default=None, help="a query (repeatable)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=96, help="longest answer in tokens")
    parser.add_argument("--no-answer", action="store_true", help="retrieve only, generate nothing")
    parser.add_argument("--corpus-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from llm2embed.dual import DualModel
    from llm2embed.llamaindex import DualModelEmbedding, DualModelLLM

    articles = held_out_sample(args.articles, args.max_words, args.corpus_file)
    model_path = saved_encoder(args.model, args.instruction, args.save_to)
    dual = DualModel.from_pretrained(model_path)          # one copy of the weights for both roles
    index = build_index(DualModelEmbedding(dual), articles)
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

    if args.no_answer:
        return results
    if not dual.chat_tokenizer.chat_template:
        print(f"\n{model_path}: the tokenizer has no chat template, so the model cannot answer (retrieval only)")
        return results
    llm = DualModelLLM(dual, max_new_tokens=args.max_new_tokens, temperature=0)
    print("\nAnswers (LlamaIndex query engine; the same weights, adapter off, causal):")
    for query, text, titles in answer(index, llm, queries, args.top_k):
        print(f"- {query}\n  A: {text}\n  sources: {', '.join(titles)}")
    return results


if __name__ == "__main__":
    main()
