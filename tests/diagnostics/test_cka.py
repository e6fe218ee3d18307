from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastlab.diagnostics import StreamingLinearCKA, bootstrap_cka, cka, linear_cka, rbf_cka, rbf_kernel


def _data(n=40, dx=6, dy=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx))
    y = x[:, :dy] @ rng.normal(size=(dy, dy)) + 0.5 * rng.normal(size=(n, dy)) + 3.0  # related, offset
    return x, y


def _hsic_biased_oracle(k, m):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ m @ h) / (n - 1) ** 2


def _hsic_unbiased_oracle(k, m):
    """Song et al. 2012, Eq. 5, term by term with explicit loops over index sets."""
    n = k.shape[0]
    kt, lt = k.copy(), m.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    tr = sum(kt[i, j] * lt[j, i] for i in range(n) for j in range(n))
    sum_k = sum(kt[i, j] for i in range(n) for j in range(n))
    sum_l = sum(lt[i, j] for i in range(n) for j in range(n))
    k1l1 = sum(kt[i, j] * lt[j, m] for i in range(n) for j in range(n) for m in range(n))
    return (tr + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * k1l1 / (n - 2)) / (n * (n - 3))


def _cka_oracle(k, m, hsic):
    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka__matches_the_gram_matrix_oracle(debiased):
    x, y = _data(n=12)
    hsic = _hsic_unbiased_oracle if debiased else _hsic_biased_oracle
    expected = _cka_oracle(x @ x.T, y @ y.T, hsic)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(expected, rel=1e-10)
    assert cka(x @ x.T, y @ y.T, debiased=debiased) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_cka__matches_the_oracle_with_the_median_heuristic(debiased):
    x, y = _data(n=12)

    def gram(a):
        d2 = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
        sigma = np.sqrt(np.median(d2[~np.eye(len(a), dtype=bool)]))
        return np.exp(-d2 / (2 * sigma**2))

    hsic = _hsic_unbiased_oracle if debiased else _hsic_biased_oracle
    np.testing.assert_allclose(rbf_kernel(x), gram(x), rtol=1e-10)
    assert rbf_cka(x, y, debiased=debiased) == pytest.approx(_cka_oracle(gram(x), gram(y), hsic), rel=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka__self_is_one_and_invariances_hold(debiased):
    x, y = _data()
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y, debiased=debiased)
    assert linear_cka(x @ q, y, debiased=debiased) == pytest.approx(base, rel=1e-10)  # orthogonal
    assert linear_cka(7.5 * x, y, debiased=debiased) == pytest.approx(base, rel=1e-10)  # isotropic scale
    assert linear_cka(x + 4.0, y, debiased=debiased) == pytest.approx(base, rel=1e-8)  # translation
    assert linear_cka(y, x, debiased=debiased) == pytest.approx(base, rel=1e-12)  # symmetric


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("splits", [[40], [1] * 40, [3, 17, 20], [7, 7, 7, 7, 7, 5]])
def test_streaming_linear_cka__equals_one_shot_on_any_split(debiased, splits):
    x, y = _data()
    stream = StreamingLinearCKA(debiased=debiased)
    start = 0
    for size in splits:
        stream.update(torch.from_numpy(x[start : start + size]), y[start : start + size])
        start += size
    assert stream.compute() == pytest.approx(linear_cka(x, y, debiased=debiased), rel=1e-10)


def test_streaming_linear_cka__merge_equals_one_accumulator():
    x, y = _data()
    a, b = StreamingLinearCKA(debiased=True), StreamingLinearCKA(debiased=True)
    a.update(x[:15], y[:15])
    b.update(x[15:], y[15:])
    a.merge(b)
    assert a.compute() == pytest.approx(linear_cka(x, y, debiased=True), rel=1e-10)


def test_cka__debiased_is_near_zero_for_unrelated_features_where_biased_is_not():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 200)), rng.normal(size=(30, 200))  # n << d: the biased estimator inflates
    assert linear_cka(x, y) > 0.5
    assert abs(linear_cka(x, y, debiased=True)) < 0.1


def test_cka__clear_errors_instead_of_nan():
    x, y = _data()
    with pytest.raises(ValueError, match="debiased CKA needs at least 4 samples, got 3"):
        linear_cka(x[:3], y[:3], debiased=True)
    with pytest.raises(ValueError, match="biased CKA needs at least 2 samples, got 1"):
        linear_cka(x[:1], y[:1])
    with pytest.raises(ValueError, match="x and y batches must have the same rows: 40 vs 39"):
        StreamingLinearCKA().update(x, y[:39])
    with pytest.raises(ValueError, match="same inputs: got 40 and 39 rows"):
        rbf_cka(x, y[:39])
    with pytest.raises(ValueError, match="CKA is undefined"):
        linear_cka(np.ones((10, 3)), y[:10])
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        linear_cka(np.full((5, 2), np.nan), y[:5])


def test_bootstrap_cka__interval_brackets_the_point_estimate():
    x, y = _data(n=60)
    point, lower, upper = bootstrap_cka(x, y, n_boot=100, seed=1)
    assert lower <= point <= upper and upper - lower < 0.5
    assert bootstrap_cka(x, y, n_boot=100, seed=1) == (point, lower, upper)  # seeded
