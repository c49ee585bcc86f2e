"""``llm2embed rag index PATHS... --store DIR`` and ``llm2embed rag ask "QUESTION" --store DIR``.

    llm2embed rag index docs/ notes.md --store out/rag-store [--model runs/default/simcse/encoder]
    llm2embed rag ask "How are files re-indexed?" --store out/rag-store --k 4
"""

from __future__ import annotations

import argparse


def add_rag_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``rag`` command (with ``index`` and ``ask``) to the ``llm2embed`` subparsers.

    >>> add_rag_parser(parser.add_subparsers())   # doctest: +SKIP
    """
    p = subparsers.add_parser("rag", help="index files and answer questions with one model (retrieval + generation)",
                              description="RAG where the same LLM embeds (adapter on, bidirectional) and answers "
                                          "(adapter off, causal). The store is Qdrant: a local folder, or a server "
                                          "URL (http://host:6333).")
    sub = p.add_subparsers(dest="rag_command", required=True)

    index = sub.add_parser("index", help="index .txt/.md/.jsonl files (re-indexing skips unchanged files)",
                           description="Chunk files into overlapping token windows, embed them and write them to "
                                       "the store. Unchanged files (same sha256) are skipped, changed ones redone, "
                                       "deleted ones removed; an interrupted run is completed by the next.")
    index.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    index.add_argument("--store", required=True, help="store folder (created if missing) or Qdrant server URL")
    index.add_argument("--model", default=None,
                       help="saved encoder or model spec (default: the store's model, else runs/default's final "
                            "encoder, else smollm2-135m)")
    index.add_argument("--chunk-tokens", type=int, default=200, help="tokens per chunk (default 200)")
    index.add_argument("--overlap", type=int, default=40, help="tokens shared by consecutive chunks (default 40)")
    index.add_argument("--batch-size", type=int, default=32)
    index.add_argument("--quiet", action="store_true", help="no progress bar")
    index.set_defaults(func=cmd_rag_index)

    ask = sub.add_parser("ask", help="answer a question from the indexed files, citing file and chunk")
    ask.add_argument("question", metavar="QUESTION")
    ask.add_argument("--store", required=True, help="store folder or Qdrant server URL")
    ask.add_argument("--model", default=None, help="default: the model the store was indexed with")
    ask.add_argument("--k", type=int, default=4, help="chunks to retrieve (default 4)")
    ask.add_argument("--max-new-tokens", type=int, default=256)
    ask.add_argument("--instruction", default=None, help="query instruction (default: the model's stored one)")
    ask.add_argument("--retrieve-only", action="store_true", help="print the sources, generate nothing")
    ask.set_defaults(func=cmd_rag_ask)
    return p


def _open(args, **kwargs):
    """The RAG for a command, or ``None`` after printing why the store cannot be opened (e.g. it is open
    in another process: Qdrant's local mode allows one at a time)."""
    import sys

    from .engine import RAG

    try:
        return RAG(args.store, model=args.model, **kwargs)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_rag_index(args) -> int:
    """``llm2embed rag index PATHS... --store DIR [--model M]``: prints what was indexed, skipped, removed."""
    rag = _open(args, chunk_tokens=args.chunk_tokens, overlap=args.overlap)
    if rag is None:
        return 2
    with rag:
        report = rag.index(args.paths, progress=not args.quiet, batch_size=args.batch_size)
        print(f"{report.files} files: {report.indexed} indexed ({report.chunks} chunks), {report.skipped} unchanged, "
              f"{report.removed} removed; the store holds {rag.store.count()} chunks")
    return 0


def cmd_rag_ask(args) -> int:
    """``llm2embed rag ask "QUESTION" --store DIR [--k 4]``: prints the answer and its sources."""
    from .engine import Answer

    if args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}")
    rag = _open(args, instruction=args.instruction)
    if rag is None:
        return 2
    with rag:
        if args.retrieve_only:
            answer = Answer(args.question, "(retrieval only)", rag.retrieve(args.question, args.k))
        else:
            answer = rag.ask(args.question, k=args.k, max_new_tokens=args.max_new_tokens)
        print(answer.format())
    return 0
