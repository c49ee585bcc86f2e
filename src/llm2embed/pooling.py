"""Pooling modes: LLM2Vec's names mapped onto sentence-transformers' ``Pooling`` module.

===================  ==========================  =============================================================
llm2embed / LLM2Vec  sentence-transformers       what is pooled
===================  ==========================  =============================================================
``mean``             ``mean``                    average of the text tokens (instruction tokens excluded)
``weighted_mean``    ``weightedmean``            position-weighted average (later tokens weigh more)
``eos_token``        ``lasttoken``               the last token, an EOS appended when the tokenizer adds none
``last_token``       ``lasttoken``               the last real token as tokenized
``bos_token``        ``cls``                     the first non-instruction token
===================  ==========================  =============================================================

sentence-transformers' own names (``mean``, ``weightedmean``, ``lasttoken``, ``cls``, ``max``,
``mean_sqrt_len_tokens``) are accepted too. All modes find real tokens from the attention mask, so they are
correct under either padding side.

Modes joined with ``+`` are concatenated, in that order: ``last_token+mean`` gives ``[last token; mean]``
(twice the hidden size), the ``Pooling`` module's own multi-mode output, so plain ``SentenceTransformer``
reproduces it. With the PromptEOL template the last token carries the trained sentence meaning and the mean
keeps the token-level topic signal that the untrained causal model's mean pooling is good at
(docs/pipeline.md, "Pooling").

>>> st_pooling_mode("weighted_mean")
'weightedmean'
>>> st_pooling_mode("last_token+mean")
('lasttoken', 'mean')
"""

from __future__ import annotations

__all__ = ["POOLING_MODES", "appends_eos", "build_pooling", "pooling_name", "pooling_parts", "st_pooling_mode"]

POOLING_MODES: dict[str, str] = {
    "mean": "mean",
    "weighted_mean": "weightedmean",
    "eos_token": "lasttoken",
    "last_token": "lasttoken",
    "bos_token": "cls",
    # sentence-transformers' own names
    "weightedmean": "weightedmean",
    "lasttoken": "lasttoken",
    "cls": "cls",
    "max": "max",
    "mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
}


# sentence-transformers mode -> the llm2embed name written back for a saved Pooling module
_LLM2EMBED_NAMES = {"weightedmean": "weighted_mean", "lasttoken": "last_token", "cls": "bos_token"}


def pooling_parts(mode: str) -> list[str]:
    """The single modes of ``mode`` (``"last_token+mean"`` -> two); ``ValueError`` naming an unknown part.

    >>> pooling_parts("last_token+mean")
    ['last_token', 'mean']
    """
    parts = mode.split("+") if isinstance(mode, str) else [mode]
    for part in parts:
        if part not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {part!r}" + (f" in {mode!r}" if len(parts) > 1 else "")
                             + f"; accepted: {', '.join(POOLING_MODES)}, or several joined with '+'")
    if len(set(parts)) != len(parts):
        raise ValueError(f"pooling mode {mode!r} repeats a part")
    return parts


def st_pooling_mode(mode: str) -> str | tuple[str, ...]:
    """The sentence-transformers ``Pooling`` mode for an llm2embed pooling name (a tuple for ``a+b``)."""
    modes = tuple(POOLING_MODES[part] for part in pooling_parts(mode))
    return modes[0] if len(modes) == 1 else modes


def pooling_name(st_mode: str | tuple[str, ...] | list[str]) -> str:
    """The llm2embed name of a sentence-transformers ``Pooling`` mode (inverse of :func:`st_pooling_mode`).

    >>> pooling_name(("lasttoken", "mean"))
    'last_token+mean'
    """
    modes = [st_mode] if isinstance(st_mode, str) else list(st_mode)
    return "+".join(_LLM2EMBED_NAMES.get(m, m) for m in modes)


def build_pooling(dimension: int, mode: str, skip_instruction: bool = True):
    """A sentence-transformers ``Pooling`` module for ``mode`` over token embeddings of size ``dimension``."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    return Pooling(dimension, pooling_mode=st_pooling_mode(mode), include_prompt=not skip_instruction)


def appends_eos(mode: str) -> bool:
    """Whether the mode needs an EOS token at the end of every input (LLM2Vec's ``eos_token``)."""
    return "eos_token" in pooling_parts(mode)
