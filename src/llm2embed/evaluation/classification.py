"""Classification on frozen embeddings: logistic regression, accuracy and macro-F1 (x 100).

The classifier is scikit-learn's ``LogisticRegression`` (lbfgs, ``max_iter=1000``, ``random_state=0``) after a
``StandardScaler``, fitted on the train embeddings; scaling keeps the result independent of the embedding's
overall scale (cosine-trained models have tiny coordinates, LLM hidden states have huge outlier dimensions).

Local files are JSONL (``{"text": ..., "label": ...}``) or TSV/CSV with ``text`` and ``label`` columns; a
classification folder holds ``train.*`` and ``test.*``.

>>> train, test = load_classification_dir("my-task")                       # doctest: +SKIP
>>> evaluate_classification(encoder, train, test)                          # doctest: +SKIP
{'accuracy': 81.0, 'f1_macro': 79.4}
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embedding import embed_texts

__all__ = ["LabelledTexts", "classification_metrics", "evaluate_classification", "load_classification_dir",
           "load_labelled"]


@dataclass
class LabelledTexts:
    """Texts with one label each (labels are strings); ``ids`` optionally names each text."""

    texts: list[str]
    labels: list[str]
    ids: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        if self.ids is not None and len(self.ids) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts but {len(self.ids)} ids")
        self.labels = [str(label) for label in self.labels]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_set(self) -> list[str]:
        return sorted(set(self.labels))


def load_labelled(path: str | os.PathLike, text_key: str = "text", label_key: str = "label") -> LabelledTexts:
    """Read ``text``/``label`` rows from a JSONL, TSV or CSV file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labelled text file {path} does not exist")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="," if path.suffix == ".csv" else "\t"))
    for i, row in enumerate(rows):
        if text_key not in row or label_key not in row:
            raise ValueError(f"{path}: row {i} lacks {text_key!r} or {label_key!r}")
    return LabelledTexts([str(r[text_key]) for r in rows], [str(r[label_key]) for r in rows])


def _split_file(folder: Path, split: str) -> Path:
    for suffix in (".jsonl", ".tsv", ".csv"):
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    raise FileNotFoundError(f"{folder} has no {split}.jsonl, {split}.tsv or {split}.csv")


def load_classification_dir(folder: str | os.PathLike) -> tuple[LabelledTexts, LabelledTexts]:
    """``(train, test)`` from a folder with ``train.{jsonl,tsv,csv}`` and ``test.{jsonl,tsv,csv}``."""
    folder = Path(folder)
    return load_labelled(_split_file(folder, "train")), load_labelled(_split_file(folder, "test"))


def classification_metrics(train_emb: np.ndarray, train_labels, test_emb: np.ndarray, test_labels,
                           seed: int = 0) -> dict[str, float]:
    """Fit scaler + logistic regression on the train rows; accuracy and macro-F1 (x 100) on the test rows.

    >>> import numpy as np
    >>> x = np.array([[0.0], [0.1], [1.0], [1.1]])
    >>> classification_metrics(x, list("aabb"), x, list("aabb"))
    {'accuracy': 100.0, 'f1_macro': 100.0}
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_labels, test_labels = [str(x) for x in train_labels], [str(x) for x in test_labels]
    if len(set(train_labels)) < 2:
        raise ValueError("classification needs at least two labels in the training data")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    model.fit(np.asarray(train_emb, dtype=np.float64), train_labels)
    predicted = model.predict(np.asarray(test_emb, dtype=np.float64))
    return {"accuracy": 100.0 * float(accuracy_score(test_labels, predicted)),
            "f1_macro": 100.0 * float(f1_score(test_labels, predicted, average="macro", zero_division=0))}


def evaluate_classification(encoder, train: LabelledTexts, test: LabelledTexts, instruction: str | None = None,
                            batch_size: int = 32, show_progress_bar: bool | None = None) -> dict[str, float]:
    """Embed train and test texts (``instruction`` on all of them) and return :func:`classification_metrics`."""
    emb = embed_texts(encoder, train.texts + test.texts, instruction, batch_size, show_progress_bar)
    n = len(train)
    return classification_metrics(emb[:n], train.labels, emb[n:], test.labels)
