"""How much task information an embedding makes *linearly* or *locally* accessible.

Linear probes (logistic regression, linear SVM) and k-nearest-neighbour accuracy (cosine) use stratified
k-fold cross-validation with a fixed seed, features standardised inside each fold (no leakage), as the
seeds' authors did by hand; a ridge probe gives R² and MAE for regression targets. Needs scikit-learn.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from contrastlab.diagnostics.cka import _as_rows

__all__ = ["knn_accuracy", "linear_probe", "ridge_probe"]


def _labels(y: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(y).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"labels must have one entry per row: {arr.shape[0]} labels for {n} rows")
    return arr


def _folds(y: np.ndarray, folds: int) -> int:
    smallest = int(np.unique(y, return_counts=True)[1].min())
    if smallest < 2:
        raise ValueError("every class needs at least 2 samples for stratified cross-validation")
    return min(folds, smallest)


def linear_probe(
    x: ArrayLike,
    y: ArrayLike,
    *,
    model: Literal["logistic", "svm"] = "logistic",
    folds: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Cross-validated accuracy and macro-F1 of a linear classifier on standardised features.

    Returns:
        {"accuracy": mean over folds, "accuracy_std": std over folds, "macro_f1": mean over folds}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    xa = _as_rows("x", x)
    ya = _labels(y, xa.shape[0])
    clf = LogisticRegression(max_iter=2000) if model == "logistic" else LinearSVC(dual="auto", max_iter=5000)
    cv = StratifiedKFold(n_splits=_folds(ya, folds), shuffle=True, random_state=seed)
    pipe = make_pipeline(StandardScaler(), clf)
    scores = cross_validate(pipe, xa, ya, cv=cv, scoring=("accuracy", "f1_macro"))
    return {
        "accuracy": float(scores["test_accuracy"].mean()),
        "accuracy_std": float(scores["test_accuracy"].std()),
        "macro_f1": float(scores["test_f1_macro"].mean()),
    }


def knn_accuracy(
    x: ArrayLike, y: ArrayLike, *, k: int = 1, folds: int = 5, seed: int = 0, chunk_rows: int = 512
) -> float:
    """Cross-validated k-nearest-neighbour accuracy with cosine similarity (k=1: the seeds' 1-NN).

    Stratified folds as in :func:`linear_probe`; each fold's held-out rows are compared with its training
    rows ``chunk_rows`` at a time (one float32 product, then top-k), so memory is O(chunk_rows · n) at any
    n. Votes are unweighted; a tied vote goes to the smallest class id, as in scikit-learn.

    Returns:
        Mean accuracy over folds.
    """
    import torch
    from sklearn.model_selection import StratifiedKFold

    x32 = (
        x.detach().float()
        if isinstance(x, torch.Tensor)
        else torch.from_numpy(np.asarray(x, dtype=np.float32))
    )
    if x32.ndim != 2 or not bool(torch.isfinite(x32).all()):
        raise ValueError(f"x must be finite (n, d) features, got shape {tuple(x32.shape)}")
    ya = _labels(y, x32.shape[0])
    classes, codes = np.unique(ya, return_inverse=True)
    unit = torch.nn.functional.normalize(x32, dim=1)  # (n, d), float32: no float64 copy at large n
    codes_t = torch.from_numpy(codes)
    cv = StratifiedKFold(n_splits=_folds(ya, folds), shuffle=True, random_state=seed)
    accuracies = []
    for train, test in cv.split(np.zeros(len(ya)), ya):
        train_t, train_codes = unit[train], codes_t[train]
        kk = min(k, len(train))
        hits = 0
        for start in range(0, len(test), chunk_rows):
            rows = test[start : start + chunk_rows]
            sims = unit[rows] @ train_t.T  # (chunk, n_train)
            neighbours = (
                sims.argmax(dim=1, keepdim=True) if kk == 1 else sims.topk(kk, dim=1).indices
            )  # (chunk, k)
            votes = torch.zeros(len(rows), len(classes))
            votes.scatter_add_(1, train_codes[neighbours], torch.ones(neighbours.shape))
            hits += int((votes.argmax(dim=1) == codes_t[rows]).sum())  # argmax: first (smallest) on ties
        accuracies.append(hits / len(test))
    return float(np.mean(accuracies))


def ridge_probe(
    x: ArrayLike, y: ArrayLike, *, folds: int = 5, seed: int = 0, alpha: float = 1.0
) -> dict[str, float]:
    """Cross-validated R² and MAE of ridge regression on standardised features (regression targets)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xa = _as_rows("x", x)
    ya = _labels(y, xa.shape[0]).astype(np.float64)
    cv = KFold(n_splits=min(folds, xa.shape[0]), shuffle=True, random_state=seed)
    pipe = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
    scores = cross_validate(pipe, xa, ya, cv=cv, scoring=("r2", "neg_mean_absolute_error"))
    return {
        "r2": float(scores["test_r2"].mean()),
        "mae": float(-scores["test_neg_mean_absolute_error"].mean()),
    }
