"""Centered kernel alignment (Kornblith et al., "Similarity of Neural Network Representations Revisited",
ICML 2019): how similar two representations of the same n inputs are, invariant to orthogonal transforms
and isotropic scaling.

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))

- biased: HSIC = tr(K H L H) / (n - 1)², H = I - 11ᵀ/n (Gretton et al. 2005); needs n >= 2.
- debiased: the unbiased HSIC estimator of Song et al., JMLR 2012, Eq. 5; needs n >= 4. Kornblith et al.
  recommend it for small n, where the biased estimator drifts toward 1 for unrelated representations.

Linear CKA also comes as a streaming class whose float64 sufficient statistics give exactly the one-shot
value (biased or debiased) on any split of the rows into batches, in O(D_x · D_y) memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["StreamingLinearCKA", "bootstrap_cka", "cka", "linear_cka", "rbf_cka", "rbf_kernel"]

F64 = NDArray[np.float64]


def _as_rows(name: str, x: ArrayLike) -> F64:
    """Converts tensors or arrays to float64 (n, d); 1-D inputs become one feature."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (n, d) features, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def _check_pair(x: F64, y: F64, minimum: int, estimator: str) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must describe the same inputs: got {x.shape[0]} and {y.shape[0]} rows")
    if x.shape[0] < minimum:
        raise ValueError(f"{estimator} CKA needs at least {minimum} samples, got {x.shape[0]}")


def _hsic(k: F64, m: F64, debiased: bool) -> float:
    n = k.shape[0]
    if not debiased:
        kc = k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()  # H K H
        return float((kc * m).sum()) / float((n - 1) ** 2)  # tr(HKH L) = tr(K H L H), L = m
    k, m = k.copy(), m.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(m, 0.0)
    k1, m1 = k.sum(axis=1), m.sum(axis=1)  # K̃1, L̃1
    return float(
        ((k * m).sum() + k1.sum() * m1.sum() / ((n - 1) * (n - 2)) - 2.0 * (k1 @ m1) / (n - 2))
        / (n * (n - 3))
    )


def _ratio(xy: float, xx: float, yy: float) -> float:
    denom = np.sqrt(xx * yy)
    if not denom > 0:
        raise ValueError(
            "CKA is undefined: a representation has zero (or, debiased, non-positive) self-similarity "
            f"(HSIC(x, x) = {xx:.3g}, HSIC(y, y) = {yy:.3g}), e.g. all rows identical"
        )
    return float(xy / denom)


def cka(k: ArrayLike, m: ArrayLike, *, debiased: bool = False) -> float:
    """CKA of two n x n Gram matrices K (``k``) and L (``m``).

    Raises:
        ValueError: shapes differ or are not square, n too small, or a degenerate (constant) kernel.
    """
    k_arr, l_arr = np.asarray(k, dtype=np.float64), np.asarray(m, dtype=np.float64)
    if k_arr.ndim != 2 or k_arr.shape[0] != k_arr.shape[1] or k_arr.shape != l_arr.shape:
        raise ValueError(f"k and m must be equal square Gram matrices, got {k_arr.shape} and {l_arr.shape}")
    minimum = 4 if debiased else 2
    if k_arr.shape[0] < minimum:
        raise ValueError(f"{'debiased' if debiased else 'biased'} CKA needs at least {minimum} samples")
    return _ratio(_hsic(k_arr, l_arr, debiased), _hsic(k_arr, k_arr, debiased), _hsic(l_arr, l_arr, debiased))


def linear_cka(x: ArrayLike, y: ArrayLike, *, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same n inputs.

    The biased value is computed in feature space, ``||Xcᵀ Yc||²_F / (||Xcᵀ Xc||_F ||Ycᵀ Yc||_F)``, in
    O(n·d²) time, never forming n x n matrices; the debiased value uses the streaming statistics.

    Shape:
        - x: (n, d_x); y: (n, d_y) (tensors or arrays; 1-D means one feature).

    Raises:
        ValueError: different n, n < 2 (biased) or n < 4 (debiased), non-finite values, or a constant
            representation.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(100, 8))
        >>> q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
        >>> round(linear_cka(x, 3.0 * x @ q), 12)  # invariant to rotation and isotropic scaling
        1.0
    """
    xa, ya = _as_rows("x", x), _as_rows("y", y)
    stats = StreamingLinearCKA(debiased=debiased)
    stats.update(xa, ya)
    return stats.compute()


def rbf_kernel(x: ArrayLike, *, sigma: float | None = None, sigma_scale: float = 1.0) -> F64:
    """Gaussian kernel ``exp(-||x_i - x_j||² / (2σ²))``; σ defaults to ``sigma_scale`` times the median
    pairwise distance (the median heuristic; Kornblith et al. use fractions of it)."""
    xa = _as_rows("x", x)
    sq = np.sum(xa**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * xa @ xa.T, 0.0)  # (n, n) squared distances
    if sigma is None:
        off_diag = d2[~np.eye(d2.shape[0], dtype=bool)]
        positive = off_diag[off_diag > 0]
        if positive.size == 0:
            raise ValueError("rbf_kernel: all rows are identical; the median heuristic has no distance")
        sigma = sigma_scale * float(np.sqrt(np.median(positive)))
    gram: F64 = np.exp(-d2 / (2.0 * sigma**2))
    return gram


def rbf_cka(x: ArrayLike, y: ArrayLike, *, debiased: bool = False, sigma_scale: float = 1.0) -> float:
    """CKA with Gaussian kernels, bandwidths by the median heuristic on each representation.

    Shape:
        - x: (n, d_x); y: (n, d_y). Memory O(n²).
    """
    xa, ya = _as_rows("x", x), _as_rows("y", y)
    _check_pair(xa, ya, 4 if debiased else 2, "debiased" if debiased else "biased")
    kx, ky = rbf_kernel(xa, sigma_scale=sigma_scale), rbf_kernel(ya, sigma_scale=sigma_scale)
    return cka(kx, ky, debiased=debiased)


@dataclass
class _Moments:
    """Running float64 sums over rows for one pair of representations."""

    n: int
    sx: F64  # Σ x          (d_x,)
    sy: F64  # Σ y          (d_y,)
    cxy: F64  # Σ x yᵀ       (d_x, d_y)
    cxx: F64  # Σ x xᵀ       (d_x, d_x)
    cyy: F64  # Σ y yᵀ       (d_y, d_y)
    qx: float  # Σ |x|²
    qy: float  # Σ |y|²
    qxx: float  # Σ |x|⁴
    qyy: float  # Σ |y|⁴
    qxy: float  # Σ |x|²|y|²
    x_by_qx: F64  # Σ |x|² x
    y_by_qy: F64  # Σ |y|² y
    x_by_qy: F64  # Σ |y|² x
    y_by_qx: F64  # Σ |x|² y


class StreamingLinearCKA:
    """Linear CKA accumulated over batches of rows: ``reset`` / ``update`` / ``compute``, plus ``merge``.

    All statistics are float64 sums, so the result equals :func:`linear_cka` on the concatenated rows for
    any batch split (up to float64 rounding), and two accumulators over disjoint rows merge exactly
    (e.g. across processes). Memory O(d_x · d_y + d_x² + d_y²), independent of n.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
        >>> stream = StreamingLinearCKA()
        >>> for i in range(0, 50, 16):
        ...     stream.update(x[i : i + 16], y[i : i + 16])
        >>> bool(np.isclose(stream.compute(), linear_cka(x, y)))
        True
    """

    def __init__(self, *, debiased: bool = False) -> None:
        self.debiased = debiased
        self._m: _Moments | None = None

    def reset(self) -> None:
        self._m = None

    def update(self, x: ArrayLike, y: ArrayLike) -> None:
        """Adds a batch of rows (the same inputs in both representations)."""
        xa, ya = _as_rows("x", x), _as_rows("y", y)
        if xa.shape[0] != ya.shape[0]:
            raise ValueError(f"x and y batches must have the same rows: {xa.shape[0]} vs {ya.shape[0]}")
        nx, ny = np.sum(xa**2, axis=1), np.sum(ya**2, axis=1)  # (b,)
        batch = _Moments(
            n=xa.shape[0],
            sx=xa.sum(axis=0),
            sy=ya.sum(axis=0),
            cxy=xa.T @ ya,  # (d_x, d_y)
            cxx=xa.T @ xa,
            cyy=ya.T @ ya,
            qx=float(nx.sum()),
            qy=float(ny.sum()),
            qxx=float((nx**2).sum()),
            qyy=float((ny**2).sum()),
            qxy=float((nx * ny).sum()),
            x_by_qx=nx @ xa,
            y_by_qy=ny @ ya,
            x_by_qy=ny @ xa,
            y_by_qx=nx @ ya,
        )
        shapes = (batch.sx.shape, batch.sy.shape)
        if self._m is not None and (self._m.sx.shape, self._m.sy.shape) != shapes:
            raise ValueError(
                f"feature dimensions changed between batches: {self._m.sx.shape[0]}x{self._m.sy.shape[0]} "
                f"then {batch.sx.shape[0]}x{batch.sy.shape[0]}"
            )
        self._m = batch if self._m is None else _add(self._m, batch)

    def merge(self, other: StreamingLinearCKA) -> None:
        """Adds the statistics of another accumulator over disjoint rows."""
        if other._m is not None:
            self._m = other._m if self._m is None else _add(self._m, other._m)

    def compute(self) -> float:
        """The CKA of all rows seen so far.

        Raises:
            ValueError: fewer rows than the estimator needs (2 biased, 4 debiased), or a constant
                representation.
        """
        m = self._m
        minimum = 4 if self.debiased else 2
        if m is None or m.n < minimum:
            seen = 0 if m is None else m.n
            kind = "debiased" if self.debiased else "biased"
            raise ValueError(f"{kind} CKA needs at least {minimum} samples, got {seen}")
        if not self.debiased:
            n = m.n
            cov_xy = m.cxy - np.outer(m.sx, m.sy) / n  # Xcᵀ Yc
            cov_xx = m.cxx - np.outer(m.sx, m.sx) / n
            cov_yy = m.cyy - np.outer(m.sy, m.sy) / n
            return _ratio(float(np.sum(cov_xy**2)), float(np.sum(cov_xx**2)), float(np.sum(cov_yy**2)))
        # Song et al.'s four terms per kernel pair, from sums over rows (K = XXᵀ, L = YYᵀ, zero diagonals):
        # tr(K̃L̃) = |XᵀY|² - Σ|x|²|y|²;  1ᵀK̃1 = |Σx|² - Σ|x|²;
        # 1ᵀK̃L̃1 = Σxᵀ(ΣxyᵀΣ)Σy - Σx·Σ(|y|²x) - Σy·Σ(|x|²y) + Σ|x|²|y|².
        sum_kx = float(m.sx @ m.sx) - m.qx
        sum_ky = float(m.sy @ m.sy) - m.qy
        k1l1_xy = float(m.sx @ m.cxy @ m.sy - m.sx @ m.x_by_qy - m.sy @ m.y_by_qx) + m.qxy
        k1l1_xx = float(m.sx @ m.cxx @ m.sx - 2 * m.sx @ m.x_by_qx) + m.qxx
        k1l1_yy = float(m.sy @ m.cyy @ m.sy - 2 * m.sy @ m.y_by_qy) + m.qyy
        hsic_xy = _unbiased_hsic(m.n, float(np.sum(m.cxy**2)) - m.qxy, sum_kx, sum_ky, k1l1_xy)
        hsic_xx = _unbiased_hsic(m.n, float(np.sum(m.cxx**2)) - m.qxx, sum_kx, sum_kx, k1l1_xx)
        hsic_yy = _unbiased_hsic(m.n, float(np.sum(m.cyy**2)) - m.qyy, sum_ky, sum_ky, k1l1_yy)
        return _ratio(hsic_xy, hsic_xx, hsic_yy)


def _unbiased_hsic(n: int, tr_kl: float, sum_k: float, sum_l: float, k1_l1: float) -> float:
    """Song et al. 2012, Eq. 5, from tr(K̃L̃), 1ᵀK̃1, 1ᵀL̃1 and 1ᵀK̃L̃1 (K̃, L̃: zero diagonal)."""
    return float((tr_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * k1_l1 / (n - 2)) / (n * (n - 3)))


def _add(a: _Moments, b: _Moments) -> _Moments:
    return _Moments(**{f: getattr(a, f) + getattr(b, f) for f in a.__dataclass_fields__})


def bootstrap_cka(
    x: ArrayLike,
    y: ArrayLike,
    *,
    kernel: Literal["linear", "rbf"] = "linear",
    debiased: bool = False,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """CKA with a percentile bootstrap interval over rows (resampled with replacement, seeded).

    Returns:
        (cka on all rows, lower, upper).
    """
    xa, ya = _as_rows("x", x), _as_rows("y", y)
    fn = linear_cka if kernel == "linear" else rbf_cka
    point = fn(xa, ya, debiased=debiased)
    rng = np.random.default_rng(seed)
    n = xa.shape[0]
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        try:
            draws.append(fn(xa[idx], ya[idx], debiased=debiased))
        except ValueError:  # a resample of identical rows: skip it, it has no defined CKA
            continue
    if not draws:
        raise ValueError("bootstrap_cka: no resample had a defined CKA")
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(draws, [alpha, 1.0 - alpha])
    return point, float(lower), float(upper)
