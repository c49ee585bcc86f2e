"""Shared helpers of the evaluators: embed a list of texts once each, normalise rows, cosine similarities.

Every evaluator takes an ``encoder``: anything with ``encode(items, batch_size=, show_progress_bar=,
convert_to_numpy=)`` that accepts strings and, when an instruction is given, ``[instruction, text]`` pairs
(an :class:`llm2embed.Encoder`, a ``SentenceTransformer`` for plain strings, a test double, or the runner's
:class:`~llm2embed.evaluation.cache.CachedEncoder`).

>>> import numpy as np
>>> class Fixed:
...     def encode(self, items, **kwargs):
...         return np.array([[len(t), 1.0] for t in items])
>>> embed_texts(Fixed(), ["ab", "a", "ab"]).tolist()
[[2.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["as_inputs", "cosine_matrix", "embed_texts", "l2_normalize"]


def as_inputs(texts: Sequence[str], instruction: str | None = None) -> list:
    """Encoder inputs for ``texts``: the strings themselves, or ``[instruction, text]`` pairs.

    >>> as_inputs(["a"], "Retrieve:")
    [['Retrieve:', 'a']]
    """
    if instruction:
        return [[instruction, t] for t in texts]
    return list(texts)


def embed_texts(
    encoder,
    texts: Sequence[str],
    instruction: str | None = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
) -> np.ndarray:
    """Embed ``texts`` (each distinct text once) and return one float32 row per input, in input order."""
    texts = list(texts)
    if not texts:
        raise ValueError("nothing to embed: the text list is empty")
    unique = list(dict.fromkeys(texts))
    emb = encoder.encode(as_inputs(unique, instruction), batch_size=batch_size,
                         show_progress_bar=show_progress_bar, convert_to_numpy=True)
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(unique):
        raise ValueError(f"encoder returned shape {emb.shape} for {len(unique)} texts")
    if len(unique) == len(texts):
        return emb
    index = {t: i for i, t in enumerate(unique)}
    return emb[[index[t] for t in texts]]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero).

    >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b`` (float64)."""
    return l2_normalize(a) @ l2_normalize(b).T
