"""Does the embedding cluster by class without supervision? k-means with k = number of classes scored
by ARI, NMI and AMI against the labels, and the cosine silhouette of the labels. Needs scikit-learn."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from contrastlab.diagnostics.cka import _as_rows

__all__ = ["cluster_scores"]


def cluster_scores(x: ArrayLike, y: ArrayLike, *, seed: int = 0, n_init: int = 10) -> dict[str, float]:
    """k-means (k = number of classes, ``n_init`` restarts, seeded) on L2-normalised features.

    Returns:
        {"ari", "nmi", "ami"} of the k-means partition against the labels, and "silhouette": the cosine
        silhouette of the *labels* (how separated the true classes are, in [-1, 1]).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import (
        adjusted_mutual_info_score,
        adjusted_rand_score,
        normalized_mutual_info_score,
        silhouette_score,
    )

    xa = _as_rows("x", x)
    ya = np.asarray(y).reshape(-1)
    if ya.shape[0] != xa.shape[0]:
        raise ValueError(f"labels must have one entry per row: {ya.shape[0]} labels for {xa.shape[0]} rows")
    k = len(np.unique(ya))
    if k < 2 or k >= xa.shape[0]:
        raise ValueError(f"clustering needs 2 <= classes < samples, got {k} classes, {xa.shape[0]} samples")
    unit = xa / np.maximum(np.linalg.norm(xa, axis=1, keepdims=True), 1e-12)
    pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(unit)
    return {
        "ari": float(adjusted_rand_score(ya, pred)),
        "nmi": float(normalized_mutual_info_score(ya, pred)),
        "ami": float(adjusted_mutual_info_score(ya, pred)),
        "silhouette": float(silhouette_score(xa, ya, metric="cosine")),
    }
