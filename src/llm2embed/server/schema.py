"""Errors in OpenAI's shape and the parsing of request bodies (the limits of :class:`ServeOptions`)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from .options import ServeOptions

__all__ = ["APIError", "encode_vector", "is_int", "json_response", "parse_inputs", "read_body", "read_json"]


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None):
    from starlette.responses import Response

    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json", headers=headers)


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_inputs(raw: Any, limits: ServeOptions) -> list[str]:
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list):
        if not raw:
            raise APIError(400, "'input' is an empty list; send at least one string", param="input")
        if all(is_int(x) for x in raw) or all(isinstance(x, list) and all(is_int(t) for t in x) for x in raw):
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


async def read_body(request, limit: int) -> bytes:
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


def encode_vector(vector: np.ndarray, encoding_format: str):
    if encoding_format == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()



async def read_json(request, limit: int, accepted: set[str], served: str) -> dict[str, Any]:
    """The request body as a JSON object whose ``model`` is one this server serves (else 400/404/413)."""
    raw = await read_body(request, limit)
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
        raise APIError(404, f"the model '{model}' does not exist; this server serves '{served}'",
                       param="model", code="model_not_found")
    return payload
