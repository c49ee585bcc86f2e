"""``llm2embed serve``: load the model on the model thread, build the app, run uvicorn; the CLI options."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from dataclasses import fields
from typing import Any

from .app import create_app, default_model_name
from .batching import model_thread
from .options import API_KEY_ENV, ServeOptions

logger = logging.getLogger("llm2embed.server")

__all__ = ["add_serve_arguments", "main", "serve_from_args", "serve_main"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_main(model: str | os.PathLike, host: str = "127.0.0.1", port: int = 8080, api_key: str | None = None,
               **options: Any) -> None:
    """Load ``model`` (any spec ``Encoder.from_pretrained`` accepts) and serve it until interrupted.

    ``options`` are the other :class:`ServeOptions` fields (``served_model_name``, ``query_instruction``,
    ``dtype``, ``device``, ``max_inputs``, ``max_total_chars``, ``max_body_bytes``, ``max_batch_size``,
    ``max_wait_ms``, ``quiet_ms``, ``encode_batch_size``, ``encode_batch_tokens``, ``generate``,
    ``max_new_tokens``, ``log_level``); an unknown name is a ``TypeError``. ``generate=True`` loads a
    :class:`~llm2embed.dual.DualModel` and adds ``/v1/chat/completions`` from the same weights. ``api_key=None`` falls back to ``$LLM2EMBED_API_KEY``. The model is
    loaded, probed and run on one thread (:func:`model_thread`).

    >>> serve_main("out/my-encoder", port=8080, api_key="secret")   # doctest: +SKIP
    """
    import uvicorn

    from ..encoder import Encoder

    unknown = set(options) - {f.name for f in fields(ServeOptions)}
    if unknown:
        raise TypeError(f"unknown serve option(s): {', '.join(sorted(unknown))}")
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    opts = ServeOptions(host=host, port=port, api_key=api_key, **options)
    if not _is_loopback(host) and api_key is None:
        logger.warning("serving on %s without an API key: anyone who can reach this address can use it", host)
    load_kwargs: dict[str, Any] = {}
    if opts.dtype:
        load_kwargs["torch_dtype"] = opts.dtype
    executor = model_thread()  # loading, the probe and every model call run on this one thread
    try:
        generator = None
        if opts.generate:  # one copy of the weights: the encoder's adapter unmerged on the base LLM
            from ..dual import DualModel

            generator = executor.submit(DualModel.from_pretrained, model, device=opts.device,
                                        torch_dtype=opts.dtype).result()
            encoder = generator.encoder
        else:
            encoder = executor.submit(Encoder.from_pretrained, model, device=opts.device, **load_kwargs).result()
        name = opts.served_model_name or default_model_name(model)
        app = create_app(encoder, name, opts, aliases=(os.fspath(model),), executor=executor, generator=generator)
        logger.warning("serving %s as '%s' on http://%s:%d/v1 (embeddings%s)", model, name, host, port,
                       " and chat completions from the same weights" if generator is not None else "")
        uvicorn.run(app, host=host, port=port, log_level=opts.log_level)
    finally:
        executor.shutdown(wait=True)


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``MODEL`` and one ``--option`` per :class:`ServeOptions` field to ``parser``.

    >>> sub = subparsers.add_parser("serve", help="OpenAI-compatible embeddings server")  # doctest: +SKIP
    >>> add_serve_arguments(sub); sub.set_defaults(func=serve_from_args)                  # doctest: +SKIP
    """
    parser.add_argument("model", help="a saved encoder folder, a model spec (smollm2-135m), a .gguf file or Hub id")
    for f in fields(ServeOptions):
        type_name = f.type if isinstance(f.type, str) else f.type.__name__
        if type_name == "bool":
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, action="store_true",
                                default=f.default, help=f.metadata["help"])
            continue
        kind = {"int": int, "float": float}.get(type_name, str)
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=f.default,
                            help=f.metadata["help"] + (f" (default {f.default})" if f.default is not None
                                                       and f.name != "host" else ""))
    return parser


def serve_from_args(args: argparse.Namespace) -> None:
    """Run :func:`serve_main` with a namespace parsed by a parser set up by :func:`add_serve_arguments`."""
    options = {f.name: getattr(args, f.name) for f in fields(ServeOptions)}
    serve_main(args.model, **options)


def main(argv: list[str] | None = None) -> None:
    """``python -m llm2embed.server MODEL [--port 8080] [--api-key KEY] ...``"""
    parser = add_serve_arguments(argparse.ArgumentParser(
        prog="llm2embed serve", description="OpenAI-compatible embeddings server (POST /v1/embeddings)"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve_from_args(parser.parse_args(argv))
