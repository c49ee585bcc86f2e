"""The ``llm2embed`` command line.

    llm2embed convert smollm2-135m out/my-encoder [--adapter A] [--pooling mean]
    llm2embed encode out/my-encoder --input texts.txt --output emb.npy
    llm2embed info out/my-encoder
    llm2embed demo

Every subcommand has ``--help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from .pooling import POOLING_MODES, pooling_parts

DEMO_SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on stage.",
    "A woman is slicing an onion.",
    "Vegetables are being chopped in a kitchen.",
    "The stock market fell sharply on Monday.",
]


def _pooling_arg(value: str) -> str:
    try:
        pooling_parts(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", action="append", default=[], metavar="DIR",
                   help="LoRA adapter folder applied on top of the base (repeat to stack; earlier ones are merged)")
    p.add_argument("--pooling", type=_pooling_arg, default=None, metavar="MODE",
                   help=f"pooling mode: {', '.join(sorted(POOLING_MODES))}, or several joined with '+' "
                        "(concatenated, e.g. last_token+mean); default: mean, or the saved encoder's")
    p.add_argument("--max-length", type=int, default=None, help="longest input in tokens (default 512)")
    p.add_argument("--causal", action="store_true", help="keep causal attention (default: bidirectional)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="weights dtype (default float32)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: automatic)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the Hub")


def _load_kwargs(args) -> dict:
    """``Encoder.from_pretrained`` keyword arguments from the model options (also sent to bulk workers)."""
    kwargs = {}
    if args.dtype:
        kwargs["torch_dtype"] = args.dtype
    if args.causal:  # otherwise the encoder's default (bidirectional, or as a saved encoder says)
        kwargs["enable_bidirectional"] = False
    adapters = list(args.adapter)
    first = adapters[0] if adapters else None
    extra = adapters[1] if len(adapters) > 1 else None
    if len(adapters) > 2:
        raise SystemExit("error: at most two --adapter folders (base adapter, then extra adapter)")
    return dict(
        peft_model_name_or_path=first,
        extra_model_name_or_path=extra,
        pooling_mode=args.pooling,
        max_length=args.max_length,
        trust_remote_code=args.trust_remote_code,
        device=args.device,
        **kwargs,
    )


def _load(args):
    from .encoder import Encoder

    return Encoder.from_pretrained(args.model, **_load_kwargs(args))


def _read_texts(path: Path, field: str) -> list[str]:
    """Every text of a .txt/.jsonl/.parquet file, folder or glob; a bad line stops with its file and line."""
    from .bulk import InputError, read_texts

    try:
        return read_texts(path, field)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None


def _write_embeddings(path: Path, emb, texts: list[str]) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".npy":
            np.save(tmp, emb)
        elif path.suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for text, row in zip(texts, emb):
                    fh.write(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in row]}) + "\n")
        else:
            raise SystemExit(f"error: output {path} must end in .npy or .jsonl")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cmd_convert(args) -> int:
    encoder = _load(args)
    out = encoder.save(args.output, merge_before_save=args.merge)
    info = encoder.info()
    print(f"saved {info['architecture']} encoder ({info['attention']}, pooling {info['pooling_mode']}, "
          f"dimension {info['dimension']}) to {out}")
    return 0


def _shard_output(args) -> bool:
    """Parquet shards (bulk path) when --engine ray or the output is a folder rather than .npy/.jsonl."""
    out = Path(args.output)
    if out.suffix in (".npy", ".jsonl"):
        if args.engine == "ray":
            raise SystemExit(f"error: --engine ray writes Parquet shards into a folder; {out} is a file name")
        return False
    return args.engine == "ray" or out.is_dir() or not out.suffix


def cmd_encode_shards(args) -> int:
    from .bulk import InputError, encode_corpus

    try:
        summary = encode_corpus(
            args.model, args.input, args.output, engine=args.engine, address=args.address, workers=args.workers,
            gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker, shard_rows=args.shard_rows,
            field=args.field, instruction=args.instruction, batch_size=args.batch_size, normalize=args.normalize,
            with_text=args.with_text, overwrite=args.overwrite, load_kwargs=_load_kwargs(args),
            show_progress=not args.quiet)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"{summary['rows']} rows in {summary['shards']} Parquet shards in {summary['output']} "
          f"({summary['written']} written, {summary['skipped']} already complete; {summary['seconds']:.1f} s)")
    return 0


def cmd_encode(args) -> int:
    if _shard_output(args):
        return cmd_encode_shards(args)
    texts = _read_texts(Path(args.input), args.field)
    encoder = _load(args)
    if args.instruction:
        inputs = [[args.instruction, t] for t in texts]
    else:
        inputs = texts
    emb = encoder.encode(inputs, batch_size=args.batch_size, show_progress_bar=not args.quiet,
                         normalize_embeddings=args.normalize)
    _write_embeddings(Path(args.output), emb, texts)
    print(f"wrote {emb.shape[0]} x {emb.shape[1]} embeddings to {args.output}")
    return 0


def cmd_info(args) -> int:
    info = _load(args).info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0


def cmd_demo(args) -> int:
    import numpy as np

    args.adapter, args.pooling, args.max_length, args.causal = [], None, None, False
    args.dtype, args.device, args.trust_remote_code = None, None, False
    encoder = _load(args)
    info = encoder.info()
    print(f"model: {args.model} ({info['architecture']}, {info['parameters'] / 1e6:.0f}M parameters)")
    print(f"attention (verified by the live probe): {info['attention']}")
    emb = encoder.encode(DEMO_SENTENCES, normalize_embeddings=True)
    sim = np.asarray(encoder.similarity(emb, emb))
    print("cosine similarity:")
    for i, s in enumerate(DEMO_SENTENCES):
        print("  " + " ".join(f"{v:5.2f}" for v in sim[i]) + f"  {s}")
    return 0


def cmd_mntp(args) -> int:
    from .training.config import MNTPArguments, DataArguments, ModelArguments, parse_overrides
    from .training.mntp import train_mntp
    from .training.runs import close_distributed

    overrides = parse_overrides(args.overrides, [ModelArguments, DataArguments, MNTPArguments])
    if args.plan:
        from .training.plan import plan_mntp

        print(plan_mntp(args.config, overrides=overrides, gpu_memory=args.gpu_memory, gpus=args.gpus).report())
        return 0
    metrics = train_mntp(args.config, overrides=overrides, fresh=args.fresh)
    close_distributed()
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
             if k in ("train_loss", "eval_loss", "eval_accuracy", "train_runtime", "epoch")}
    print(f"MNTP done: {shown}")
    return 0


def cmd_eval(args) -> int:
    from .evaluation.runner import run_eval

    run_eval(args.model, tasks=args.tasks, baselines=args.baseline, report_dir=args.report,
             instructions=args.instructions, max_length=args.max_length, batch_size=args.batch_size,
             device=args.device, wiki_max_words=args.wiki_max_words)
    return 0


def _contrastive(args, mode: str) -> int:
    from .training.config import ModelArguments, parse_overrides
    from .training.contrastive import ContrastiveArguments, train_contrastive
    from .training.runs import close_distributed

    overrides = parse_overrides(args.overrides, [ModelArguments, ContrastiveArguments])
    metrics = train_contrastive(args.config, mode=mode, overrides=overrides, fresh=args.fresh)
    close_distributed()
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()
             if k in ("train_loss", "train_runtime", "epoch")}
    print(f"{mode} done: {shown}")
    return 0


def cmd_simcse(args) -> int:
    return _contrastive(args, "simcse")


def cmd_supervised(args) -> int:
    return _contrastive(args, "supervised")


def cmd_pipeline(args) -> int:
    from .pipeline import default_config, load_pipeline_config, run_pipeline

    if args.print_default_config:
        import yaml

        print(yaml.safe_dump(default_config(args.recipe), sort_keys=False), end="")
        return 0
    config = load_pipeline_config(args.config, recipe=args.recipe)
    if args.max_length is not None:
        config["max_length"] = args.max_length
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    if args.seeds is not None:
        from .seeds import run_seeds

        if args.fresh or args.no_eval:
            raise ValueError("--seeds runs and scores every seed; it does not combine with --fresh or --no-eval")
        output = args.output or config.get("output") or "runs/default"
        run_seeds(config, output if args.output else f"{output}-seeds", seeds=args.seeds, nproc=args.nproc)
        return 0
    summary = run_pipeline(config, output=args.output, fresh=args.fresh, evaluate=not args.no_eval,
                           nproc=args.nproc)
    print(f"final encoder: {summary['final']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm2embed", description="Turn any decoder-only LLM into a text encoder.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="make a model bidirectional and save it as a sentence-transformers folder",
                       description="Load BASE (built-in name, .gguf, folder or Hub id), make it bidirectional, "
                                   "apply adapters and save a self-contained sentence-transformers folder to OUT.")
    p.add_argument("model", metavar="BASE")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--merge", action="store_true", help="do not keep the adapter beside the merged weights")
    _add_model_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("encode", help="embed a file of texts", description="Embed the lines of a .txt file, a "
                       "field of a .jsonl file or a column of a .parquet file (or a folder or glob of them) and write "
                       "a .npy matrix or .jsonl rows, or, when --output is a folder, resumable Parquet shards "
                       "(row id, text hash, embedding), in this process or on a Ray cluster (--engine ray).",
                       epilog="example: llm2embed encode out/my-encoder --input 'corpus/*.jsonl' --output out/emb "
                              "--engine ray --address auto --workers 8 --gpus-per-worker 1")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--input", required=True, help=".txt (one text per line), .jsonl or .parquet; a folder or a glob")
    p.add_argument("--output", required=True, help=".npy or .jsonl file, or a folder for Parquet shards")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: a Ray Data actor pool, shards into the --output folder")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local cluster)")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray workers, each loading the model once (default: cluster GPUs or CPUs per worker)")
    p.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per Ray worker (default 0: CPU)")
    p.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs (and torch threads) per Ray worker")
    p.add_argument("--shard-rows", type=int, default=10_000, help="rows per Parquet shard (default 10000)")
    p.add_argument("--with-text", action="store_true", help="also store each text in the shards")
    p.add_argument("--overwrite", action="store_true", help="replace the shards of a different earlier run")
    p.add_argument("--field", default="text", help="text field of .jsonl input (default: text)")
    p.add_argument("--instruction", default=None, help="instruction put before every text (not pooled)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("info", help="architecture, size, verified attention mode, pooling, dimension")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_model_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="score a model and baselines (STS-B, Wikipedia benchmark) and write a report",
                       description="Evaluate MODEL and each --baseline on the tasks, print a table and, with "
                                   "--report, write report.md, results.json and report.png. MODEL and baselines "
                                   "accept: a saved encoder or sentence-transformers folder, a Hub id, "
                                   "smollm2-135m, smollm2-135m:causal, minilm.",
                       epilog="example: llm2embed eval out/my-encoder --tasks stsb,wiki "
                              "--baseline smollm2-135m:causal --baseline minilm --report out/report")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--tasks", default="stsb,wiki", help="comma-separated tasks (default: stsb,wiki)")
    p.add_argument("--baseline", action="append", default=[], metavar="MODEL", help="a model to compare (repeat)")
    p.add_argument("--report", default=None, metavar="DIR", help="write report.md, results.json, report.png here")
    p.add_argument("--instructions", default=None, metavar="JSON",
                   help="JSON file of task -> query instruction ('none' turns instructions off)")
    p.add_argument("--max-length", type=int, default=None, help="longest input in tokens")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--wiki-max-words", type=int, default=None, help="cap on Wikipedia document length in words")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("mntp", help="masked next token prediction with LoRA (official run_mntp.py config keys)",
                       description="Train MNTP from a JSON/YAML config with the official llm2vec run_mntp.py keys "
                                   "plus any transformers TrainingArguments field. Extra --key value pairs override "
                                   "the file. A rerun resumes from the last checkpoint in output_dir.",
                       epilog="example: llm2embed mntp mntp.json --stop_after_n_steps 200 --learning_rate 1e-4\n"
                              "plan first: llm2embed mntp mntp.json --plan --gpu-memory 24GB [--gpus 2]")
    p.add_argument("config", metavar="CONFIG", help="JSON or YAML config file")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
    p.add_argument("--plan", action="store_true",
                   help="do not train: build the model on the meta device and print parameters, memory per GPU, "
                        "whether it fits and tokens per step")
    p.add_argument("--gpu-memory", default=None, metavar="SIZE", help="with --plan: memory of one GPU, e.g. 24GB")
    p.add_argument("--gpus", type=int, default=1,
                   help="with --plan: GPUs (weights and LoRA state sharded over them, FSDP / ZeRO-3)")
    p.set_defaults(func=cmd_mntp, takes_overrides=True)

    for name, func, script, what in (
        ("simcse", cmd_simcse, "run_simcse.py", "unsupervised SimCSE (each sentence is its own positive)"),
        ("supervised", cmd_supervised, "run_supervised.py", "supervised contrastive training on triplet JSONL"),
    ):
        p = sub.add_parser(name, help=f"{what} (official {script} config keys)",
                           description=f"{what[0].upper()}{what[1:]} from a JSON/YAML config with the official "
                                       f"llm2vec {script} keys plus any TrainingArguments field; --key value pairs "
                                       "override the file. Writes a sentence-transformers encoder (and its adapter) "
                                       "to output_dir/encoder; a rerun resumes from the last checkpoint.")
        p.add_argument("config", metavar="CONFIG", help="JSON or YAML config file")
        p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
        p.set_defaults(func=func, takes_overrides=True)

    p = sub.add_parser("pipeline", help="the whole recipe: MNTP -> SimCSE -> (supervised) -> evaluation",
                       description="Run the stages of a pipeline config (default: the embedded SmolLM2 and "
                                   "Wikipedia corpus, sized for a CPU). Finished stages with unchanged settings "
                                   "are skipped on a rerun; a changed setting re-runs that stage and those after.")
    p.add_argument("config", metavar="CONFIG", nargs="?", default=None, help="YAML or JSON pipeline file")
    p.add_argument("--output", default=None, help="folder for the stages, the encoder and the report")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="the stage settings to start from: llm2vec (bidirectional -> MNTP -> SimCSE) or "
                        "prompteol-simcse (PromptEOL template, causal, SimCSE); default: the config file's "
                        "'recipe:' or the default recipe")
    p.add_argument("--print-default-config", action="store_true",
                   help="print the default config (of --recipe) and exit")
    p.add_argument("--print-config", action="store_true",
                   help="print the settings CONFIG runs (its recipe and 'extends:' files resolved) and exit")
    p.add_argument("--fresh", action="store_true", help="delete the output folder first")
    p.add_argument("--no-eval", action="store_true", help="train only")
    p.add_argument("--nproc", type=int, default=1,
                   help="train each stage data-parallel in N processes (torchrun; one per GPU)")
    p.add_argument("--seeds", type=int, default=None, metavar="K",
                   help="run the config with K seeds (OUTPUT/seed-S/, default output runs/default-seeds) and "
                        "write a mean ± std table per task to OUTPUT/seeds.md; finished seeds are skipped")
    p.add_argument("--max-length", type=int, default=None,
                   help="longest input of the saved encoders in tokens (default 512, or the model's context)")
    p.set_defaults(func=cmd_pipeline)

    from .server import add_serve_arguments, serve_from_args

    p = sub.add_parser("serve", help="OpenAI-compatible embeddings server (POST /v1/embeddings)",
                       description="Serve MODEL over an OpenAI-compatible HTTP API on 127.0.0.1 by default; "
                                   "concurrent requests are batched together.")
    add_serve_arguments(p)
    p.set_defaults(func=lambda a: serve_from_args(a) or 0)

    from .rag.cli import add_rag_parser

    add_rag_parser(sub)

    p = sub.add_parser("demo", help="encode a few sentences with the embedded default and print their similarity")
    p.add_argument("model", metavar="MODEL", nargs="?", default="smollm2-135m")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("llm2embed").setLevel(logging.INFO)  # our progress (dev scores, resuming) even without -v
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
