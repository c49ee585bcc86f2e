"""The encoder: a decoder LLM made bidirectional, run by sentence-transformers, with LLM2Vec's API.

An :class:`Encoder` wraps a standard ``SentenceTransformer`` (``Transformer`` + ``Pooling`` modules).
Saving writes a plain sentence-transformers folder whose ``config.json`` carries ``"is_causal": false``,
so ``SentenceTransformer(path)`` loads it bidirectional without importing llm2embed.

Example::

    from llm2embed import Encoder

    enc = Encoder.from_pretrained("smollm2-135m")   # or a Hub id, a local folder, a .gguf file
    emb = enc.encode(["A man plays a guitar.", ["Retrieve passages about music:", "guitar lessons"]])
    enc.save("out/my-encoder")                      # Encoder.from_pretrained("out/my-encoder") loads it back

``LLM2Vec`` is the same class with the official llm2vec defaults (``encode`` returns a torch tensor and
shows a progress bar), so ``from llm2embed import LLM2Vec`` replaces ``from llm2vec import LLM2Vec``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .bidirectional import (
    UnsupportedArchitectureError,
    architecture_name,
    enable_bidirectional,
    is_bidirectional_config,
    probe_bidirectional,
    set_causal,
)
from .atomic import atomic_dir
from .pooling import appends_eos, build_pooling, pooling_name
from .sources import resolve_model

logger = logging.getLogger(__name__)

__all__ = ["Encoder", "LLM2Vec", "format_instruction"]

METADATA_FILE = "llm2embed.json"
TEXT_ONLY_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
ADAPTER_DIR = "adapter"
# the longest input of a loaded or saved encoder unless told otherwise (the official llm2vec's default)
DEFAULT_MAX_LENGTH = 512

# keyword arguments that go to ``from_pretrained`` of the transformers model
_LOADING_KWARGS = {
    "device_map",
    "torch_dtype",
    "dtype",
    "attn_implementation",
    "revision",
    "token",
    "cache_dir",
    "local_files_only",
    "low_cpu_mem_usage",
    "quantization_config",
    "max_memory",
    "offload_folder",
}
# official llm2vec keyword arguments that are accepted and have no effect on encoding
_LLM2VEC_TRAINING_KWARGS = {"doc_max_length"}


def format_instruction(instruction: str) -> str:
    """The prompt text an instruction becomes: stripped, then ended by a newline.

    The newline is its own token in byte-level BPE and SentencePiece vocabularies, so the prompt tokenizes
    the same alone and in front of the text, and exactly the instruction tokens are left out of pooling.

    >>> format_instruction("Retrieve passages about music: ")
    'Retrieve passages about music:\\n'
    """
    stripped = instruction.strip()
    return f"{stripped}\n" if stripped else ""


def _split_inputs(sentences: Sequence) -> list[tuple[str, str]]:
    """Validate encode() inputs: strings or ``[instruction, text]`` pairs -> ``(instruction, text)``."""
    items = []
    for i, item in enumerate(sentences):
        if isinstance(item, str):
            items.append(("", item))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            items.append((item[0], item[1]))
        else:
            raise TypeError(
                f"input at index {i} is {type(item).__name__} ({item!r:.60}); expected a string or an "
                "[instruction, text] pair of strings"
            )
    return items


def _ensure_eos_appended(tokenizer) -> None:
    """Make the tokenizer append EOS to every input (for ``eos_token`` pooling) if it does not already."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("pooling_mode 'eos_token' needs a tokenizer with an EOS token; this one has none")
    ids = tokenizer("a")["input_ids"]
    if ids and ids[-1] == eos:
        return
    adds_bos = bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
    if not hasattr(tokenizer, "update_post_processor"):
        raise ValueError(f"pooling_mode 'eos_token': cannot make {type(tokenizer).__name__} append EOS")
    tokenizer.add_bos_token = adds_bos
    tokenizer.add_eos_token = True
    if tokenizer("a")["input_ids"][-1] != eos:
        raise ValueError(f"pooling_mode 'eos_token': {type(tokenizer).__name__} did not start appending EOS")


def _split_hf_kwargs(hf_kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loading kwargs for from_pretrained vs config attributes to set after loading (e.g. attention_dropout)."""
    loading, config_overrides = {}, {}
    for key, value in hf_kwargs.items():
        if key in _LOADING_KWARGS:
            loading[key] = value
        elif key in _LLM2VEC_TRAINING_KWARGS:
            continue
        else:
            config_overrides[key] = value
    if "torch_dtype" in loading:
        loading["dtype"] = loading.pop("torch_dtype")
    if isinstance(loading.get("dtype"), str) and loading["dtype"] != "auto":
        loading["dtype"] = getattr(torch, loading["dtype"])
    return loading, config_overrides


def _apply_config_overrides(model, overrides: dict[str, Any]) -> None:
    config = model.config
    for key, value in overrides.items():
        targets = [c for c in (config, config.get_text_config()) if hasattr(c, key)]
        if not targets:
            raise TypeError(
                f"unknown keyword argument {key!r}: it is neither a loading option "
                f"({', '.join(sorted(_LOADING_KWARGS))}) nor an attribute of {type(config).__name__}"
            )
        for target in targets:
            setattr(target, key, value)
        # layers copy some config values at construction (e.g. attention modules' ``attention_dropout``)
        for module in model.modules():
            current = getattr(module, key, None)
            if isinstance(current, (int, float)) and not isinstance(current, bool) and not callable(current):
                setattr(module, key, value)


class Encoder:
    """A text encoder built from a decoder LLM: bidirectional attention, pooling, instructions.

    Build one with :meth:`from_pretrained`; ``st_model`` is the underlying ``SentenceTransformer``.
    """

    show_progress_bar_default: bool | None = None
    convert_to_numpy_default: bool = True

    def __init__(self, st_model, pooling_mode: str = "mean", skip_instruction: bool = True, base: str | None = None):
        self.st_model = st_model
        self.pooling_mode = pooling_mode
        self.skip_instruction = skip_instruction
        self.base = base
        self.prompt_template: str | None = None  # e.g. "prompteol" (see llm2embed.prompts)
        self._warned_truncation = False

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        base_model_name_or_path: str | os.PathLike,
        peft_model_name_or_path: str | os.PathLike | None = None,
        merge_peft: bool = False,
        enable_bidirectional: bool | None = None,
        pooling_mode: str | None = None,
        max_length: int | None = None,
        skip_instruction: bool | None = None,
        *,
        extra_model_name_or_path: str | os.PathLike | None = None,
        padding_side: str | None = None,
        prompt_template: str | None = None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        device: str | None = None,
        **hf_kwargs,
    ) -> Encoder:
        """Load a base model (and optional LoRA adapters) as a bidirectional encoder.

        Args:
            base_model_name_or_path: a built-in name (``smollm2-135m``), a ``.gguf`` file, a local folder
                (transformers or a saved encoder) or a Hub id.
            peft_model_name_or_path: a LoRA adapter folder (e.g. MNTP output) applied on top of the base.
            merge_peft: merge the adapter into the weights now (faster inference, same outputs).
            enable_bidirectional: bidirectional attention (verified by the live probe); ``False`` keeps causal.
                Default: as saved for a saved encoder, as the prompt template needs, else ``True``.
            pooling_mode: ``mean`` (default), ``weighted_mean``, ``eos_token``, ``last_token``, ``bos_token``
                or a sentence-transformers mode; several joined with ``+`` are concatenated
                (``last_token+mean``). A saved encoder keeps its own unless given.
            max_length: longest input in tokens (default 512); longer texts are truncated with a warning.
            skip_instruction: leave instruction tokens out of pooling (default ``True``).
            extra_model_name_or_path: a second adapter applied after ``peft_model_name_or_path`` is merged
                (LLM2Vec's MNTP -> SimCSE/supervised stacking).
            padding_side: ``right`` (default: right for every architecture, which also keeps absolute
                position embeddings such as GPT-2's right) or ``left``.
            prompt_template: wrap every text in a template (``"prompteol"``, see :mod:`llm2embed.prompts`);
                its pooling, attention and padding side become the defaults. Saved with the encoder.
            trust_remote_code: allow custom model code from the Hub (off unless asked for).
            allow_pickle: allow ``.bin`` (pickle) weights; by default only safetensors (or GGUF) load.
            device: ``cpu``, ``cuda``, ... (default: sentence-transformers' choice).
            **hf_kwargs: ``device_map``, ``torch_dtype``/``dtype``, ``attn_implementation`` and other
                ``from_pretrained`` options; any other key (e.g. ``attention_dropout``) is set on the config.

        >>> enc = Encoder.from_pretrained("smollm2-135m", pooling_mode="mean")  # doctest: +SKIP
        """
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Transformer

        source = resolve_model(base_model_name_or_path)
        loading, overrides = _split_hf_kwargs(hf_kwargs)
        if trust_remote_code:
            loading["trust_remote_code"] = True
        if not allow_pickle:
            loading["use_safetensors"] = True
        saved = Path(source, "modules.json").is_file()
        metadata = _read_metadata(source) if saved else {}
        template_defaults: dict[str, Any] = {}
        if prompt_template is not None:
            from .prompts import TEMPLATE_SETTINGS

            template_defaults = dict(TEMPLATE_SETTINGS.get(prompt_template, {}))
            pooling_mode = pooling_mode or template_defaults.get("pooling_mode")
            padding_side = padding_side or template_defaults.get("padding_side")
        if enable_bidirectional is None:
            enable_bidirectional = bool(template_defaults.get("bidirectional", metadata.get("bidirectional", True)))

        if saved:
            st_model = SentenceTransformer(
                source, device=device, trust_remote_code=trust_remote_code, model_kwargs=loading,
                config_kwargs=dict(overrides),
            )
            if pooling_mode is None:
                pooling_mode = metadata.get("pooling_mode") or _saved_pooling_name(st_model)
            if skip_instruction is None:
                skip_instruction = metadata.get("skip_instruction", True)
        else:
            pooling_mode = pooling_mode or "mean"
            skip_instruction = True if skip_instruction is None else skip_instruction
            remote = {"trust_remote_code": True} if trust_remote_code else {}
            transformer = Transformer(
                source,
                model_kwargs=loading,
                processor_kwargs=dict(remote),
                config_kwargs={**remote, **overrides},  # modules read e.g. attention_dropout at construction
                max_seq_length=max_length or DEFAULT_MAX_LENGTH,
                # plain text in, token embeddings out: without this, sentence-transformers wraps text in the
                # chat template of instruct models, which changes every embedding
                modality_config=TEXT_ONLY_MODALITY,
                module_output_name="token_embeddings",
            )
            pooling = build_pooling(transformer.get_embedding_dimension(), pooling_mode, skip_instruction)
            st_model = SentenceTransformer(modules=[transformer, pooling], device=device)

        encoder = cls(st_model, pooling_mode=pooling_mode, skip_instruction=skip_instruction,
                      base=metadata.get("base", os.fspath(base_model_name_or_path)))
        encoder.prompt_template = prompt_template or metadata.get("prompt_template")
        if prompt_template is not None:
            from .prompts import apply_prompt_template

            apply_prompt_template(st_model[0], prompt_template)
        encoder._configure(
            saved=saved,
            pooling_mode=pooling_mode,
            skip_instruction=skip_instruction,
            max_length=max_length,
            padding_side=padding_side,
            overrides=overrides,
        )
        for adapter, merge in ((peft_model_name_or_path, merge_peft or extra_model_name_or_path is not None),
                               (extra_model_name_or_path, merge_peft)):
            if adapter is not None:
                encoder.load_adapter(adapter, merge=merge, allow_pickle=allow_pickle)
        encoder.set_bidirectional(enable_bidirectional)
        return encoder

    def _configure(self, saved, pooling_mode, skip_instruction, max_length, padding_side, overrides) -> None:
        transformer, pooling = self.st_model[0], self._pooling_module()
        tokenizer = self.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if padding_side is not None:
            if padding_side not in ("left", "right"):
                raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
            tokenizer.padding_side = padding_side
        elif not saved:
            tokenizer.padding_side = "right"
        if max_length is not None:
            self.set_max_length(max_length)
        else:
            limit = self.position_limit()
            if limit is not None and self.max_length > limit:
                transformer.max_seq_length = limit
        if pooling is not None:
            index = next(i for i, m in enumerate(self.st_model) if m is pooling)
            # a fresh module: the output size changes when a concatenated mode (``last_token+mean``) comes or goes
            self.st_model[index] = build_pooling(pooling.embedding_dimension, pooling_mode, skip_instruction)
        if appends_eos(pooling_mode):
            _ensure_eos_appended(tokenizer)
        _apply_config_overrides(self.model, overrides)

    def load_adapter(self, path: str | os.PathLike, merge: bool = False, allow_pickle: bool = False) -> None:
        """Apply a LoRA adapter folder to the transformer (merged into the weights with ``merge``)."""
        from peft import PeftModel

        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no LoRA adapter at {path} (adapter_config.json is missing)")
        if not (path / "adapter_model.safetensors").is_file() and not allow_pickle:
            raise ValueError(f"{path} has no adapter_model.safetensors; pass allow_pickle=True to load pickle weights")
        transformer = self.st_model[0]
        base = transformer.model
        if hasattr(base, "merge_and_unload"):  # an adapter is already applied: fold it in first
            base = base.merge_and_unload()
        peft_model = PeftModel.from_pretrained(base, str(path), is_trainable=False)
        transformer.model = peft_model.merge_and_unload() if merge else peft_model

    # ------------------------------------------------------------------ properties
    @property
    def transformer(self):
        """The sentence-transformers ``Transformer`` module."""
        return self.st_model[0]

    @property
    def model(self):
        """The transformers model doing the work (a ``PeftModel`` while an unmerged adapter is applied)."""
        return self.st_model[0].model

    @property
    def tokenizer(self):
        return self.st_model[0].tokenizer

    @property
    def max_length(self) -> int:
        return int(self.st_model[0].max_seq_length)

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.st_model[0].max_seq_length = int(value)

    def position_limit(self) -> int | None:
        """The model's context length (``max_position_embeddings``), or None if it has none."""
        limit = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        return limit if isinstance(limit, int) and limit > 0 else None

    def set_max_length(self, value: int | None = None) -> int:
        """Set the longest input in tokens; ``None`` sets the default, :data:`DEFAULT_MAX_LENGTH` (512, as the
        official llm2vec) or the model's context if smaller. Returns the length now in force.

        Training sets a short length for speed; the saved encoder must not keep it, so training stages call
        this before saving.

        >>> enc.set_max_length()       # doctest: +SKIP
        512
        """
        limit = self.position_limit()
        length = DEFAULT_MAX_LENGTH if value is None else int(value)
        if length < 1:
            raise ValueError(f"max_length must be >= 1, got {value!r}")
        if limit is not None and length > limit:
            if value is not None:
                warnings.warn(f"max_length={value} exceeds the model's {limit} positions; using {limit}",
                              stacklevel=2)
            length = limit
        self.st_model[0].max_seq_length = length
        return length

    @property
    def embedding_dimension(self) -> int:
        return int(self.st_model.get_embedding_dimension())

    @property
    def bidirectional(self) -> bool:
        """Whether the config asks for bidirectional attention (see :meth:`probe` for the live check)."""
        from .bidirectional import unwrap_model

        return is_bidirectional_config(unwrap_model(self.model).config)

    @property
    def device(self) -> torch.device:
        return self.st_model.device

    def _pooling_module(self):
        from sentence_transformers.sentence_transformer.modules import Pooling

        return next((m for m in self.st_model if isinstance(m, Pooling)), None)

    def set_bidirectional(self, enabled: bool = True) -> None:
        """Switch attention mode; enabling runs the live probe and raises if the architecture ignores it."""
        if enabled:
            enable_bidirectional(self.model)
        else:
            set_causal(self.model, True)

    def probe(self) -> bool:
        """Live check that attention is bidirectional (see :func:`llm2embed.probe_bidirectional`)."""
        return probe_bidirectional(self.model)

    def info(self) -> dict[str, Any]:
        """Architecture, size, verified attention mode, pooling and dimension, as a dict."""
        from .bidirectional import unwrap_model

        model = unwrap_model(self.model)
        return {
            "architecture": architecture_name(model),
            "model_type": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "attention": "bidirectional" if self.probe() else "causal",
            "attention_config": "bidirectional" if self.bidirectional else "causal",
            "pooling_mode": self.pooling_mode,
            "prompt_template": self.prompt_template,
            "skip_instruction": self.skip_instruction,
            "max_length": self.max_length,
            "dimension": self.embedding_dimension,
            "padding_side": self.tokenizer.padding_side,
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
        }

    # ------------------------------------------------------------------ encoding
    def _safe_text(self, text: str) -> str:
        """A text that yields at least one token: an empty or whitespace-only text becomes the EOS token."""
        if text.strip():
            return text
        tokenizer = self.tokenizer
        if tokenizer(text, add_special_tokens=False)["input_ids"]:
            return text
        return tokenizer.eos_token or tokenizer.pad_token or tokenizer.unk_token or " "

    def _length_sorted_batches(self, keys: list[tuple[str, str]], batch_size: int):
        """Batches of ``(prompt, [key indices])``: one prompt per batch, longest inputs first by *token* count.

        Sorting by tokens rather than characters (sentence-transformers' order) cuts padding by about a third
        on STS-B. Also warns once when inputs exceed ``max_length`` (they are truncated).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not keys:
            return
        lengths = [len(ids) for ids in self.tokenizer([p + t for p, t in keys], add_special_tokens=True)["input_ids"]]
        too_long = sum(n > self.max_length for n in lengths)
        if too_long and not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(f"{too_long} input(s) are longer than max_length={self.max_length} tokens and were "
                          "truncated", stacklevel=3)
        groups: dict[str, list[int]] = {}
        for k in sorted(range(len(keys)), key=lambda k: -lengths[k]):
            groups.setdefault(keys[k][0], []).append(k)
        for prompt, group in groups.items():
            for start in range(0, len(group), batch_size):
                yield prompt, group[start:start + batch_size]

    def encode(
        self,
        sentences: str | Sequence[str | Sequence[str]],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool | None = None,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        device: str | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed strings and ``[instruction, text]`` pairs; rows come back in input order.

        Instruction tokens are attended to but left out of pooling (unless ``skip_instruction=False``).
        A single string gives a 1-D result; an empty list gives a ``(0, dimension)`` result.

        >>> enc.encode(["hello", ["Retrieve passages about music:", "guitar lessons"]]).shape  # doctest: +SKIP
        (2, 576)
        """
        if show_progress_bar is None:
            show_progress_bar = self.show_progress_bar_default
        if convert_to_numpy is None:
            convert_to_numpy = self.convert_to_numpy_default
        single = isinstance(sentences, str)
        if single:
            sentences = [sentences]
        elif sentences is None or not isinstance(sentences, Sequence):
            raise TypeError(f"sentences must be a string or a list, got {type(sentences).__name__}")
        items = _split_inputs(sentences)
        # identical inputs are embedded once (STS-style data repeats many sentences)
        unique: dict[tuple[str, str], int] = {}
        rows = [unique.setdefault((format_instruction(ins), self._safe_text(text)), len(unique)) for ins, text in items]
        keys = list(unique)
        embedded = torch.zeros(len(keys), self.embedding_dimension, dtype=torch.float32)
        with tqdm(total=len(keys), desc="Encoding", unit="text", disable=not show_progress_bar) as bar:
            for prompt, batch in self._length_sorted_batches(keys, batch_size):
                emb = self.st_model.encode(
                    [keys[k][1] for k in batch],
                    prompt=prompt or None,
                    batch_size=len(batch),
                    show_progress_bar=False,
                    convert_to_tensor=True,
                    normalize_embeddings=normalize_embeddings,
                    device=device,
                )
                embedded[batch] = emb.detach().float().cpu()
                bar.update(len(batch))
        out = embedded[rows] if rows else embedded
        bad = (~torch.isfinite(out)).any(dim=1).nonzero().flatten().tolist()
        if bad:
            raise FloatingPointError(
                f"non-finite embeddings for inputs at indices {bad[:10]}; the model overflowed in "
                f"{self.info()['dtype']}: load it in float32 (torch_dtype='float32')"
            )
        if single:
            out = out[0]
        if convert_to_tensor or not convert_to_numpy:
            return out
        return out.numpy()

    def similarity(self, a, b) -> torch.Tensor:
        """Cosine similarity matrix between two sets of embeddings."""
        a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
        a = torch.nn.functional.normalize(a.reshape(-1, a.shape[-1]), dim=-1)
        b = torch.nn.functional.normalize(b.reshape(-1, b.shape[-1]), dim=-1)
        return a @ b.T

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike, merge_before_save: bool = False) -> Path:
        """Write a self-contained sentence-transformers folder (merged weights, ``"is_causal": false``).

        With an unmerged LoRA adapter applied, ``merge_before_save=True`` merges it into this encoder in
        place; ``False`` merges a copy for the folder and also keeps the adapter in ``path/adapter``.
        The folder is written to a temporary sibling and renamed into place.
        """
        target = Path(path)
        with atomic_dir(target) as tmp:
            transformer = self.st_model[0]
            model = transformer.model
            is_peft = hasattr(model, "merge_and_unload")
            if is_peft and not merge_before_save:
                model.save_pretrained(str(tmp / ADAPTER_DIR))
                _point_adapter_at(tmp / ADAPTER_DIR, self.base)
                transformer.model = copy.deepcopy(model).merge_and_unload()
            elif is_peft:
                transformer.model = model.merge_and_unload()
            try:
                self.st_model.save(str(tmp), create_model_card=False)
            finally:
                if is_peft and not merge_before_save:
                    transformer.model = model
            _write_json(tmp / METADATA_FILE, self._metadata())
        return target

    def _metadata(self) -> dict[str, Any]:
        from . import __version__

        return {
            "format": "llm2embed",
            "version": __version__,
            "base": self.base,
            "pooling_mode": self.pooling_mode,
            "skip_instruction": self.skip_instruction,
            "bidirectional": self.bidirectional,
            "max_length": self.max_length,
            "prompt_template": self.prompt_template,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base={self.base!r}, pooling_mode={self.pooling_mode!r}, "
            f"bidirectional={self.bidirectional}, dimension={self.embedding_dimension})"
        )


def _point_adapter_at(folder: Path, base: str | None) -> None:
    """Record the user's base spec (not an internal cache path) as the adapter's base model."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base
    _write_json(path, config)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _read_metadata(folder: str) -> dict[str, Any]:
    path = Path(folder, METADATA_FILE)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def _saved_pooling_name(st_model) -> str:
    pooling = next((m for m in st_model if type(m).__name__ == "Pooling"), None)
    return pooling_name(getattr(pooling, "pooling_mode", "mean"))


class LLM2Vec(Encoder):
    """Drop-in for the official ``llm2vec.LLM2Vec``: same ``from_pretrained`` and ``encode`` signatures and
    defaults (``encode`` returns a torch tensor and shows a progress bar).

    >>> from llm2embed import LLM2Vec
    >>> l2v = LLM2Vec.from_pretrained("smollm2-135m", pooling_mode="mean", max_length=512)  # doctest: +SKIP
    >>> l2v.encode([["Given a query, retrieve passages:", "guitar"], "A man plays guitar."]).shape  # doctest: +SKIP
    torch.Size([2, 576])
    """

    show_progress_bar_default = True
    convert_to_numpy_default = False

    def encode(self, sentences, batch_size: int = 32, show_progress_bar: bool = True, convert_to_numpy: bool = False,
               convert_to_tensor: bool = False, device: str | None = None, normalize_embeddings: bool = False):
        return super().encode(sentences, batch_size=batch_size, show_progress_bar=show_progress_bar,
                              convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor,
                              normalize_embeddings=normalize_embeddings, device=device)


__all__ += ["UnsupportedArchitectureError"]
