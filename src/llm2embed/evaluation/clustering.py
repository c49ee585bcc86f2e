"""Clustering: k-means on the unit-normalised embeddings, V-measure (x 100) against the gold labels.

scikit-learn's ``KMeans`` with as many clusters as gold labels, ``n_init=10`` and ``random_state=0``, so a
run is deterministic. Data files are those of classification (``text``/``label`` JSONL, TSV or CSV).

>>> data = load_labelled("my-clusters.jsonl")                              # doctest: +SKIP
>>> evaluate_clustering(encoder, data)                                     # doctest: +SKIP
{'v_measure': 42.7}
"""

from __future__ import annotations

import warnings

import numpy as np

from .classification import LabelledTexts
from .embedding import embed_texts, l2_normalize

__all__ = ["clustering_metrics", "evaluate_clustering"]


def clustering_metrics(embeddings: np.ndarray, labels, n_clusters: int | None = None,
                       seed: int = 0) -> dict[str, float]:
    """k-means with ``n_clusters`` (default: number of distinct labels) and the V-measure x 100.

    >>> import numpy as np
    >>> clustering_metrics(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), list("aabb"))
    {'v_measure': 100.0}
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import v_measure_score

    labels = [str(x) for x in labels]
    k = n_clusters or len(set(labels))
    if k < 2:
        raise ValueError("clustering needs at least two clusters")
    with warnings.catch_warnings():  # identical points (e.g. a constant encoder) give fewer distinct clusters
        warnings.simplefilter("ignore", ConvergenceWarning)
        predicted = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(l2_normalize(embeddings))
    return {"v_measure": 100.0 * float(v_measure_score(labels, predicted))}


def evaluate_clustering(encoder, data: LabelledTexts, instruction: str | None = None, batch_size: int = 32,
                        show_progress_bar: bool | None = None) -> dict[str, float]:
    """Embed ``data.texts`` (with ``instruction``) and return :func:`clustering_metrics`."""
    return clustering_metrics(embed_texts(encoder, data.texts, instruction, batch_size, show_progress_bar),
                              data.labels)
