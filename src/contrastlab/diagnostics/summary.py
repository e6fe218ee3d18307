"""Everything at once for one embedding: the numbers ``contrastlab diagnose`` writes and prints."""

from __future__ import annotations

import importlib.util
from typing import Any, BinaryIO, Literal

import numpy as np
from numpy.typing import ArrayLike

from contrastlab.diagnostics.cka import _as_rows
from contrastlab.diagnostics.geometry import (
    class_cosine,
    collapse_std,
    effective_rank,
    feature_norms,
    rankme,
    uniformity,
)

__all__ = ["plot_projection", "summarize"]


def summarize(
    embedding: ArrayLike,
    targets: ArrayLike | None = None,
    *,
    task: Literal["classification", "regression"] = "classification",
    seed: int = 0,
) -> dict[str, Any]:
    """Geometry for any embedding; probes and clustering when targets are given and scikit-learn is
    installed (otherwise the result says they were skipped and why)."""
    x = _as_rows("embedding", embedding)
    out: dict[str, Any] = {
        "n": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "geometry": {
            "uniformity": uniformity(x),
            "rankme": rankme(x),
            "effective_rank": effective_rank(x),
            "collapse_std": collapse_std(x),
            "norms": feature_norms(x),
        },
    }
    if targets is None:
        return out
    y = np.asarray(targets).reshape(-1)
    if task == "classification":
        out["geometry"]["class_cosine"] = class_cosine(x, y)
    if importlib.util.find_spec("sklearn") is None:
        out["skipped"] = "probes and clustering need scikit-learn (pip install 'contrastlab[diagnostics]')"
        return out
    from contrastlab.diagnostics.clustering import cluster_scores
    from contrastlab.diagnostics.probes import knn_accuracy, linear_probe, ridge_probe

    if task == "classification":
        out["probes"] = {
            "logistic": linear_probe(x, y, seed=seed),
            "linear_svm": linear_probe(x, y, model="svm", seed=seed),
            "knn1_accuracy": knn_accuracy(x, y, k=1, seed=seed),
            "knn5_accuracy": knn_accuracy(x, y, k=5, seed=seed),
        }
        out["clustering"] = cluster_scores(x, y, seed=seed)
    else:
        out["probes"] = {"ridge": ridge_probe(x, y, seed=seed)}
    return out


def plot_projection(
    embedding: ArrayLike,
    targets: ArrayLike | None,
    path: str | BinaryIO,
    *,
    method: Literal["pca", "tsne", "umap"] = "pca",
    seed: int = 0,
    title: str | None = None,
) -> None:
    """A 2-D projection as a PNG scatter coloured by target: PCA, t-SNE (scikit-learn) or UMAP (umap-learn).

    Raises:
        ImportError: t-SNE without scikit-learn, or UMAP without umap-learn (the message has the pip line).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = _as_rows("embedding", embedding)
    if method == "pca":
        centered = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        xy = centered @ vt[:2].T
    elif method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(x) - 1) / 3)
        xy = TSNE(n_components=2, random_state=seed, init="pca", perplexity=perplexity).fit_transform(x)
    else:
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError:
            raise ImportError("UMAP projections need umap-learn: pip install umap-learn") from None
        xy = umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    labels = None if targets is None else np.asarray(targets)
    # Class labels (a few integers) get a legend of discrete colours; anything else a colour bar.
    classes = labels is not None and labels.dtype.kind in "iub" and len(np.unique(labels)) <= 20
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=8, cmap="tab20" if classes else "viridis")
    if classes:
        ax.legend(*scatter.legend_elements(), fontsize=7, title="class", title_fontsize=7, loc="best")
    elif labels is not None:
        fig.colorbar(scatter, ax=ax, fraction=0.046)
    ax.set_title(title or f"{method.upper()} of {x.shape[0]} embeddings")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
