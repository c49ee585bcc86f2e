"""Pair classification: are two texts a positive pair? Average precision (x 100) of their cosine similarity.

scikit-learn's ``average_precision_score`` over the cosine of each pair (MTEB's ``cosine_ap``). Files are
JSONL or TSV/CSV with ``sentence1``, ``sentence2`` and a 0/1 ``label``.

>>> pairs = load_pairs("paraphrases.jsonl")                                # doctest: +SKIP
>>> evaluate_pair_classification(encoder, pairs)                           # doctest: +SKIP
{'ap': 71.3}
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embedding import embed_texts, l2_normalize

__all__ = ["LabelledPairs", "evaluate_pair_classification", "load_pairs", "pair_classification_metrics"]


@dataclass
class LabelledPairs:
    sentences1: list[str]
    sentences2: list[str]
    labels: np.ndarray  # 0/1

    def __len__(self) -> int:
        return len(self.labels)


def load_pairs(path: str | os.PathLike) -> LabelledPairs:
    """Read ``sentence1``/``sentence2``/``label`` rows from a JSONL, TSV or CSV file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair file {path} does not exist")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="," if path.suffix == ".csv" else "\t"))
    for i, row in enumerate(rows):
        missing = {"sentence1", "sentence2", "label"} - set(row)
        if missing:
            raise ValueError(f"{path}: row {i} lacks {sorted(missing)}")
    labels = np.asarray([int(float(r["label"])) for r in rows])
    if not set(labels.tolist()) <= {0, 1}:
        raise ValueError(f"{path}: labels must be 0 or 1")
    return LabelledPairs([str(r["sentence1"]) for r in rows], [str(r["sentence2"]) for r in rows], labels)


def pair_classification_metrics(emb1: np.ndarray, emb2: np.ndarray, labels) -> dict[str, float]:
    """Average precision x 100 of the row-wise cosine similarity for the 0/1 ``labels``.

    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [1.0, 0.0]]); b = np.array([[1.0, 0.1], [0.0, 1.0]])
    >>> pair_classification_metrics(a, b, [1, 0])
    {'ap': 100.0}
    """
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels)
    if labels.sum() == 0:
        raise ValueError("pair classification needs at least one positive pair")
    cos = (l2_normalize(emb1) * l2_normalize(emb2)).sum(axis=1)
    return {"ap": 100.0 * float(average_precision_score(labels, cos))}


def evaluate_pair_classification(encoder, pairs: LabelledPairs, instruction: str | None = None, batch_size: int = 32,
                                 show_progress_bar: bool | None = None) -> dict[str, float]:
    """Embed both sides (each distinct sentence once) and return :func:`pair_classification_metrics`."""
    emb = embed_texts(encoder, pairs.sentences1 + pairs.sentences2, instruction, batch_size, show_progress_bar)
    n = len(pairs)
    return pair_classification_metrics(emb[:n], emb[n:], pairs.labels)
