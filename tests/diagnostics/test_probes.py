from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from contrastlab.diagnostics.clustering import cluster_scores
from contrastlab.diagnostics.probes import knn_accuracy, linear_probe, ridge_probe


def _blobs(n_per=30, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 8)) * 4
    y = np.repeat(np.arange(3), n_per)
    return centers[y] + rng.normal(size=(3 * n_per, 8)), y


def test_knn_accuracy__one_nn_matches_a_leave_fold_out_loop():
    x, y = _blobs()
    from sklearn.model_selection import StratifiedKFold

    correct = 0
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        sims = unit[test] @ unit[train].T
        correct += int((y[train][sims.argmax(axis=1)] == y[test]).sum())
    # Equal fold sizes, so the mean of fold accuracies is the pooled accuracy.
    assert knn_accuracy(x, y, k=1) == pytest.approx(correct / len(y))


def test_probes__separable_classes_and_noise():
    x, y = _blobs()
    assert linear_probe(x, y)["accuracy"] > 0.95
    assert linear_probe(x, y, model="svm")["accuracy"] > 0.95
    noise = np.random.default_rng(1).normal(size=x.shape)
    assert linear_probe(noise, y)["accuracy"] < 0.6


def test_ridge_probe__recovers_a_linear_target():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    target = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.01 * rng.normal(size=200)
    out = ridge_probe(x, target)
    assert out["r2"] > 0.99 and out["mae"] < 0.1


def test_cluster_scores__equal_sklearn_on_the_same_normalised_data():
    x, y = _blobs()
    out = cluster_scores(x, y, seed=3)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    pred = KMeans(n_clusters=3, n_init=10, random_state=3).fit_predict(unit)
    assert out["ari"] == pytest.approx(adjusted_rand_score(y, pred))
    assert out["ari"] > 0.9 and -1 <= out["silhouette"] <= 1


@pytest.mark.parametrize("k", [1, 5])
def test_knn_accuracy__matches_sklearn_kneighbors_on_the_same_folds(k):
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _blobs(n_per=40, seed=2)
    x += np.random.default_rng(5).normal(size=x.shape) * 3  # overlap, so errors happen
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    expected = cross_val_score(knn, x, y, cv=cv).mean()
    assert knn_accuracy(x, y, k=k, chunk_rows=7) == pytest.approx(expected)
