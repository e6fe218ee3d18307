"""Did the contrastive term help? A paired comparison over seeds, and a verdict in words.

Each seed gives one baseline value and one treatment value of a metric, from runs that share the split and
the initial weights, so the per-seed *differences* carry the effect and the seed-to-seed noise cancels.
For those differences:

- the mean difference and a 95% interval from the *expanded percentile* bootstrap (Hesterberg, "What
  teachers should know about the bootstrap", Am. Stat. 2015): percentiles of resampled means at the
  tail level 2·Φ(-sqrt(n/(n-1)) · t_{1-α/2, n-1}) instead of α. With 5-10 seeds the plain percentile
  interval covers the truth only 84-89% of the time; the expanded one about 92-95% (simulated in the
  tests). The studentized bootstrap covers slightly better on normal data but explodes when differences
  tie (accuracy over a few hundred test samples moves in steps): it gave [-0.008, +2070] for a
  +2e-8 accuracy difference. The expanded percentile interval never leaves the range of the differences;
- a paired t-test (two-sided);
- the verdict: "helped" or "hurt" when the test rejects at ``alpha`` (direction by whether higher is
  better), otherwise "no detectable effect", together with the smallest effect these seeds could have
  detected: (t_{1-α/2} + t_{power}) · sd / sqrt(n), the minimum detectable effect of a paired t-test.

Many metrics at once: a verdict tests every task metric and every diagnostic, and at α = 0.05 one of ten
null metrics comes out "significant" about 40% of the time. :func:`holm_adjust` applies Holm's step-down
correction within a family of metrics (Holm 1979; it controls the family-wise error rate under any
dependence between the metrics, which are strongly correlated here), and :func:`adjust_family` re-calls
the verdicts on the adjusted p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = ["PairedComparison", "adjust_family", "holm_adjust", "paired_comparison"]

Verdict = Literal["helped", "hurt", "no detectable effect", "increased", "decreased"]


@dataclass(frozen=True)
class PairedComparison:
    metric: str
    higher_is_better: bool | None  # None: a diagnostic with no better direction (e.g. uniformity)
    baseline: list[float]
    treatment: list[float]
    differences: list[float]  # treatment - baseline, per seed
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    t_statistic: float
    p_value: float
    minimum_detectable_effect: float
    verdict: Verdict
    p_adjusted: float | None = None  # Holm-adjusted within its family, when one was applied
    family: str | None = None

    @property
    def n(self) -> int:
        return len(self.differences)

    def sentence(self) -> str:
        """The verdict as one line a person reads first."""
        effect = (
            f"{self.mean_difference:+.4g} {self.metric} (treatment - baseline; "
            f"{self.confidence:.0%} CI {self.ci_low:+.4g} to {self.ci_high:+.4g}, "
            f"paired t-test p={self.p_value:.3g}"
            + (f", Holm-adjusted over the {self.family} metrics p={self.p_adjusted:.3g}"
               if self.p_adjusted is not None else "")
            + f", {self.n} seeds)"
        )  # fmt: skip
        if self.verdict == "no detectable effect":
            return (
                f"no detectable effect: {effect}; with these seeds only effects of about "
                f"±{self.minimum_detectable_effect:.3g} or larger were detectable (80% power)"
            )
        return f"{self.verdict}: {effect}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": self.n, "sentence": self.sentence()}


def paired_comparison(
    baseline: Sequence[float],
    treatment: Sequence[float],
    *,
    metric: str = "metric",
    higher_is_better: bool | None = True,
    alpha: float = 0.05,
    power: float = 0.8,
    confidence: float = 0.95,
    n_boot: int = 4000,
    seed: int = 0,
) -> PairedComparison:
    """Compares paired per-seed values of one metric.

    Args:
        baseline: The metric of the baseline arm, one value per seed.
        treatment: The same metric of the treatment arm, same seeds in the same order.
        metric: Its name, for the sentence.
        higher_is_better: Accuracy: True; loss, MAE: False; None for a quantity with no better direction,
            whose significant changes are called "increased" / "decreased" instead of helped / hurt.
        alpha: Significance level of the paired t-test.
        power: Power at which the minimum detectable effect is stated.
        confidence: Level of the bootstrap interval.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.

    Raises:
        ValueError: fewer than 2 pairs, unequal lengths, or non-finite values.

    Example:
        >>> result = paired_comparison([0.80, 0.82, 0.79, 0.81, 0.80], [0.84, 0.85, 0.83, 0.86, 0.84],
        ...                            metric="accuracy")
        >>> result.verdict
        'helped'
    """
    b, t = np.asarray(baseline, dtype=np.float64), np.asarray(treatment, dtype=np.float64)
    if b.shape != t.shape or b.ndim != 1:
        raise ValueError(f"baseline and treatment must be equal-length lists, got {b.shape} and {t.shape}")
    if b.shape[0] < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds, got {b.shape[0]}")
    if not (np.isfinite(b).all() and np.isfinite(t).all()):
        raise ValueError("baseline and treatment must be finite (a diverged run? check its history)")
    d = t - b
    n, mean, sd = d.shape[0], float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    if float(np.ptp(d)) > 1e-6 * abs(mean):
        t_stat = mean / se
        p_value = float(2 * stats.t.sf(abs(t_stat), df=n - 1))
    else:
        # Every seed moved by the same amount (up to float noise): typical of a discrete metric (one test
        # sample more or less) over few seeds. The t-test is undefined there (its p would be ~0 from the
        # noise alone); the exact sign-flip test is not: all n signs alike has p = 2 / 2^n.
        t_stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p_value = 1.0 if mean == 0 else min(1.0, 2.0 / 2**n)
        se = 0.0
    low, high = _expanded_percentile(d, confidence=confidence, n_boot=n_boot, seed=seed)
    mde = float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * se)
    return PairedComparison(
        metric=metric,
        higher_is_better=higher_is_better,
        baseline=b.tolist(),
        treatment=t.tolist(),
        differences=d.tolist(),
        mean_difference=mean,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        t_statistic=float(t_stat),
        p_value=p_value,
        minimum_detectable_effect=mde,
        verdict=_call(mean, p_value, alpha, higher_is_better),
    )


def _call(mean: float, p_value: float, alpha: float, higher_is_better: bool | None) -> Verdict:
    if p_value >= alpha or mean == 0:
        return "no detectable effect"
    if higher_is_better is None:
        return "increased" if mean > 0 else "decreased"
    return "helped" if (mean > 0) == higher_is_better else "hurt"


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    The i-th smallest p (1-based) is multiplied by m - i + 1, made non-decreasing, and capped at 1; a
    metric is significant at α after adjustment exactly when Holm's procedure rejects it at α.

    Example:
        >>> [round(p, 4) for p in holm_adjust([0.01, 0.04, 0.03, 0.5])]
        [0.04, 0.09, 0.09, 0.5]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise ValueError(f"p_values must be a list of probabilities in [0, 1], got {p_values!r}")
    m = p.shape[0]
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))  # (m,) p_(i) · (m - i + 1)
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def adjust_family(
    comparisons: Sequence[PairedComparison], *, family: str, alpha: float = 0.05
) -> list[PairedComparison]:
    """The comparisons with Holm-adjusted p-values and their verdicts re-called at ``alpha``."""
    adjusted = holm_adjust([c.p_value for c in comparisons])
    return [
        replace(c, p_adjusted=a, family=family,
                verdict=_call(c.mean_difference, a, alpha, c.higher_is_better))
        for c, a in zip(comparisons, adjusted, strict=True)
    ]  # fmt: skip


def _expanded_percentile(d: np.ndarray, *, confidence: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Hesterberg's expanded-percentile bootstrap interval for the mean of ``d``."""
    n = d.shape[0]
    if float(d.std()) == 0.0:
        return float(d[0]), float(d[0])
    tail = float(stats.norm.cdf(-math.sqrt(n / (n - 1)) * stats.t.ppf((1 + confidence) / 2, n - 1)))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)  # (B,)
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)
