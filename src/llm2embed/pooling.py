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

>>> st_pooling_mode("weighted_mean")
'weightedmean'
"""

from __future__ import annotations

__all__ = ["POOLING_MODES", "appends_eos", "st_pooling_mode"]

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


def st_pooling_mode(mode: str) -> str:
    """The sentence-transformers ``Pooling`` mode for an llm2embed pooling name; ``ValueError`` if unknown."""
    try:
        return POOLING_MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(f"unknown pooling mode {mode!r}; accepted: {', '.join(POOLING_MODES)}") from None


def appends_eos(mode: str) -> bool:
    """Whether the mode needs an EOS token at the end of every input (LLM2Vec's ``eos_token``)."""
    return mode == "eos_token"
