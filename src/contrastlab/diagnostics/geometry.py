"""The geometry of an embedding: alignment, uniformity, rank, collapse and class structure.

All functions take (n, d) arrays or tensors and compute in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from contrastlab.diagnostics.cka import _as_rows

__all__ = [
    "StreamingMoments",
    "alignment",
    "class_cosine",
    "collapse_std",
    "effective_rank",
    "feature_norms",
    "rankme",
    "uniformity",
]

F64 = NDArray[np.float64]


def _unit(x: F64) -> F64:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("features contain an all-zero row, which has no direction")
    unit: F64 = x / norms
    return unit


def alignment(x: ArrayLike, y: ArrayLike, *, alpha: float = 2.0) -> float:
    """Wang & Isola, ICML 2020, Eq. 4: ``E ||f(x) - f(y)||^α`` over positive pairs of unit vectors.

    0 means positives coincide; the maximum, 2^α, means they are antipodal.

    Shape:
        - x, y: (n, d), row i of each a positive pair.
    """
    xa, ya = _unit(_as_rows("x", x)), _unit(_as_rows("y", y))
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must pair row by row, got shapes {xa.shape} and {ya.shape}")
    return float(np.mean(np.linalg.norm(xa - ya, axis=1) ** alpha))


def uniformity(x: ArrayLike, *, t: float = 2.0) -> float:
    """Wang & Isola, ICML 2020, Eq. 5: ``log E_{i<j} exp(-t ||f(x_i) - f(x_j)||²)`` over distinct pairs.

    Computed with a log-sum-exp over the n(n-1)/2 pairs, so it stays finite for small batches and large t
    (a plain mean of exponentials underflows to log 0 = -inf). Lower is more uniform; on the unit sphere
    it is bounded below by -4t (all pairs antipodal) and above by 0 (collapse).

    Raises:
        ValueError: fewer than 2 rows.

    Example:
        >>> round(uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]]), t=2.0), 6)  # one antipodal pair: -2·4
        -8.0
    """
    xa = _unit(_as_rows("x", x))
    n = xa.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 samples, got {n}")
    sq = np.maximum(2.0 - 2.0 * xa @ xa.T, 0.0)  # (n, n) squared distances on the sphere
    iu = np.triu_indices(n, k=1)
    values = -t * sq[iu]
    top = values.max()
    return float(top + math.log(np.exp(values - top).sum()) - math.log(values.size))  # log-mean-exp


def _singular_values(x: F64, center: bool) -> F64:
    xa = x - x.mean(axis=0, keepdims=True) if center else x
    return np.asarray(np.linalg.svd(xa, compute_uv=False), dtype=np.float64)


def rankme(x: ArrayLike, *, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al., ICML 2023): ``exp(-Σ_k p_k log p_k)``, ``p_k = σ_k / Σ_j σ_j + eps``, with
    σ the singular values of the (uncentered) embedding matrix. Between 1 (rank one) and min(n, d).

    Example:
        >>> round(rankme(np.eye(4)), 3)  # four equal singular values
        4.0
    """
    s = _singular_values(_as_rows("x", x), center=False)
    p = s / s.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def effective_rank(x: ArrayLike) -> float:
    """Effective rank (Roy & Vetterli, 2007) of the *centered* features: ``exp(H(p))`` with
    ``p_k = σ_k / Σ_j σ_j`` over the nonzero singular values σ of ``X - mean(X)``.

    Differs from :func:`rankme` in centering (it ignores a shared offset) and in having no eps.
    """
    s = _singular_values(_as_rows("x", x), center=True)
    s = s[s > s.max() * 1e-12] if s.size and s.max() > 0 else s[:0]
    if s.size == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def collapse_std(x: ArrayLike) -> float:
    """Mean over dimensions of the standard deviation of L2-normalised features.

    Near 0 means collapse (all embeddings point the same way); for features spread uniformly on the
    d-dimensional sphere it approaches 1/sqrt(d) (SimSiam's collapse monitor, Chen & He, CVPR 2021).
    """
    return float(np.mean(np.std(_unit(_as_rows("x", x)), axis=0)))


def class_cosine(x: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Mean cosine similarity within classes (distinct pairs) and between classes, and their gap.

    Returns:
        {"intra": ..., "inter": ..., "gap": intra - inter}; classes of one sample add no intra pair.
    """
    xa = _unit(_as_rows("x", x))
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != xa.shape[0]:
        raise ValueError(f"labels must have one entry per row: {y.shape[0]} labels for {xa.shape[0]} rows")
    sims = xa @ xa.T
    same = y[:, None] == y[None, :]
    off = ~np.eye(len(y), dtype=bool)
    intra_mask, inter_mask = same & off, ~same
    if not intra_mask.any() or not inter_mask.any():
        raise ValueError("class_cosine needs at least two classes and one class with two samples")
    intra, inter = float(sims[intra_mask].mean()), float(sims[inter_mask].mean())
    return {"intra": intra, "inter": inter, "gap": intra - inter}


def feature_norms(x: ArrayLike) -> dict[str, float]:
    """Mean, std, min and max of the row norms (before any normalisation)."""
    norms = np.linalg.norm(_as_rows("x", x), axis=1)
    return {"mean": float(norms.mean()), "std": float(norms.std()), "min": float(norms.min()),
            "max": float(norms.max())}  # fmt: skip


class StreamingMoments:
    """Row-norm statistics and the collapse std over batches (``reset``/``update``/``compute``/``merge``).

    Per-dimension means and variances of the L2-normalised rows, and of the row norms, combine with Chan
    et al.'s parallel update in float64, so the result equals :func:`collapse_std` and
    :func:`feature_norms` (mean, std) on the concatenated rows for any split.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(30, 4))
        >>> stream = StreamingMoments()
        >>> stream.update(x[:7])
        >>> stream.update(x[7:])
        >>> bool(np.isclose(stream.compute()["collapse_std"], collapse_std(x)))
        True
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self._mean: F64 | None = None  # of unit rows, per dimension
        self._m2: F64 | None = None
        self._norm_mean = 0.0
        self._norm_m2 = 0.0
        self._norm_min = math.inf
        self._norm_max = -math.inf

    def update(self, x: ArrayLike) -> None:
        xa = _as_rows("x", x)
        norms = np.linalg.norm(xa, axis=1)
        unit = _unit(xa)
        self._merge(xa.shape[0], unit.mean(axis=0), ((unit - unit.mean(axis=0)) ** 2).sum(axis=0),
                    float(norms.mean()), float(((norms - norms.mean()) ** 2).sum()),
                    float(norms.min()), float(norms.max()))  # fmt: skip

    def merge(self, other: StreamingMoments) -> None:
        if other.n and other._mean is not None and other._m2 is not None:
            self._merge(other.n, other._mean, other._m2, other._norm_mean, other._norm_m2,
                        other._norm_min, other._norm_max)  # fmt: skip

    def _merge(
        self, n: int, mean: F64, m2: F64, norm_mean: float, norm_m2: float, norm_min: float, norm_max: float
    ) -> None:
        if self.n == 0 or self._mean is None or self._m2 is None:
            self.n, self._mean, self._m2 = n, mean.copy(), m2.copy()
            self._norm_mean, self._norm_m2 = norm_mean, norm_m2
        else:
            total = self.n + n
            delta = mean - self._mean
            self._m2 = self._m2 + m2 + delta**2 * self.n * n / total
            self._mean = self._mean + delta * n / total
            norm_delta = norm_mean - self._norm_mean
            self._norm_m2 += norm_m2 + norm_delta**2 * self.n * n / total
            self._norm_mean += norm_delta * n / total
            self.n = total
        self._norm_min = min(self._norm_min, norm_min)
        self._norm_max = max(self._norm_max, norm_max)

    def compute(self) -> dict[str, float]:
        if self.n == 0 or self._m2 is None:
            raise ValueError("StreamingMoments.compute() before any update")
        return {
            "collapse_std": float(np.mean(np.sqrt(self._m2 / self.n))),
            "norm_mean": self._norm_mean,
            "norm_std": math.sqrt(self._norm_m2 / self.n),
            "norm_min": self._norm_min,
            "norm_max": self._norm_max,
        }
