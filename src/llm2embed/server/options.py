"""Settings of ``llm2embed serve``: one dataclass whose fields are also the command-line options."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["API_KEY_ENV", "INPUT_TYPES", "ServeOptions"]

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
    generate: bool = field(default=False, metadata={
        "help": "also serve POST /v1/chat/completions from the same weights (adapter off, causal); needs a "
                "saved encoder with its adapter, or a decoder spec"})
    max_new_tokens: int = field(default=512, metadata={
        "help": "largest max_tokens a chat request may ask for (400 beyond)"})
    log_level: str = field(default="info", metadata={"help": "uvicorn log level (warning: no access log)"})


