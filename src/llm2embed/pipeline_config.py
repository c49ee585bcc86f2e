"""Pipeline settings: the recipes, a config file on top of one (with ``extends:`` between files), validation.

    >>> from llm2embed.pipeline_config import default_config, load_pipeline_config
    >>> default_config("llm2vec")["mntp"]["max_steps"]
    200
    >>> config = load_pipeline_config("benchmarks/ablations/prompteol_simcse_warmup.yaml")  # doctest: +SKIP

A file holds top-level keys (``model``, ``pooling_mode``, …) and one section per stage, each section the
official llm2vec config of that stage; :mod:`llm2embed.pipeline` runs what this module resolves.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_RECIPE", "RECIPES", "STAGES", "default_config", "load_pipeline_config", "validate_pipeline_config"]

STAGES = ("mntp", "simcse", "supervised")

# Sized for a 2-core CPU (AVX-512 bf16). Each recipe is a complete set of stage settings; a config file or
# ``--recipe`` picks one and overrides any of it. docs/pipeline.md has the measurements behind every value.
_COMMON = {
    "model": "smollm2-135m",
    "output": "runs/default",
    "pooling_mode": None,  # None: mean, or the prompt template's pooling (last_token for prompteol)
    # pooling of the encoder the run hands out, if not the trained one (same weights, see llm2embed.repool)
    "encoder_pooling_mode": None,
    "max_length": None,  # longest input of the saved encoders: None = 512, or the model's context if smaller
    "supervised": None,
    "evaluation": {
        "stage_tasks": ["stsb"],
        "final_tasks": ["stsb", "wiki"],
        "baselines": None,  # None: the model untrained, causal (mean pooling) and PromptEOL (training-free)
        "reduced_precision": "bfloat16",
        "selection": "stsb-dev",  # dev set that picks each contrastive stage's kept checkpoint (null: last)
    },
}
RECIPES: dict[str, dict[str, Any]] = {
    # LLM2Vec (BehnamGhader et al. 2024): bidirectional -> MNTP -> SimCSE, mean pooling; the official
    # recipe's small-budget step counts with the learning rates, bf16 autocast and length-grouped batches
    # that make that budget work on a CPU
    "llm2vec": {
        "bidirectional": True,
        "prompt_template": None,
        "mntp": {
            "train_file": "wiki", "max_seq_length": 128, "per_device_train_batch_size": 8, "mlm_probability": 0.2,
            "mask_token_type": "blank", "data_collator_type": "default", "lora_r": 16, "learning_rate": 1e-4,
            "bf16": True, "stop_after_n_steps": 200, "max_steps": 200, "save_steps": 50, "logging_steps": 10,
            "seed": 42,
        },
        "simcse": {
            "dataset_name": "wiki", "max_seq_length": 64, "per_device_train_batch_size": 32, "simcse_dropout": 0.3,
            "loss_scale": 20, "learning_rate": 1e-3, "lora_r": 16, "bf16": True,
            "train_sampling_strategy": "group_by_length", "stop_after_n_steps": 100, "max_steps": 100,
            "save_steps": 50, "logging_steps": 10, "seed": 42,
        },
    },
    # PromptEOL (causal attention, the PromptEOL template, last token) + unsupervised SimCSE with LoRA; no MNTP
    "prompteol-simcse": {
        "bidirectional": False,
        "prompt_template": "prompteol",
        # trained on the last token; handed out as [last token; mean], which keeps the causal model's topic
        # signal (wiki classification/clustering) at no training cost (docs/pipeline.md, "Pooling")
        "encoder_pooling_mode": "last_token+mean",
        "mntp": None,
        "simcse": {
            "dataset_name": "wiki", "max_seq_length": 64, "per_device_train_batch_size": 32, "simcse_dropout": 0.1,
            "loss_scale": 20, "learning_rate": 3e-4, "lora_r": 16, "bf16": True,
            "train_sampling_strategy": "group_by_length", "stop_after_n_steps": 60, "max_steps": 60,
            "save_steps": 20, "logging_steps": 10, "eval_every_n_steps": 20, "seed": 42,
        },
    },
}
DEFAULT_RECIPE = "prompteol-simcse"
# top-level settings every contrastive stage inherits unless its own section sets them
INHERITED_KEYS = ("pooling_mode", "bidirectional", "prompt_template")
_TOP_LEVEL_TYPES = {"recipe": str, "model": str, "output": str, "pooling_mode": str, "encoder_pooling_mode": str,
                    "bidirectional": bool, "prompt_template": str, "max_length": int, "mntp": dict, "simcse": dict,
                    "supervised": dict, "evaluation": dict}


def default_config(recipe: str | None = None) -> dict[str, Any]:
    """The pipeline of ``recipe`` (default :data:`DEFAULT_RECIPE`) on the embedded SmolLM2 and Wikipedia corpus.

    >>> default_config("llm2vec")["mntp"]["max_steps"]
    200
    """
    from .training.config import ConfigError, suggest_key

    name = recipe or DEFAULT_RECIPE
    if name not in RECIPES:
        near = suggest_key(name, set(RECIPES))
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}"
                          + (f" (did you mean {near!r}?)" if near else ""))
    return copy.deepcopy({"recipe": name, **_COMMON, **RECIPES[name]})


def load_pipeline_config(path: str | os.PathLike | None, recipe: str | None = None) -> dict[str, Any]:
    """Read a YAML/JSON pipeline file on top of its recipe's settings; unknown top-level keys are errors.

    The recipe is ``recipe`` if given, else the file's ``recipe:`` key, else :data:`DEFAULT_RECIPE`; the
    file's stage sections replace the recipe's, its ``evaluation`` keys change the recipe's one by one.

    ``extends: base.yaml`` (a path relative to the file) starts from everything ``base.yaml`` runs and
    changes only what the file lists: top-level keys are replaced, and inside a stage section (``mntp``,
    ``simcse``, ``supervised``) or ``evaluation`` only the keys given change (in a stage section ``key: null``
    removes the key, back to the stage's default; ``simcse: null`` still skips the stage). Bases may extend
    further files; a ``recipe:`` or ``--recipe`` applies under the whole chain.

    >>> load_pipeline_config("benchmarks/ablations/prompteol_simcse_fp32.yaml")["simcse"]["bf16"]  # doctest: +SKIP
    False
    """
    from .training.config import ConfigError

    files = _extends_chain(Path(path)) if path is not None else []
    where = str(path) if path is not None else "pipeline config"
    name = recipe or next((data["recipe"] for _, data in reversed(files) if "recipe" in data), None)
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{where}: 'recipe' must be a string (one of {', '.join(RECIPES)}), got {name!r}")
    try:
        config = default_config(name)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    for index, (file, data) in enumerate(files):
        config = _apply_file(config, data, str(file), extending=index > 0)
    validate_pipeline_config(config, where=where)
    return config


def _extends_chain(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``path`` and the files it extends, the last base first; errors name the file and the broken link."""
    from .training.config import ConfigError, load_config_file

    chain: list[tuple[Path, dict[str, Any]]] = []
    while True:
        seen = [p.resolve() for p, _ in chain]
        if path.resolve() in seen:
            cycle = " -> ".join(str(p) for p, _ in chain[seen.index(path.resolve()):])
            raise ConfigError(f"{chain[0][0]}: 'extends' goes round in a circle: {cycle} -> {path}")
        data = load_config_file(path)
        chain.append((path, data))
        base = data.get("extends")
        if base is None:
            return chain[::-1]
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: 'extends' must be the path of another pipeline file, got {base!r}")
        if not (path.parent / base).is_file():
            raise ConfigError(f"{path}: 'extends': config file {path.parent / base} does not exist")
        path = path.parent / base


def _apply_file(config: dict[str, Any], data: dict[str, Any], where: str, extending: bool) -> dict[str, Any]:
    """``config`` with one file's settings on top (see :func:`load_pipeline_config` for the rules)."""
    from .training.config import ConfigError, suggest_key

    config = copy.deepcopy(config)
    for key, value in data.items():
        if key in ("extends", "recipe"):
            continue
        if key not in config:
            near = suggest_key(key, set(config))
            raise ConfigError(f"{where}: unknown pipeline key {key!r}" + (f"; did you mean {near!r}?" if near else ""))
        if isinstance(value, dict) and isinstance(config[key], dict) and key == "evaluation":
            config[key] = {**config[key], **value}
        elif isinstance(value, dict) and isinstance(config[key], dict) and key in STAGES and extending:
            merged = {**config[key], **value}
            config[key] = {k: v for k, v in merged.items() if not (k in value and v is None)}
        else:
            config[key] = value
    return config


def validate_pipeline_config(config: dict[str, Any], where: str = "pipeline config") -> None:
    """Check every value against its field's type and range before anything runs (errors name the key)."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from transformers import TrainingArguments

    from .pooling import pooling_parts
    from .training.config import (ConfigError, DataArguments, MNTPArguments, ModelArguments, _check_keys,
                                  _field_types, check_values)
    from .training.contrastive import ContrastiveArguments

    check_values({k: v for k, v in config.items() if k in _TOP_LEVEL_TYPES}, _TOP_LEVEL_TYPES, where)
    for key in ("pooling_mode", "encoder_pooling_mode"):
        if config.get(key) is not None:
            try:
                pooling_parts(config[key])
            except ValueError as error:
                raise ConfigError(f"{where}: {key!r}: {error}") from None
    sections = {"mntp": ([ModelArguments, DataArguments, MNTPArguments], TrainingArguments),
                "simcse": ([ModelArguments, ContrastiveArguments], SentenceTransformerTrainingArguments),
                "supervised": ([ModelArguments, ContrastiveArguments], SentenceTransformerTrainingArguments)}
    for stage, (classes, training) in sections.items():
        section = config.get(stage)
        if section:
            types_ = _field_types([*classes, training])
            _check_keys(section, set(types_), f"{where}, section {stage!r}")
            check_values(section, types_, f"{where}, section {stage!r}")
