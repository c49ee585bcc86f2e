"""The FastAPI app: ``/v1/embeddings``, ``/v1/models``, ``/health`` and, with a generator, ``/v1/chat/completions``."""

from __future__ import annotations

import hmac
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

try:  # FastAPI resolves endpoint annotations from this module's globals
    from starlette.requests import Request
except ImportError:  # pragma: no cover - the server extra is not installed; create_app says so
    Request = Any

from .batching import DynamicBatcher, forward_batches
from .options import INPUT_TYPES, ServeOptions
from .schema import APIError, encode_vector, is_int, json_response, parse_inputs, read_json

__all__ = ["create_app", "default_model_name"]


def default_model_name(model: str | os.PathLike) -> str:
    """The id a model is served under: a folder's or file's name without suffix, else the spec itself.

    >>> default_model_name("smollm2-135m"), default_model_name("HuggingFaceTB/SmolLM2-135M")
    ('smollm2-135m', 'HuggingFaceTB/SmolLM2-135M')
    >>> default_model_name("out/my-encoder/")   # an existing folder  # doctest: +SKIP
    'my-encoder'
    """
    spec = os.fspath(model).rstrip("/\\")
    path = Path(spec)
    if path.exists():
        return path.stem if path.is_file() else path.name
    return spec


# ---------------------------------------------------------------------------------------------- the app
def create_app(encoder, model_name: str | None = None, options: ServeOptions | None = None,
               aliases: tuple[str, ...] = (), executor: ThreadPoolExecutor | None = None, generator=None):
    """The FastAPI app serving ``encoder`` (an :class:`llm2embed.Encoder`) under ``model_name``.

    ``generator``: a :class:`~llm2embed.dual.DualModel` whose ``encoder`` is ``encoder`` (the same weights);
    it adds ``POST /v1/chat/completions`` (:mod:`llm2embed.server.chat`), and every embedding call holds
    its lock.

    ``options`` supplies the API key, limits and batching settings (host and port are not used here);
    ``aliases`` are further accepted ``model`` values (e.g. the path given on the command line).
    ``executor``: the :func:`model_thread` the encoder was loaded on, so that all torch work stays on one
    thread (default: a thread of the app's own).

    >>> app = create_app(Encoder.from_pretrained("out/my-encoder"), "my-encoder")   # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8080)                               # doctest: +SKIP
    """
    try:
        from fastapi import FastAPI
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the embeddings server needs `pip install fastapi uvicorn`") from exc
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ..integrations import query_instruction as stored_query_instruction

    options = options or ServeOptions()
    model_name = model_name or default_model_name(getattr(encoder, "base", None) or "llm2embed")
    accepted = {model_name, *aliases}
    api_key = options.api_key or None
    dimension = encoder.embedding_dimension
    max_length = encoder.max_length
    tokenizer = encoder.tokenizer
    query_prompt = stored_query_instruction(encoder)
    if options.query_instruction is not None:
        from ..encoder import format_instruction
        query_prompt = format_instruction(options.query_instruction)
    probed = executor.submit(encoder.probe).result() if executor is not None else encoder.probe()
    attention = "bidirectional" if probed else "causal"
    created = int(time.time())

    lock = generator.lock if generator is not None else nullcontext()

    def encode_fn(items: list[tuple[str, str]]) -> tuple[np.ndarray, list[int]]:
        ids = tokenizer([prompt + text for prompt, text in items], add_special_tokens=True)["input_ids"]
        lengths = [max(1, min(len(x), max_length)) for x in ids]
        out = np.empty((len(items), dimension), dtype=np.float32)
        with lock:
            for group in forward_batches(items, lengths, options.encode_batch_size, options.encode_batch_tokens):
                inputs = [[items[i][0], items[i][1]] if items[i][0] else items[i][1] for i in group]
                out[group] = encoder.encode(inputs, batch_size=len(group), convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False)
        return out, lengths

    batcher = DynamicBatcher(encode_fn, options.max_batch_size, options.max_wait_ms, options.quiet_ms, executor)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="llm2embed embeddings", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.batcher = batcher
    app.state.model_name = model_name

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return json_response(exc.body(), exc.status, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return json_response(APIError(exc.status_code, str(exc.detail), code=code).body(), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return json_response(APIError(400, str(exc)).body(), 400)

    def check_key(request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if not header:
            raise APIError(401, "missing API key: send 'Authorization: Bearer KEY'", code="invalid_api_key")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")

    def model_card() -> dict[str, Any]:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "llm2embed"}

    @app.get("/health")
    async def health():
        stats = dict(batcher.stats)
        stats["mean_batch"] = round(stats["texts"] / stats["batches"], 2) if stats["batches"] else 0.0
        stats["encode_seconds"] = round(stats["encode_seconds"], 3)
        stats["process_cpu_seconds"] = round(time.process_time(), 3)
        stats["recent_batches"] = list(batcher.recent_batches)
        stats.update(getattr(app.state, "chat_stats", {}))
        return json_response({"status": "ok", "model": model_name, "dimension": dimension,
                               "attention": attention, "max_length": max_length,
                               "pending_texts": batcher.pending_texts, "stats": stats})

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_key(request)
        return json_response({"object": "list", "data": [model_card()]})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        check_key(request)
        if model_id not in accepted:
            raise APIError(404, f"the model '{model_id}' does not exist; this server serves '{model_name}'",
                           param="model", code="model_not_found")
        return json_response(model_card())

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        check_key(request)
        payload = await read_json(request, options.max_body_bytes, accepted, model_name)
        encoding_format = payload.get("encoding_format") or "float"
        if encoding_format not in ("float", "base64"):
            raise APIError(400, f"encoding_format must be 'float' or 'base64', got {encoding_format!r}",
                           param="encoding_format", code="invalid_value")
        dimensions = payload.get("dimensions")
        if dimensions is not None and (not is_int(dimensions) or not 1 <= dimensions <= dimension):
            raise APIError(400, f"dimensions must be an integer from 1 to {dimension}, got {dimensions!r}",
                           param="dimensions", code="invalid_value")
        input_type = payload.get("input_type")
        if input_type not in INPUT_TYPES:
            raise APIError(400, f"input_type must be 'query' or 'document', got {input_type!r}",
                           param="input_type", code="invalid_value")
        texts = parse_inputs(payload.get("input"), options)
        prompt = query_prompt if INPUT_TYPES[input_type] == "query" else ""

        try:
            vectors, tokens = await batcher.submit([(prompt, t) for t in texts])
        except APIError:
            raise
        except Exception as exc:  # the model failed on this batch: answer in OpenAI's shape, keep serving
            raise APIError(500, f"encoding failed: {type(exc).__name__}: {exc}", "server_error") from None
        if dimensions is not None and dimensions < dimension:
            vectors = vectors[:, :dimensions]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        data = [{"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
                for i, v in enumerate(vectors)]
        used = int(sum(tokens))
        return json_response({"object": "list", "data": data, "model": model_name,
                               "usage": {"prompt_tokens": used, "total_tokens": used}})

    if generator is not None:
        from .chat import add_chat_route

        add_chat_route(app, generator, options, check_key, accepted, model_name, lambda: batcher.executor)
    return app

