"""Verification metrics against scikit-learn's ROC and brute-force loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from contrastlab.diagnostics.verification import pair_scores, roc_points, verification_metrics


def _data(n=120, identities=8, dim=6, noise=0.8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(identities, dim))
    ids = rng.integers(0, identities, size=n)
    return centers[ids] + noise * rng.normal(size=(n, dim)), ids


def test_pairs_and_rank1_match_a_loop_over_every_pair():
    x, ids = _data(n=40)
    genuine, impostor, rank1 = pair_scores(x, ids, block=7)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    g, i = [], []
    for a, b in itertools.combinations(range(len(x)), 2):
        (g if ids[a] == ids[b] else i).append(u[a] @ u[b])
    np.testing.assert_allclose(np.sort(genuine), np.sort(g), rtol=1e-6)
    np.testing.assert_allclose(np.sort(impostor), np.sort(i), rtol=1e-6)
    nearest = [max((j for j in range(len(x)) if j != a), key=lambda j: u[a] @ u[j]) for a in range(len(x))]
    assert rank1 == pytest.approx(np.mean([ids[a] == ids[j] for a, j in enumerate(nearest)]))


def test_roc_tar_at_far_and_eer_equal_sklearn():
    x, ids = _data(n=300, identities=15)
    genuine, impostor, _ = pair_scores(x, ids)
    scores = np.r_[genuine, impostor].astype(np.float64)
    labels = np.r_[np.ones(genuine.size), np.zeros(impostor.size)]
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    far, tar, thresholds = roc_points(genuine, impostor)
    np.testing.assert_allclose(far, fpr)
    np.testing.assert_allclose(tar, tpr)
    np.testing.assert_allclose(thresholds[1:], thr[1:])
    metrics = verification_metrics(x, ids, far_targets=(1e-3, 1e-2, 0.1))
    for target in (1e-3, 1e-2, 0.1):
        assert metrics[f"tar@far={target:g}"] == pytest.approx(tpr[fpr <= target].max())
    fnr = 1 - tpr
    k = np.flatnonzero(fpr >= fnr)[0]
    assert fpr[k - 1] <= metrics["eer"] <= fpr[k] and fnr[k] <= metrics["eer"] <= fnr[k - 1]
    assert metrics["genuine_cosine"] > metrics["impostor_cosine"]
    assert metrics["genuine_pairs"] + metrics["impostor_pairs"] == 300 * 299 / 2


def test_perfect_and_random_embeddings_bracket_the_metrics():
    ids = np.repeat(np.arange(5), 10)
    perfect = np.eye(5)[ids] + 1e-3 * np.random.default_rng(0).normal(size=(50, 5))
    m = verification_metrics(perfect, ids)
    assert m["tar@far=0.001"] == 1.0 and m["eer"] == 0.0 and m["rank1"] == 1.0
    noise = np.random.default_rng(1).normal(size=(400, 16))
    r = verification_metrics(noise, np.repeat(np.arange(20), 20))
    assert 0.4 < r["eer"] < 0.6 and r["tar@far=0.01"] < 0.05


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"identities must be \(3,\)"):
        verification_metrics(np.ones((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="no two samples share an identity"):
        verification_metrics(np.eye(3), [0, 1, 2])
    with pytest.raises(ValueError, match=r"far_targets holds 0"):
        verification_metrics(np.eye(4), [0, 0, 1, 1], far_targets=(0,))
    with pytest.raises(ValueError, match="non-finite"):
        verification_metrics(np.array([[np.nan, 1.0], [1.0, 0.0]]), [0, 0])
