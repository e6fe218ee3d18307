from __future__ import annotations

import math

import numpy as np
import pytest

from contrastlab.diagnostics import (
    alignment,
    class_cosine,
    collapse_std,
    effective_rank,
    feature_norms,
    rankme,
    uniformity,
)


def _unit_rows(n=20, d=5, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_alignment_and_uniformity__match_loop_oracles():
    x, y = _unit_rows(), _unit_rows(seed=1)
    expected = np.mean([np.linalg.norm(a - b) ** 2 for a, b in zip(x, y, strict=True)])
    assert alignment(x, y) == pytest.approx(expected)
    pairs = [np.exp(-2 * np.linalg.norm(x[i] - x[j]) ** 2) for i in range(20) for j in range(i + 1, 20)]
    assert uniformity(x) == pytest.approx(math.log(np.mean(pairs)), rel=1e-12)


def test_uniformity__finite_where_a_plain_mean_underflows():
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    value = uniformity(x, t=400.0)  # exp(-400 * 2) underflows to 0 in float64
    assert math.isfinite(value) and value == pytest.approx(-800.0 + math.log(2 / 3), rel=1e-9)


def test_rank_measures__known_spectra():
    assert rankme(np.eye(6)) == pytest.approx(6.0, rel=1e-5)
    one_direction = np.outer(np.arange(1, 11), np.ones(4))
    assert rankme(one_direction) == pytest.approx(1.0, abs=1e-4)
    assert effective_rank(one_direction) == pytest.approx(1.0)
    s = np.array([3.0, 2.0, 1.0])
    p = s / s.sum()
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(50, 3)))
    u -= u.mean(axis=0)  # centered columns keep effective_rank's centering from changing the spectrum
    u, _ = np.linalg.qr(u)
    x = u * s
    assert effective_rank(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)


def test_collapse_std__zero_when_collapsed_near_inverse_sqrt_d_when_spread():
    assert collapse_std(np.tile([[0.6, 0.8]], (10, 1))) == pytest.approx(0.0, abs=1e-12)
    spread = _unit_rows(n=20000, d=16, seed=2)
    assert collapse_std(spread) == pytest.approx(1 / 4, rel=0.02)


def test_class_cosine_and_norms__match_loops():
    x, labels = _unit_rows(n=12), np.array([0, 1, 2] * 4)
    intra = [x[i] @ x[j] for i in range(12) for j in range(12) if i != j and labels[i] == labels[j]]
    inter = [x[i] @ x[j] for i in range(12) for j in range(12) if labels[i] != labels[j]]
    out = class_cosine(3 * x, labels)
    assert out["intra"] == pytest.approx(np.mean(intra)) and out["inter"] == pytest.approx(np.mean(inter))
    assert out["gap"] == pytest.approx(np.mean(intra) - np.mean(inter))
    assert feature_norms(3 * x)["mean"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="one entry per row: 11 labels for 12 rows"):
        class_cosine(x, labels[:11])


def test_streaming_moments__equal_one_shot_on_any_split_and_merge():
    from contrastlab.diagnostics import StreamingMoments

    x = np.random.default_rng(4).normal(size=(50, 6)) * np.linspace(0.5, 3, 50)[:, None]
    one_shot = {"collapse_std": collapse_std(x), **{f"norm_{k}": v for k, v in feature_norms(x).items()}}
    for splits in ([50], [1] * 50, [13, 30, 7]):
        stream, start = StreamingMoments(), 0
        for size in splits:
            stream.update(x[start : start + size])
            start += size
        for key, value in stream.compute().items():
            assert value == pytest.approx(one_shot[key], rel=1e-12), key
    a, b = StreamingMoments(), StreamingMoments()
    a.update(x[:20])
    b.update(x[20:])
    a.merge(b)
    assert a.compute()["collapse_std"] == pytest.approx(one_shot["collapse_std"], rel=1e-12)
    with pytest.raises(ValueError, match="before any update"):
        StreamingMoments().compute()
