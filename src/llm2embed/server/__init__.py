"""An OpenAI-compatible embeddings server with dynamic batching (FastAPI + uvicorn).

Endpoints:

===========================  ========================================================================
``POST /v1/embeddings``      OpenAI's request and response: ``input`` (a string or a list of strings),
                             ``model``, ``encoding_format`` (``float`` or ``base64``: little-endian
                             float32), ``dimensions`` (keep the first *d* components and renormalise,
                             Matryoshka-style), ``usage.prompt_tokens`` / ``total_tokens``. Extension:
                             ``input_type: "query"`` applies the model's stored query instruction
                             (``"document"`` or absent: none).
``POST /v1/chat/completions`` with ``--generate`` (``create_app(..., generator=dual)``): OpenAI's chat API
                             from the same weights, adapter off and causal (:mod:`llm2embed.server.chat`);
                             ``stream: true`` answers server-sent events
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

from .app import create_app, default_model_name
from .background import BackgroundServer, ServerProcess, free_port
from .batching import FORWARD_OVERHEAD_TOKENS, DynamicBatcher, forward_batches, model_thread
from .main import add_serve_arguments, main, serve_from_args, serve_main
from .options import API_KEY_ENV, INPUT_TYPES, ServeOptions
from .schema import APIError

__all__ = [
    "API_KEY_ENV",
    "APIError",
    "BackgroundServer",
    "DynamicBatcher",
    "FORWARD_OVERHEAD_TOKENS",
    "INPUT_TYPES",
    "ServeOptions",
    "ServerProcess",
    "add_serve_arguments",
    "create_app",
    "default_model_name",
    "forward_batches",
    "free_port",
    "main",
    "model_thread",
    "serve_from_args",
    "serve_main",
]
