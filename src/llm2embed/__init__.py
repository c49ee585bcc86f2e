"""llm2embed: turn any decoder-only LLM into a text-embedding model (the LLM2Vec recipe).

>>> from llm2embed import Encoder
>>> enc = Encoder.from_pretrained("smollm2-135m")  # doctest: +SKIP
>>> enc.encode(["A man plays a guitar."]).shape    # doctest: +SKIP
(1, 576)
"""

__version__ = "0.1.0"

from .bidirectional import (
    UnsupportedArchitectureError,
    disable_bidirectional,
    enable_bidirectional,
    probe_bidirectional,
)
from .encoder import Encoder, LLM2Vec, format_instruction
from .sources import resolve_model

__all__ = [
    "Encoder",
    "LLM2Vec",
    "UnsupportedArchitectureError",
    "__version__",
    "disable_bidirectional",
    "enable_bidirectional",
    "format_instruction",
    "probe_bidirectional",
    "resolve_model",
]
