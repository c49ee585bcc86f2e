"""An OpenAI-compatible embeddings server with dynamic batching (FastAPI + uvicorn).

Endpoints:

===========================  ========================================================================
``POST /v1/embeddings``      OpenAI's request and response: ``input`` (a string or a list of strings),
                             ``model``, ``encoding_format`` (``float`` or ``base64``: little-endian
                             float32), ``dimensions`` (keep the first *d* components and renormalise,
                             Matryoshka-style), ``usage.prompt_tokens`` / ``total_tokens``. Extension:
                             ``input_type: "query"`` applies the model's stored query instruction
                             (``"document"`` or absent: none).
``GET /v1/models``           the one served model (``/v1/models/{id}`` too)
``GET /health``              status, dimension, verified attention mode, batching statistics (no key)
===========================  ========================================================================

Embeddings are L2-normalised, as OpenAI's are. Concurrent requests are merged into one model call: a lone
request waits ``quiet_ms`` (5 ms) for company; a call keeps collecting while requests keep arriving, and
right after a call it waits for the clients just answered to come back, both at most ``max_wait_ms``
(20 ms); requests that arrive while the model is busy go into the next call together (up to
``max_batch_size`` texts). Inside a call, texts are cut into forward passes with the least padding
(:func:`forward_batches`), and all torch work runs on one thread (:func:`model_thread`), so throughput under
load approaches offline ``Encoder.encode``. Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``: malformed JSON or wrong types → 400, wrong or missing
key (when an API key is set) → 401, unknown model → 404, too many inputs, characters or bytes → 413.

Run it::

    llm2embed serve out/my-encoder --port 8080 --api-key KEY     # or: python -m llm2embed.server ...

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="KEY")
    client.embeddings.create(model="my-encoder", input=["hello", "world"]).data[0].embedding

From Python (tests, notebooks)::

    from llm2embed.server import BackgroundServer, create_app
    with BackgroundServer(create_app(encoder)) as server:        # a free port on 127.0.0.1
        httpx.post(server.url + "/v1/embeddings", json={"model": server.model_name, "input": "hi"})
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hmac
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

try:  # FastAPI resolves endpoint annotations from this module's globals
    from starlette.requests import Request
except ImportError:  # pragma: no cover - the server extra is not installed; create_app says so
    Request = Any

logger = logging.getLogger("llm2embed.server")

__all__ = [
    "BackgroundServer",
    "DynamicBatcher",
    "ServeOptions",
    "add_serve_arguments",
    "create_app",
    "default_model_name",
    "forward_batches",
    "main",
    "model_thread",
    "serve_from_args",
    "serve_main",
]

API_KEY_ENV = "LLM2EMBED_API_KEY"
INPUT_TYPES = {"query": "query", "document": "document", "passage": "document", None: "document"}


@dataclass
class ServeOptions:
    """Settings of ``llm2embed serve``; each field's ``help`` is also its CLI help (``--max-inputs`` ...)."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (default loopback only)"})
    port: int = field(default=8080, metadata={"help": "TCP port (0: any free port)"})
    api_key: str | None = field(default=None, metadata={
        "help": f"require 'Authorization: Bearer KEY' on /v1/* (default: ${API_KEY_ENV} if set, else none)"})
    served_model_name: str | None = field(default=None, metadata={
        "help": "the model id clients send (default: the model folder's name)"})
    query_instruction: str | None = field(default=None, metadata={
        "help": "instruction for input_type=query (default: the one stored in the model)"})
    dtype: str | None = field(default=None, metadata={"help": "load the weights as float32, bfloat16 or float16"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: automatic)"})
    max_inputs: int = field(default=2048, metadata={"help": "most inputs in one request (413 beyond)"})
    max_total_chars: int = field(default=1_000_000, metadata={
        "help": "most characters summed over a request's inputs (413 beyond)"})
    max_body_bytes: int = field(default=8 * 1024 * 1024, metadata={"help": "largest request body (413 beyond)"})
    max_batch_size: int = field(default=256, metadata={
        "help": "most texts merged into one model call (a larger single request runs alone)"})
    max_wait_ms: float = field(default=20.0, metadata={
        "help": "longest a model call waits for more requests (while they keep arriving, or for the "
                "clients the previous call answered)"})
    quiet_ms: float = field(default=5.0, metadata={
        "help": "a model call starts once no request has arrived for this long (a lone request waits this)"})
    encode_batch_size: int = field(default=32, metadata={"help": "most texts in one forward pass"})
    encode_batch_tokens: int = field(default=512, metadata={
        "help": "most padded tokens (texts x longest) in one forward pass; raise it on a GPU"})
    log_level: str = field(default="info", metadata={"help": "uvicorn log level (warning: no access log)"})


# ---------------------------------------------------------------------------------------------- errors
class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None):
    from starlette.responses import Response

    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json", headers=headers)


# ---------------------------------------------------------------------------------------------- batching
def model_thread() -> ThreadPoolExecutor:
    """The one thread that should run all of a server's torch work: loading, the probe and every model call.

    Running torch from a second thread (say, the model loaded on the main thread, then encoding on a worker)
    leaves two OpenMP thread pools competing: on the project's 2-core CPU that costs about 12 % of encoding
    throughput for the rest of the process (1.99 -> 1.73 busy cores, measured).
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm2embed-model")


@dataclass
class _Job:
    items: list[tuple[str, str]]          # (prompt, text)
    future: asyncio.Future


class DynamicBatcher:
    """Merges concurrent requests into model calls run one at a time on a worker thread.

    ``encode_fn(items) -> (embeddings, token_counts)`` gets ``(prompt, text)`` pairs. A call takes every
    waiting request up to ``max_batch_size`` texts (always at least one request); when fewer are waiting,
    it waits for more while they keep coming: until none has arrived for ``quiet_ms`` or ``max_wait_ms`` have
    passed. Requests cancelled while waiting (client gone) are skipped. ``encode_fn`` runs on ``executor``
    (one thread; default: a new :func:`model_thread`).

    >>> batcher = DynamicBatcher(encode_fn, max_batch_size=256, max_wait_ms=10)  # doctest: +SKIP
    >>> emb, tokens = await batcher.submit([("", "hello")])                      # doctest: +SKIP
    """

    def __init__(self, encode_fn, max_batch_size: int = 256, max_wait_ms: float = 20.0,
                 quiet_ms: float | None = 5.0, executor: ThreadPoolExecutor | None = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0 or (quiet_ms is not None and quiet_ms < 0):
            raise ValueError(f"max_wait_ms and quiet_ms must be >= 0, got {max_wait_ms} and {quiet_ms}")
        self.encode_fn = encode_fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.quiet = self.max_wait if quiet_ms is None else float(quiet_ms) / 1000.0
        self._pending: collections.deque[_Job] = collections.deque()
        self._pending_texts = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = executor
        self._owns_executor = executor is None
        self.stats = {"requests": 0, "texts": 0, "batches": 0, "largest_batch": 0, "encode_seconds": 0.0}
        self.recent_batches: collections.deque[int] = collections.deque(maxlen=32)  # texts per model call

    @property
    def pending_texts(self) -> int:
        return self._pending_texts

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        if self._executor is None:
            self._executor = model_thread()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="llm2embed-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(APIError(503, "the server is shutting down", "server_error"))
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, items: list[tuple[str, str]]) -> tuple[np.ndarray, list[int]]:
        """Queue ``(prompt, text)`` pairs; return their embeddings and token counts."""
        if self._task is None:
            raise RuntimeError("DynamicBatcher.start() was not called")
        if self._task.done():
            raise APIError(503, "the encoding worker has stopped", "server_error")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(items, future))
        self._pending_texts += len(items)
        self._wakeup.set()
        return await future

    def _take(self) -> list[_Job]:
        jobs, n = [], 0
        while self._pending and (not jobs or n + len(self._pending[0].items) <= self.max_batch_size):
            job = self._pending.popleft()
            self._pending_texts -= len(job.items)
            if job.future.cancelled():
                continue
            jobs.append(job)
            n += len(job.items)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        answered_at = float("-inf")  # clients answered by a call tend to come back at once: wait for them
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = loop.time() + self.max_wait
            gap = self.max_wait if loop.time() - answered_at < self.max_wait else self.quiet
            while self._pending_texts < self.max_batch_size:
                remaining = min(deadline - loop.time(), gap)
                gap = self.quiet
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            jobs = self._take()
            if not jobs:
                continue
            items = [item for job in jobs for item in job.items]
            start = time.perf_counter()
            try:
                embeddings, tokens = await loop.run_in_executor(self._executor, self.encode_fn, items)
            except asyncio.CancelledError:  # stopping: no request is left waiting forever
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(APIError(503, "the server is shutting down", "server_error"))
                raise
            except Exception as exc:  # answer the requests; keep serving
                logger.exception("encoding a batch of %d texts failed", len(items))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.stats["encode_seconds"] += time.perf_counter() - start
            self.stats["batches"] += 1
            self.stats["requests"] += len(jobs)
            self.stats["texts"] += len(items)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
            self.recent_batches.append(len(items))
            offset = 0
            for job in jobs:
                n = len(job.items)
                if not job.future.done():
                    job.future.set_result((embeddings[offset:offset + n], tokens[offset:offset + n]))
                offset += n
            answered_at = loop.time()


FORWARD_OVERHEAD_TOKENS = 64  # the fixed cost of one forward pass in padded tokens (tuned on a 2-core CPU)


def forward_batches(items: list[tuple[str, str]], lengths: list[int], max_texts: int, max_tokens: int,
                    overhead: int = FORWARD_OVERHEAD_TOKENS) -> list[list[int]]:
    """Split one model call into forward passes (lists of indices into ``items``) with the least padding.

    One prompt per pass; within a prompt the texts are sorted longest first and cut into runs of at most
    ``max_texts`` texts and ``max_tokens`` padded tokens (texts x longest; a longer single text runs alone),
    choosing the cuts that minimise padded tokens + ``overhead`` per pass (dynamic programming over the
    sorted lengths). A merged call mixes requests of all lengths; fixed-size batches would pad many short
    texts to the length of a few long ones.

    >>> forward_batches([("", "t")] * 5, [40, 10, 12, 11, 39], max_texts=32, max_tokens=512, overhead=8)
    [[0, 4], [2, 3, 1]]
    """
    by_prompt: dict[str, list[int]] = {}
    for i in sorted(range(len(items)), key=lambda i: -lengths[i]):
        by_prompt.setdefault(items[i][0], []).append(i)
    batches: list[list[int]] = []
    for order in by_prompt.values():
        sizes = [lengths[i] for i in order]
        n = len(order)
        best = [0.0] + [float("inf")] * n      # best[j]: least cost of the first j texts
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(max(0, j - max_texts), j):  # a pass of texts i..j-1, padded to sizes[i]
                if j - i > 1 and sizes[i] * (j - i) > max_tokens:
                    continue
                cost = best[i] + sizes[i] * (j - i) + overhead
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        runs, j = [], n
        while j > 0:
            runs.append(order[cut[j]:j])
            j = cut[j]
        batches.extend(reversed(runs))
    return batches


# ---------------------------------------------------------------------------------------------- request parsing
def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_inputs(raw: Any, limits: ServeOptions) -> list[str]:
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list):
        if not raw:
            raise APIError(400, "'input' is an empty list; send at least one string", param="input")
        if all(_is_int(x) for x in raw) or all(isinstance(x, list) and all(_is_int(t) for t in x) for x in raw):
            raise APIError(400, "token-id inputs are not supported: send strings (a client that tokenizes for "
                                "OpenAI models, e.g. LangChain's OpenAIEmbeddings, needs "
                                "check_embedding_ctx_length=False)", param="input", code="invalid_type")
        bad = next((i for i, x in enumerate(raw) if not isinstance(x, str)), None)
        if bad is not None:
            raise APIError(400, f"'input' must be a string or a list of strings; item {bad} is "
                                f"{type(raw[bad]).__name__}", param="input", code="invalid_type")
        texts = raw
    elif raw is None:
        raise APIError(400, "missing required parameter 'input'", param="input", code="missing_required_parameter")
    else:
        raise APIError(400, f"'input' must be a string or a list of strings, got {type(raw).__name__}",
                       param="input", code="invalid_type")
    if len(texts) > limits.max_inputs:
        raise APIError(413, f"{len(texts)} inputs in one request; the limit is {limits.max_inputs}",
                       param="input", code="too_many_inputs")
    chars = sum(len(t) for t in texts)
    if chars > limits.max_total_chars:
        raise APIError(413, f"the inputs hold {chars} characters; the limit is {limits.max_total_chars} per request",
                       param="input", code="too_many_characters")
    return texts


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is {declared} bytes; the limit is {limit}", code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body exceeds the limit of {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _encode_vector(vector: np.ndarray, encoding_format: str):
    if encoding_format == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()


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
               aliases: tuple[str, ...] = (), executor: ThreadPoolExecutor | None = None):
    """The FastAPI app serving ``encoder`` (an :class:`llm2embed.Encoder`) under ``model_name``.

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

    from .integrations import query_instruction as stored_query_instruction

    options = options or ServeOptions()
    model_name = model_name or default_model_name(getattr(encoder, "base", None) or "llm2embed")
    accepted = {model_name, *aliases}
    api_key = options.api_key or None
    dimension = encoder.embedding_dimension
    max_length = encoder.max_length
    tokenizer = encoder.tokenizer
    query_prompt = stored_query_instruction(encoder)
    if options.query_instruction is not None:
        from .encoder import format_instruction
        query_prompt = format_instruction(options.query_instruction)
    probed = executor.submit(encoder.probe).result() if executor is not None else encoder.probe()
    attention = "bidirectional" if probed else "causal"
    created = int(time.time())

    def encode_fn(items: list[tuple[str, str]]) -> tuple[np.ndarray, list[int]]:
        ids = tokenizer([prompt + text for prompt, text in items], add_special_tokens=True)["input_ids"]
        lengths = [max(1, min(len(x), max_length)) for x in ids]
        out = np.empty((len(items), dimension), dtype=np.float32)
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
        return _json_response(exc.body(), exc.status, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _json_response(APIError(exc.status_code, str(exc.detail), code=code).body(), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return _json_response(APIError(400, str(exc)).body(), 400)

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
        return _json_response({"status": "ok", "model": model_name, "dimension": dimension,
                               "attention": attention, "max_length": max_length,
                               "pending_texts": batcher.pending_texts, "stats": stats})

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_key(request)
        return _json_response({"object": "list", "data": [model_card()]})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        check_key(request)
        if model_id not in accepted:
            raise APIError(404, f"the model '{model_id}' does not exist; this server serves '{model_name}'",
                           param="model", code="model_not_found")
        return _json_response(model_card())

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        check_key(request)
        raw = await _read_body(request, options.max_body_bytes)
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise APIError(400, f"the request body must be a JSON object, got {type(payload).__name__}")
        model = payload.get("model")
        if not isinstance(model, str):
            raise APIError(400, "missing or non-string parameter 'model'", param="model",
                           code="missing_required_parameter" if model is None else "invalid_type")
        if model not in accepted:
            raise APIError(404, f"the model '{model}' does not exist; this server serves '{model_name}'",
                           param="model", code="model_not_found")
        encoding_format = payload.get("encoding_format") or "float"
        if encoding_format not in ("float", "base64"):
            raise APIError(400, f"encoding_format must be 'float' or 'base64', got {encoding_format!r}",
                           param="encoding_format", code="invalid_value")
        dimensions = payload.get("dimensions")
        if dimensions is not None and (not _is_int(dimensions) or not 1 <= dimensions <= dimension):
            raise APIError(400, f"dimensions must be an integer from 1 to {dimension}, got {dimensions!r}",
                           param="dimensions", code="invalid_value")
        input_type = payload.get("input_type")
        if input_type not in INPUT_TYPES:
            raise APIError(400, f"input_type must be 'query' or 'document', got {input_type!r}",
                           param="input_type", code="invalid_value")
        texts = _parse_inputs(payload.get("input"), options)
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
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, encoding_format)}
                for i, v in enumerate(vectors)]
        used = int(sum(tokens))
        return _json_response({"object": "list", "data": data, "model": model_name,
                               "usage": {"prompt_tokens": used, "total_tokens": used}})

    return app


# ---------------------------------------------------------------------------------------------- running
class BackgroundServer:
    """Run an ASGI app with uvicorn on a thread, bound to ``host`` (default 127.0.0.1) on a free port.

    >>> with BackgroundServer(create_app(encoder, "my-encoder")) as server:   # doctest: +SKIP
    ...     httpx.get(server.url + "/health").json()["status"]
    'ok'
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 startup_timeout: float = 60.0):
        import uvicorn

        self.app, self.host = app, host
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="llm2embed-server", daemon=True)
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def model_name(self) -> str | None:
        return getattr(self.app.state, "model_name", None)

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited during start-up")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server did not start within {self.startup_timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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
    ``max_wait_ms``, ``quiet_ms``, ``encode_batch_size``, ``encode_batch_tokens``, ``log_level``); an
    unknown name is a ``TypeError``. ``api_key=None`` falls back to ``$LLM2EMBED_API_KEY``. The model is
    loaded, probed and run on one thread (:func:`model_thread`).

    >>> serve_main("out/my-encoder", port=8080, api_key="secret")   # doctest: +SKIP
    """
    import uvicorn

    from .encoder import Encoder

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
        encoder = executor.submit(Encoder.from_pretrained, model, device=opts.device, **load_kwargs).result()
        name = opts.served_model_name or default_model_name(model)
        app = create_app(encoder, name, opts, aliases=(os.fspath(model),), executor=executor)
        logger.warning("serving %s as '%s' on http://%s:%d/v1 (%s attention)", model, name, host, port,
                       "bidirectional" if encoder.bidirectional else "causal")
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
        kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
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


if __name__ == "__main__":
    main()
