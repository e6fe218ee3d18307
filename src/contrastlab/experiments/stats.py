"""Paired statistics for a verdict: did the contrastive term help, seed by seed, in numbers and in words.

Each seed gives one baseline value and one treatment value of a metric, from runs that share the split and
the initial weights, so the per-seed *differences* carry the effect and the seed-to-seed noise cancels.
For those differences:

- the mean difference and its 95% t-interval, ``mean ± t_{1-α/2, n-1} · sd / sqrt(n)``, the interval of the
  paired t-test itself: it excludes 0 exactly when the test rejects, at every n, so the interval and the
  call never disagree. (A bootstrap interval, used before, can exclude 0 at 2-3 seeds while the test does
  not reject: CI +0.0013 to +0.0018 with p = 0.10.) When every seed moved by the same amount the t-test is
  undefined and the exact sign-flip test is used; its interval, inverted from that test, is the single
  value when n >= 6 and unbounded below that (no 2-5 tied seeds can bound an effect);
- a paired t-test (two-sided);
- the verdict: "helped" or "hurt" when the test rejects at ``alpha`` (direction by whether higher is
  better), otherwise "no detectable effect", together with the smallest effect these seeds could have
  detected: (t_{1-α/2} + t_{power}) · sd / sqrt(n), the minimum detectable effect of a paired t-test.
  Fewer than :data:`WEAK_BELOW` seeds make a weak verdict, and its sentence says so.

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

__all__ = ["WEAK_BELOW", "PairedComparison", "adjust_family", "holm_adjust", "paired_comparison"]

#: A verdict from fewer seeds is called weak in its sentence (its interval is wide and its power low).
WEAK_BELOW = 5

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
        bounded = math.isfinite(self.ci_low) and math.isfinite(self.ci_high)
        interval = (f"{self.confidence:.0%} CI {self.ci_low:+.4g} to {self.ci_high:+.4g}" if bounded else
                    f"{self.confidence:.0%} CI unbounded: every seed moved by the same amount")  # fmt: skip
        effect = (
            f"{self.mean_difference:+.4g} {self.metric} (treatment - baseline; {interval}, "
            f"{'paired t-test' if bounded or self.n >= 6 else 'exact sign-flip test'} p={self.p_value:.3g}"
            + (f", Holm-adjusted over the {self.family} metrics p={self.p_adjusted:.3g}"
               if self.p_adjusted is not None else "")
            + f", {self.n} seeds)"
        )  # fmt: skip
        if self.verdict == "no detectable effect":
            text = (
                f"no detectable effect: {effect}; with these seeds only effects of about "
                f"±{self.minimum_detectable_effect:.3g} or larger were detectable (80% power)"
            )
            if self.p_adjusted is not None and self.p_value < 0.05 <= self.p_adjusted:
                text += "; the interval excludes 0 before, not after, the correction for many metrics"
        else:
            text = f"{self.verdict}: {effect}"
        if self.n < WEAK_BELOW:
            text += f". A weak verdict: {self.n} seeds (use {WEAK_BELOW} or more)"
        return text

    def call(self) -> str:
        """The verdict with what qualifies it: "no detectable effect after Holm" when the interval excludes 0
        (the test rejects before the correction for many metrics) but not after it."""
        if self.p_adjusted is not None and self.p_value < 0.05 <= self.p_adjusted:
            return f"{self.verdict} after Holm"
        return self.verdict

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: an unbounded interval end is None."""
        out = {**asdict(self), "n": self.n, "sentence": self.sentence(), "call": self.call()}
        for key in ("ci_low", "ci_high", "minimum_detectable_effect", "t_statistic"):
            if not math.isfinite(out[key]):
                out[key] = None
        return out


def paired_comparison(
    baseline: Sequence[float],
    treatment: Sequence[float],
    *,
    metric: str = "metric",
    higher_is_better: bool | None = True,
    alpha: float = 0.05,
    power: float = 0.8,
    confidence: float = 0.95,
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
        confidence: Level of the interval (1 - alpha keeps it in step with the call).

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
    t_crit = float(stats.t.ppf((1 + confidence) / 2, n - 1))
    if float(np.ptp(d)) > 1e-6 * abs(mean):
        t_stat = mean / se
        p_value = float(2 * stats.t.sf(abs(t_stat), df=n - 1))
        low, high = mean - t_crit * se, mean + t_crit * se
    else:
        # Every seed moved by the same amount (up to float noise): typical of a discrete metric (one test
        # sample more or less) over few seeds. The t-test is undefined there (its p would be ~0 from the
        # noise alone); the exact sign-flip test is not: all n signs alike has p = 2 / 2^n. Inverted, it
        # rejects every other value of the mean when 2 / 2^n < 1 - confidence, and none otherwise.
        t_stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p_value = 1.0 if mean == 0 else min(1.0, 2.0 / 2**n)
        se = 0.0
        low, high = (mean, mean) if 2.0 / 2**n < 1 - confidence else (-math.inf, math.inf)
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
