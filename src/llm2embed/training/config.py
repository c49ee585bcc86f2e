"""Training configs: the official llm2vec JSON/YAML keys -> dataclasses, with aliases and clear errors.

A config file is one flat mapping, as the official ``experiments/run_mntp.py`` / ``run_simcse.py`` /
``run_supervised.py`` read it: the script's own keys plus every ``transformers.TrainingArguments`` field.
Command-line overrides (``--key value``) are applied on top.

* Old names map to new ones with a note (``evaluation_strategy`` -> ``eval_strategy``).
* ``overwrite_output_dir`` (gone from transformers 5) is accepted and ignored with a warning: a rerun resumes
  from the last checkpoint unless ``--fresh`` is given.
* An unknown key is an error that names it and suggests the nearest valid key.
* ``attn_implementation: flash_attention_2`` falls back to SDPA with a warning where flash-attn or CUDA is
  missing; ``torch_dtype: bfloat16`` works on CPU.

>>> sections = parse_config({"model_name_or_path": "smollm2-135m", "evaluation_strategy": "steps"},
...                         [ModelArguments, DataArguments, MNTPArguments])  # doctest: +SKIP
>>> sections.training.eval_strategy                                          # doctest: +SKIP
'steps'
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "ConfigError",
    "DataArguments",
    "MNTPArguments",
    "ModelArguments",
    "ParsedConfig",
    "check_value",
    "check_values",
    "choose_attn_implementation",
    "load_config_file",
    "parse_config",
    "parse_overrides",
]


class ConfigError(ValueError):
    """A config key or value is invalid; the message names it."""


@dataclass
class ModelArguments:
    """Which model to train (the official ``ModelArguments``)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "built-in name, .gguf, folder or Hub id"})
    peft_model_name_or_path: str | None = field(default=None, metadata={"help": "LoRA adapter merged before training"})
    model_type: str | None = field(default=None, metadata={"help": "accepted for compatibility; read from config"})
    config_overrides: str | None = field(default=None, metadata={"help": "accepted for compatibility; ignored"})
    config_name: str | None = field(default=None, metadata={"help": "accepted for compatibility; ignored"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer, if not the model's own"})
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face download cache"})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "accepted for compatibility"})
    model_revision: str = field(default="main", metadata={"help": "Hub revision"})
    token: str | None = field(default=None, metadata={"help": "Hub token"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code from the Hub"})
    torch_dtype: str | None = field(default=None, metadata={"help": "auto, float32, bfloat16 or float16"})
    attn_implementation: str | None = field(default="sdpa", metadata={"help": "sdpa, eager or flash_attention_2"})
    low_cpu_mem_usage: bool = field(default=False, metadata={"help": "accepted for compatibility"})


@dataclass
class DataArguments:
    """Which text to train on (the official ``DataTrainingArguments``)."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset name, or 'wiki' (embedded)"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset config"})
    train_file: str | None = field(default=None, metadata={"help": ".txt/.jsonl/.csv/.parquet file, or 'wiki'"})
    validation_file: str | None = field(default=None, metadata={"help": "validation file (same formats)"})
    text_column: str = field(default="text", metadata={"help": "text column of .jsonl/.csv/.parquet files"})
    overwrite_cache: bool = field(default=False, metadata={"help": "re-tokenize even if cached"})
    validation_split_percentage: int = field(default=5, metadata={"help": "% of train held out without a validation set"})
    max_seq_length: int | None = field(default=None, metadata={"help": "tokens per training block (default 512)"})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "processes for tokenization"})
    mlm_probability: float = field(default=0.15, metadata={"help": "fraction of tokens masked"})
    line_by_line: bool = field(default=False, metadata={"help": "one example per line instead of packed blocks"})
    pad_to_max_length: bool = field(default=False, metadata={"help": "accepted for compatibility"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap on training blocks"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "cap on validation blocks"})
    streaming: bool = field(default=False, metadata={"help": "accepted for compatibility; data is read in full"})


@dataclass
class MNTPArguments:
    """The MNTP objective and LoRA (the official ``CustomArguments``)."""

    mask_token_type: str = field(default="blank", metadata={"help": "blank ('_'), eos, mask (new token) or pad"})
    data_collator_type: str = field(default="default", metadata={"help": "default (80/10/10) or all_mask"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2 * lora_r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    stop_after_n_steps: int = field(default=10000, metadata={"help": "stop after this many optimizer steps"})
    bidirectional: bool = field(default=True, metadata={"help": "bidirectional attention while training"})
    merge: bool = field(default=False, metadata={"help": "also write a merged full model to output_dir/merged"})


# old key -> new key (None: accepted and ignored); each with the note shown to the user
ALIASES: dict[str, tuple[str | None, str]] = {
    "evaluation_strategy": ("eval_strategy", "renamed to eval_strategy in transformers"),
    "overwrite_output_dir": (None, "removed from transformers 5; ignored: a rerun resumes from the last "
                                   "checkpoint unless --fresh is given"),
    "use_auth_token": ("token", "renamed to token"),
    "no_cuda": ("use_cpu", "renamed to use_cpu in transformers"),
    "logging_dir": (None, "removed from transformers 5; ignored"),
    "per_gpu_train_batch_size": ("per_device_train_batch_size", "renamed to per_device_train_batch_size"),
    "per_gpu_eval_batch_size": ("per_device_eval_batch_size", "renamed to per_device_eval_batch_size"),
    "dtype": ("torch_dtype", "same as torch_dtype"),
    "group_by_length": ("train_sampling_strategy", "transformers 5 spells it train_sampling_strategy: group_by_length"),
}
# aliases whose value changes too: old key -> {old value: new value}
ALIAS_VALUES: dict[str, dict[Any, Any]] = {"group_by_length": {True: "group_by_length", False: "random"}}


@dataclass
class ParsedConfig:
    """The sections of a parsed config, by dataclass name, plus the ``TrainingArguments``."""

    sections: dict[str, Any]
    training: Any  # transformers.TrainingArguments
    notes: list[str]

    def __getattr__(self, name: str):
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON or YAML config file into a dict (error names the file and the problem)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"{path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def _strip_optional(tp):
    """``int | None`` -> ``int``; other types unchanged."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


# value ranges checked for every config, by key: counts >= 1, rates in [0, 1), probabilities in (0, 1),
# positive reals. max_steps is left out on purpose: transformers uses -1 for "not set".
COUNT_KEYS = {"lora_alpha", "stop_after_n_steps", "max_seq_length", "encoder_max_length",
              "mini_batch_size", "per_device_train_batch_size", "per_device_eval_batch_size",
              "gradient_accumulation_steps", "max_train_samples", "max_eval_samples", "eval_every_n_steps",
              "preprocessing_num_workers", "logging_steps"}
RATE_KEYS = {"lora_dropout", "simcse_dropout", "warmup_ratio", "weight_decay"}
PROBABILITY_KEYS = {"mlm_probability"}
POSITIVE_KEYS = {"learning_rate", "loss_scale", "num_train_epochs", "max_grad_norm"}
NON_NEGATIVE_KEYS = {"lora_r"}  # 0: full fine-tuning (contrastive stages)


def _type_name(tp) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
            list: "a list"}.get(tp, getattr(tp, "__name__", str(tp)))


def check_value(key: str, value: Any, tp, where: str = "config") -> Any:
    """``value`` checked against the field type ``tp`` and the key's range; returns it (numbers written as
    strings, such as YAML's ``1e-3``, become numbers). Raises :class:`ConfigError` naming key, value, type.

    >>> check_value("learning_rate", "1e-3", float)
    0.001
    >>> check_value("lora_r", "abc", int)
    Traceback (most recent call last):
    ...
    llm2embed.training.config.ConfigError: config: key 'lora_r' = 'abc': expected an integer
    """
    if value is None:
        return value

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: key {key!r} = {value!r}: expected {expected}")

    if tp is bool:
        if not isinstance(value, bool):
            raise fail(_type_name(bool))
    elif tp in (int, float):
        if isinstance(value, str):
            try:
                value = tp(value) if tp is float else int(value)
            except ValueError:
                raise fail(_type_name(tp)) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(_type_name(tp))
        if tp is int and isinstance(value, float):
            if not value.is_integer():
                raise fail(_type_name(int))
            value = int(value)
    elif tp in (str, dict, list) and not isinstance(value, tp):
        raise fail(_type_name(tp))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if key in COUNT_KEYS and value < 1:
            raise fail("a count >= 1")
        if key in RATE_KEYS and not 0 <= value < 1:
            raise fail("a rate in [0, 1)")
        if key in PROBABILITY_KEYS and not 0 < value < 1:
            raise fail("a probability in (0, 1)")
        if key in POSITIVE_KEYS and value <= 0:
            raise fail("a number > 0")
        if key in NON_NEGATIVE_KEYS and value < 0:
            raise fail("a number >= 0")
    return value


def check_values(raw: dict[str, Any], types_: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """:func:`check_value` for every key of ``raw`` with a known plain type (bool, int, float, str, dict, list)."""
    out = dict(raw)
    for key, value in raw.items():
        tp = types_.get(key)
        if tp in (bool, int, float, str, dict, list):
            out[key] = check_value(key, value, tp, where)
    return out


def _field_types(classes) -> dict[str, Any]:
    out = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out[f.name] = _strip_optional(hints.get(f.name, str))
    return out


def _coerce(key: str, raw: str, tp) -> Any:
    """A command-line string -> the field's type."""
    if raw.lower() in ("none", "null"):
        return None
    if tp is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--{key} expects true or false, got {raw!r}")
    if tp in (int, float):
        try:
            return tp(raw)
        except ValueError:
            raise ConfigError(f"--{key} expects {tp.__name__}, got {raw!r}") from None
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            pass
    return raw


def parse_overrides(args: list[str], classes) -> dict[str, Any]:
    """``["--lora_r", "8", "--bf16"]`` -> ``{"lora_r": 8, "bf16": True}`` (types from the dataclasses)."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    types_ = _field_types([*classes, SentenceTransformerTrainingArguments])
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--"):
            raise ConfigError(f"expected --key value, got {token!r}")
        key, _, inline = token[2:].partition("=")
        key = key.replace("-", "_")
        if inline:
            value, i = inline, i + 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value, i = args[i + 1], i + 2
        else:
            value, i = "true", i + 1  # a bare flag
        out[key] = _coerce(key, value, types_.get(ALIASES.get(key, (key,))[0] or key, str))
    return out


def suggest_key(key: str, valid: set[str]) -> str | None:
    """The valid key a typo most likely meant: a shared prefix first (``lora_rank`` -> ``lora_r``), else difflib."""
    prefixed = [k for k in valid if min(len(k), len(key)) >= 4 and (key.startswith(k) or k.startswith(key))]
    if prefixed:
        return max(prefixed, key=len)
    near = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return near[0] if near else None


def _check_keys(raw: dict[str, Any], valid: set[str], where: str = "config") -> None:
    for key in raw:
        if key in valid or key in ALIASES:
            continue
        near = suggest_key(key, valid | set(ALIASES))
        hint = f"; did you mean {near!r}?" if near else ""
        prefix = "" if where == "config" else f"{where}: "
        raise ConfigError(f"{prefix}unknown config key {key!r}{hint}")


def _apply_aliases(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out, notes = {}, []
    for key, value in raw.items():
        if key in ALIASES:
            new, note = ALIASES[key]
            notes.append(f"{key}: {note}")
            if new is None or new in raw:
                continue
            value = ALIAS_VALUES.get(key, {}).get(value, value)
            key = new
        out[key] = value
    return out, notes


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()) or \
        torch.backends.mps.is_available()


def choose_attn_implementation(requested: str | None) -> str:
    """The attention backend to use: flash_attention_2 only where it can run, else SDPA (with a warning)."""
    if requested in (None, "sdpa", "eager", "flex_attention"):
        return requested or "sdpa"
    if requested.startswith("flash_attention"):
        import torch
        from transformers.utils import is_flash_attn_2_available

        if torch.cuda.is_available() and is_flash_attn_2_available():
            return requested
        warnings.warn(f"attn_implementation={requested!r} needs CUDA and the flash-attn package; using 'sdpa'",
                      stacklevel=2)
        return "sdpa"
    return requested


def parse_config(config: dict[str, Any] | str | os.PathLike, classes, overrides: dict[str, Any] | None = None,
                 defaults: dict[str, Any] | None = None, training_class=None, where: str | None = None) -> ParsedConfig:
    """Split a flat config into the given dataclasses plus ``TrainingArguments``.

    ``defaults`` fill keys the config does not set (e.g. an output folder); ``overrides`` win over the file.
    Every value is checked against its field's type and range; errors name ``where`` (default: the file).
    """
    from transformers import TrainingArguments

    TrainingArguments = training_class or TrainingArguments  # noqa: N806 (a class)
    is_file = isinstance(config, (str, os.PathLike))
    where = where or (os.fspath(config) if is_file else "config")
    raw = dict(load_config_file(config) if is_file else config)
    raw.update(overrides or {})
    training_fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    own_fields = {f.name for cls in classes for f in dataclasses.fields(cls)}
    _check_keys(raw, own_fields | training_fields, where)
    raw, notes = _apply_aliases(raw)
    raw = check_values(raw, _field_types([*classes, TrainingArguments]), where)
    for key, value in (defaults or {}).items():
        raw.setdefault(key, value)
    for note in notes:
        warnings.warn(f"config: {note}", stacklevel=2)

    sections = {}
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            sections[cls.__name__] = cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from exc
    training_kwargs = {k: v for k, v in raw.items() if k in training_fields and k not in own_fields}
    if "torch_dtype" in raw:
        _check_dtype(raw["torch_dtype"])
    if not training_kwargs.get("output_dir"):
        raise ConfigError("config key 'output_dir' is required (where checkpoints and the result go)")
    training_kwargs.setdefault("report_to", "none")
    if training_kwargs.get("bf16") and "use_cpu" not in training_kwargs and not _has_accelerator():
        training_kwargs["use_cpu"] = True  # bf16 autocast on CPU: transformers insists on use_cpu being said
    try:
        training = TrainingArguments(**training_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"TrainingArguments: {exc}") from exc
    by_short_name = {_short(name): section for name, section in sections.items()}
    return ParsedConfig(sections=by_short_name, training=training, notes=notes)


def _short(class_name: str) -> str:
    """``ModelArguments`` -> ``model``; ``MNTPArguments`` -> ``mntp``."""
    return class_name.removesuffix("Arguments").lower()


def _check_dtype(value) -> None:
    if value not in (None, "auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"torch_dtype must be auto, float32, bfloat16 or float16, got {value!r}")
