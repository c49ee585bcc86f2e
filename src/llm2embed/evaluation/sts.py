"""Semantic textual similarity: Spearman correlation (x100) of cosine similarity against gold scores.

Reads the STS Benchmark's tab-separated files (gold score in column 5, sentences in columns 6 and 7;
extra trailing columns are ignored) and generic JSONL/TSV files with ``sentence1``, ``sentence2``, ``score``.

>>> pairs = load_sts("../shared/data/stsb/sts-test.csv")          # doctest: +SKIP
>>> sts_spearman(Encoder.from_pretrained("smollm2-135m"), pairs)   # doctest: +SKIP
16.25
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["STSPairs", "evaluate_sts", "load_sts", "spearman", "sts_metrics", "sts_spearman"]


@dataclass
class STSPairs:
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def _load_stsb_tsv(path: Path) -> STSPairs:
    s1, s2, scores = [], [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 7:
                raise ValueError(f"{path}:{lineno}: expected >= 7 tab-separated columns, got {len(cols)}")
            scores.append(float(cols[4]))
            s1.append(cols[5])
            s2.append(cols[6])
    return STSPairs(s1, s2, np.asarray(scores, dtype=np.float64))


def _load_generic(path: Path) -> STSPairs:
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix in (".tsv", ".txt") else ","))
    for i, row in enumerate(rows):
        missing = {"sentence1", "sentence2", "score"} - set(row)
        if missing:
            raise ValueError(f"{path}: row {i} lacks {sorted(missing)}")
    return STSPairs([r["sentence1"] for r in rows], [r["sentence2"] for r in rows],
                    np.asarray([float(r["score"]) for r in rows], dtype=np.float64))


def load_sts(path: str | os.PathLike) -> STSPairs:
    """Load STS pairs from an STS-B ``.csv`` (tab-separated) or a JSONL/TSV with sentence1/sentence2/score."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"STS file {path} does not exist")
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    if path.suffix == ".jsonl" or first.startswith("sentence1") or "sentence1" in first.split("\t")[0:1]:
        return _load_generic(path)
    return _load_stsb_tsv(path)


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
    b = b / np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
    return (a * b).sum(axis=1)


def sts_spearman(encoder, pairs: STSPairs, batch_size: int = 32, show_progress_bar: bool | None = None) -> float:
    """Spearman x 100 between the cosine of each pair's embeddings and the gold score.

    ``encoder`` is anything with ``encode(list_of_str) -> array`` (an Encoder or a SentenceTransformer).
    Each distinct sentence is embedded once.
    """
    unique = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    emb = np.asarray(encoder.encode(unique, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                    convert_to_numpy=True), dtype=np.float64)
    index = {s: i for i, s in enumerate(unique)}
    a = emb[[index[s] for s in pairs.sentences1]]
    b = emb[[index[s] for s in pairs.sentences2]]
    return 100.0 * spearman(_cosine_rows(a, b), pairs.scores)


def sts_metrics(emb1: np.ndarray, emb2: np.ndarray, scores) -> dict[str, float]:
    """Spearman and Pearson x 100 of the cosine of each row pair against the gold ``scores``.

    A constant similarity (e.g. a constant encoder) has no rank order: both come back as NaN.

    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    >>> b = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> sts_metrics(a, b, [5.0, 2.5, 0.0])["spearman"]
    100.0
    """
    from scipy.stats import pearsonr

    cos = _cosine_rows(np.asarray(emb1, dtype=np.float64), np.asarray(emb2, dtype=np.float64))
    gold = np.asarray(scores, dtype=np.float64)
    if np.ptp(cos) == 0 or np.ptp(gold) == 0:
        return {"spearman": float("nan"), "pearson": float("nan")}
    return {"spearman": 100.0 * spearman(cos, gold), "pearson": 100.0 * float(pearsonr(cos, gold).statistic)}


def evaluate_sts(encoder, pairs: STSPairs, instruction: str | None = None, batch_size: int = 32,
                 show_progress_bar: bool | None = None) -> dict[str, float]:
    """Embed both sides of ``pairs`` (each distinct sentence once) and return :func:`sts_metrics`.

    ``instruction`` (symmetric task) is given to every sentence; ``None`` embeds the plain sentences, which
    gives exactly :func:`sts_spearman`.

    >>> evaluate_sts(Encoder.from_pretrained("smollm2-135m"), load_sts("sts-test.csv"))  # doctest: +SKIP
    {'spearman': 16.25, 'pearson': ...}
    """
    from .embedding import embed_texts

    emb = embed_texts(encoder, pairs.sentences1 + pairs.sentences2, instruction, batch_size, show_progress_bar)
    n = len(pairs.sentences1)
    return sts_metrics(emb[:n], emb[n:], pairs.scores)
