"""Comparisons of whole score distributions, beyond the paired test of a mean: the probability of
improvement (rliable; Agarwal et al. 2021), Almost Stochastic Order (Dror et al. 2019, via deepsig) and
rliable's aggregate view over several recipes (the interquartile mean of normalised differences, with
stratified bootstrap intervals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ASO_THRESHOLD", "Aggregate", "Interval", "aggregate", "almost_stochastic_order",
           "improvement_share", "iqm", "probability_of_improvement"]  # fmt: skip

#: ε_min below this: the treatment is almost stochastically better (deepsig's recommended threshold).
ASO_THRESHOLD = 0.2


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval."""

    estimate: float
    low: float
    high: float


def probability_of_improvement(
    baseline: Sequence[float],
    treatment: Sequence[float],
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """P(treatment better than baseline): over every (treatment run, baseline run) pair, the share in which
    the treatment is better, ties counting half (the Mann-Whitney U statistic over n·m, rliable's
    probability of improvement), with a percentile bootstrap interval that resamples each arm's seeds.

    Returns:
        (estimate, low, high).

    Example:
        >>> probability_of_improvement([0.1, 0.2, 0.3], [0.25, 0.35, 0.45])[0]
        0.8888888888888888
    """
    b, t = np.asarray(baseline, dtype=np.float64), np.asarray(treatment, dtype=np.float64)
    if b.ndim != 1 or t.ndim != 1 or b.size < 1 or t.size < 1:
        raise ValueError("baseline and treatment must be non-empty lists of values")
    estimate = float(improvement_share(b, t, higher_is_better))
    rng = np.random.default_rng(seed)
    resampled = b[rng.integers(0, b.size, (n_boot, b.size))], t[rng.integers(0, t.size, (n_boot, t.size))]
    boot = improvement_share(*resampled, higher_is_better)
    tail = (1 - confidence) / 2
    return estimate, float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))


def improvement_share(baseline: np.ndarray, treatment: np.ndarray,
                      higher_is_better: bool = True) -> np.ndarray:  # fmt: skip
    """The share of (treatment run, baseline run) pairs in which the treatment is better, ties counting half.

    Shape:
        - baseline: (..., m); treatment: (..., n) (leading dimensions broadcast); returns (...).
    """
    diff = (treatment[..., :, None] - baseline[..., None, :]) * (1.0 if higher_is_better else -1.0)
    wins: np.ndarray = ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1))
    return wins


def almost_stochastic_order(
    baseline: Sequence[float], treatment: Sequence[float], *, higher_is_better: bool = True, seed: int = 0,
    confidence: float = 0.95, num_comparisons: int = 1,
) -> float:  # fmt: skip
    """ε_min of "the treatment stochastically dominates the baseline" (Dror et al. 2019, via deepsig):
    0 is total dominance, 0.5 none; below :data:`ASO_THRESHOLD` the treatment is almost stochastically
    better. ``num_comparisons`` applies deepsig's Bonferroni correction. Identical score distributions
    (nothing to order) give 0.5."""
    import warnings

    from deepsig import aso

    sign = 1.0 if higher_is_better else -1.0
    t = (sign * np.asarray(treatment, dtype=np.float64)).tolist()
    b = (sign * np.asarray(baseline, dtype=np.float64)).tolist()
    with warnings.catch_warnings():  # identical distributions: deepsig warns of 0/0 and returns 0.5
        warnings.filterwarnings("ignore", message="Division by zero encountered in violation ratio")
        return float(aso(t, b, confidence_level=confidence, num_comparisons=num_comparisons,
                         num_bootstrap_iterations=500, show_progress=False, seed=seed))  # fmt: skip


def iqm(values: np.ndarray) -> float:
    """The interquartile mean: the mean of the middle 50% of the values (rliable; scipy's trim_mean 0.25).

    Example:
        >>> iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 1.5, 2.5]))
        1.75
    """
    from scipy.stats import trim_mean

    return float(trim_mean(values, 0.25))


@dataclass(frozen=True)
class Aggregate:
    """rliable's aggregate view of one metric over several recipes."""

    iqm_normalised_difference: Interval
    probability_of_improvement: Interval
    recipes: int
    note: str = ("differences as a share of each recipe's baseline mean, positive = better; intervals: "
                 "stratified bootstrap (seeds within recipes), 95%")  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregate:
        return cls(iqm_normalised_difference=Interval(**data["iqm_normalised_difference"]),
                   probability_of_improvement=Interval(**data["probability_of_improvement"]),
                   recipes=data["recipes"], note=data.get("note", cls.note))  # fmt: skip


def _normalised(baseline: np.ndarray, differences: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """A recipe's per-seed differences as a share of its baseline mean, positive = better."""
    scale = abs(float(np.mean(baseline))) or 1.0
    return (1.0 if higher_is_better else -1.0) * differences / scale


def aggregate(arms: Sequence[tuple[Sequence[float], Sequence[float], bool | None]], *, seed: int = 0,
              n_boot: int = 2000) -> Aggregate:  # fmt: skip
    """The IQM of every recipe's per-seed differences (as a share of its baseline mean, positive = better)
    and the probability of improvement averaged over recipes, each with a stratified bootstrap interval
    (seeds resampled within each recipe).

    Args:
        arms: Per recipe: its baseline values, its treatment values (paired by seed) and whether higher is
            better (None: no direction, taken as higher).
    """
    rng = np.random.default_rng(seed)
    pairs = [(np.asarray(b, dtype=np.float64), np.asarray(t, dtype=np.float64), better is not False)
             for b, t, better in arms]  # fmt: skip
    diffs = [_normalised(b, t - b, better) for b, t, better in pairs]
    shares = [float(improvement_share(b, t, better)) for b, t, better in pairs]
    boot_iqm, boot_poi = np.empty(n_boot), np.empty(n_boot)
    for k in range(n_boot):  # stratified: each recipe's seeds resampled within it
        picks = [rng.integers(0, d.size, d.size) for d in diffs]
        boot_iqm[k] = iqm(np.concatenate([d[i] for d, i in zip(diffs, picks, strict=True)]))
        boot_poi[k] = float(np.mean([float(improvement_share(b[i], t[i], better))
                                     for (b, t, better), i in zip(pairs, picks, strict=True)]))  # fmt: skip

    def interval(estimate: float, boot: np.ndarray) -> Interval:
        return Interval(estimate, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)))

    return Aggregate(iqm_normalised_difference=interval(iqm(np.concatenate(diffs)), boot_iqm),
                     probability_of_improvement=interval(float(np.mean(shares)), boot_poi),
                     recipes=len(pairs))  # fmt: skip
