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

Beyond the t-test:

- equivalence: with the smallest effect that matters, δ, two one-sided tests (TOST; Schuirmann 1987) call
  "equivalent" when the (1 - 2α) t-interval lies inside ±δ: no effect larger than δ, which is what lets a
  user stop trying. With δ the words are helped / hurt / equivalent / inconclusive; a significant
  difference smaller than δ is "equivalent" (its sentence says it is real but smaller than δ);
- the probability of improvement P(treatment better than baseline), over every pair of seeds as in rliable
  (Agarwal et al. 2021), with a percentile bootstrap interval over seeds, and Almost Stochastic Order (Dror
  et al. 2019): ε_min, with no normality assumption (both in :mod:`contrastlab.experiments.dominance`);
- planning: how many seeds a paired t-test needs to detect δ at 80% power, from the observed spread;
- sequential seeds (:class:`SequentialPlan`): seed pairs are added until the call is decided or a budget is
  spent; each of the K planned looks tests at α/K (Bonferroni's inequality over the looks), so stopping at
  the first decided look keeps every false call at most α overall. It is conservative next to
  group-sequential boundaries (Pocock 1977) but exact in what it promises, at any K.

Many metrics at once: a verdict tests every task metric and every diagnostic, and at α = 0.05 one of ten
null metrics comes out "significant" about 40% of the time. :func:`holm_adjust` applies Holm's step-down
correction within a family of metrics (Holm 1979; it controls the family-wise error rate under any
dependence between the metrics, which are strongly correlated here), and :func:`adjust_family` re-calls
the verdicts on the adjusted p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import numpy as np
from scipy import stats

from contrastlab.experiments.dominance import Interval, almost_stochastic_order, probability_of_improvement
from contrastlab.metrics import direction

__all__ = [
    "WEAK_BELOW",
    "Call",
    "Interval",
    "PairedComparison",
    "SequentialPlan",
    "adjust_family",
    "compare_arms",
    "holm_adjust",
    "paired_comparison",
    "percent",
    "seeds_needed",
]

#: A verdict from fewer seeds is called weak in its sentence (its interval is wide and its power low).
WEAK_BELOW = 5

#: What a comparison concludes of one metric.
Call = Literal[
    "helped", "hurt", "no detectable effect", "increased", "decreased", "equivalent", "inconclusive"
]


def percent(level: float) -> str:
    """A confidence level as people write it: 0.95 -> "95%", 0.995 -> "99.5%".

    Example:
        >>> percent(0.95), percent(0.995), percent(0.99)
        ('95%', '99.5%', '99%')
    """
    return f"{level * 100:.3f}".rstrip("0").rstrip(".") + "%"


@dataclass(frozen=True)
class PairedComparison:
    """One metric's paired comparison: both arms' values per seed, the difference, its interval, the tests
    and the call. :meth:`to_dict` is what verdict.json holds of it, :meth:`from_dict` reads that back."""

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
    verdict: Call
    p_adjusted: float | None = None  # Holm-adjusted within its family, when one was applied
    family: str | None = None
    #: Equivalence (TOST), with the smallest effect that matters: δ, the larger one-sided p, its interval.
    smallest_effect: float | None = None
    p_equivalence: float | None = None
    p_equivalence_adjusted: float | None = None
    equivalence_low: float | None = None
    equivalence_high: float | None = None
    alpha: float = 0.05
    #: P(treatment better than baseline) over every pair of runs, with its bootstrap interval (metrics with
    #: a better direction, in a verdict).
    probability_of_improvement: Interval | None = None
    #: Almost Stochastic Order's ε_min (a verdict's primary metric).
    aso_epsilon: float | None = None

    @property
    def n(self) -> int:
        return len(self.differences)

    def sentence(self) -> str:
        """The verdict as one line a person reads first."""
        bounded = math.isfinite(self.ci_low) and math.isfinite(self.ci_high)
        level = percent(self.confidence)
        interval = (f"{level} CI {self.ci_low:+.4g} to {self.ci_high:+.4g}" if bounded else
                    f"{level} CI unbounded: every seed moved by the same amount")  # fmt: skip
        effect = (
            f"{self.mean_difference if abs(self.mean_difference) >= 1e-7 else 0.0:+.4g} {self.metric} "
            f"(treatment - baseline; {interval}, "
            f"{'paired t-test' if bounded or self.n >= 6 else 'exact sign-flip test'} p={self.p_value:.3g}"
            + (f", Holm-adjusted over the {self.family} metrics p={self.p_adjusted:.3g}"
               if self.p_adjusted is not None else "")
            + f", {self.n} seeds)"
        )  # fmt: skip
        if self.verdict == "equivalent":
            bounds = f"{self.equivalence_low:+.4g} to {self.equivalence_high:+.4g}"
            p_eq = self.p_equivalence if self.p_equivalence_adjusted is None else self.p_equivalence_adjusted
            delta = f"±{self.smallest_effect:.4g}"
            level = percent(1 - 2 * self.alpha)
            text = (f"equivalent within {delta}: {effect}; the {level} interval {bounds} lies inside {delta} "
                    f"(TOST p={p_eq:.3g})")  # fmt: skip
            if self.p_value < self.alpha and self.mean_difference != 0:
                text += "; the difference is real but smaller than the smallest effect that matters"
        elif self.verdict == "inconclusive":
            text = (f"inconclusive: {effect}; the interval reaches beyond ±{self.smallest_effect:.4g}, so "
                    "neither an effect nor its absence is shown")  # fmt: skip
            if bounded:
                mde = self.minimum_detectable_effect
                text += f" (effects of about ±{mde:.3g} were detectable with these seeds)"
        elif self.verdict == "no detectable effect" and not bounded:
            pairs = math.ceil(math.log2(2 / self.alpha) + 1e-9)
            text = f"no detectable effect: {effect}; " + (
                "every pair gave both arms the same value" if self.mean_difference == 0 else
                f"every pair differed by exactly {self.mean_difference:+.4g}, so no interval can be formed "
                f"from the spread, and the exact sign-flip test needs {pairs} or more such pairs to call it")
        elif self.verdict == "no detectable effect":
            text = (
                f"no detectable effect: {effect}; with these seeds only effects of about "
                f"±{self.minimum_detectable_effect:.3g} or larger were detectable (80% power)"
            )
            if self.p_adjusted is not None and self.p_value < self.alpha <= self.p_adjusted:
                text += "; the interval excludes 0 before, not after, the correction for many metrics"
        else:
            text = f"{self.verdict}: {effect}"
        if self.n < WEAK_BELOW:
            text += f". A weak verdict: {self.n} seeds (use {WEAK_BELOW} or more)"
        return text

    def call(self) -> str:
        """The verdict with what qualifies it: "no detectable effect after Holm" when the interval excludes 0
        (the test rejects before the correction for many metrics) but not after it."""
        if self.p_adjusted is not None and self.p_value < self.alpha <= self.p_adjusted:
            return f"{self.verdict} after Holm"
        return self.verdict

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: an unbounded interval end is None; the sentence and the call are written
        beside the numbers for readers of the file."""
        out = asdict(self)
        extras = {key: out.pop(key) for key in ("probability_of_improvement", "aso_epsilon")}
        out.update({"n": self.n, "sentence": self.sentence(), "call": self.call()})
        out.update({key: value for key, value in extras.items() if value is not None})
        for key in _UNBOUNDED:
            if out[key] is not None and not math.isfinite(out[key]):
                out[key] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedComparison:
        """A comparison from what :meth:`to_dict` wrote (the sentence and call are derived again; fields a
        newer version added are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        unbounded = {"ci_low": -math.inf, "ci_high": math.inf, "minimum_detectable_effect": math.inf,
                     "t_statistic": math.nan}  # fmt: skip
        if values.get("smallest_effect") is not None:  # TOST ran: a missing end is an unbounded one
            unbounded.update({"equivalence_low": -math.inf, "equivalence_high": math.inf})
        for key, value in unbounded.items():
            if values.get(key) is None:
                values[key] = value
        if values.get("probability_of_improvement") is not None:
            values["probability_of_improvement"] = Interval(**values["probability_of_improvement"])
        return cls(**values)


#: The fields JSON writes as None when they are infinite (an unbounded interval; no spread to test with).
_UNBOUNDED = ("ci_low", "ci_high", "minimum_detectable_effect", "t_statistic", "equivalence_low",
              "equivalence_high")  # fmt: skip


def paired_comparison(
    baseline: Sequence[float],
    treatment: Sequence[float],
    *,
    metric: str = "metric",
    higher_is_better: bool | None = True,
    alpha: float = 0.05,
    power: float = 0.8,
    confidence: float = 0.95,
    smallest_effect: float | None = None,
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
        smallest_effect: δ > 0, the smallest difference that matters, in the metric's units: adds the
            equivalence test (TOST at ``alpha``), and the verdict is helped / hurt / equivalent /
            inconclusive.

    Raises:
        ValueError: fewer than 2 pairs, unequal lengths, non-finite values, or δ <= 0.

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
    if smallest_effect is not None and not (math.isfinite(smallest_effect) and smallest_effect > 0):
        raise ValueError(f"smallest_effect={smallest_effect!r}; expected a positive number ({metric} units)")
    d = t - b
    n, mean = d.shape[0], float(d.mean())
    t_stat, p_value, se, low, high = _paired_t(d, confidence)
    mde = float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * se)
    p_eq = eq_low = eq_high = None
    if smallest_effect is not None:
        p_eq, eq_low, eq_high = _tost(mean, se, n, smallest_effect, alpha)
    return PairedComparison(
        metric=metric, higher_is_better=higher_is_better, baseline=b.tolist(), treatment=t.tolist(),
        differences=d.tolist(), mean_difference=mean, ci_low=low, ci_high=high, confidence=confidence,
        t_statistic=t_stat, p_value=p_value, minimum_detectable_effect=mde,
        verdict=_call(mean, p_value, alpha, higher_is_better, p_eq), smallest_effect=smallest_effect,
        p_equivalence=p_eq, equivalence_low=eq_low, equivalence_high=eq_high, alpha=alpha,
    )  # fmt: skip


def _paired_t(d: np.ndarray, confidence: float) -> tuple[float, float, float, float, float]:
    """The paired t-test of the per-seed differences ``d``: (t, two-sided p, standard error, interval).

    When every seed moved by the same amount (up to float noise; typical of a discrete metric, one test
    sample more or less, over few seeds) the t-test is undefined (its p would be ~0 from the noise alone);
    the exact sign-flip test is not: all n signs alike has p = 2 / 2^n. Inverted, it rejects every other
    value of the mean when 2 / 2^n < 1 - confidence, and none otherwise; the standard error is then 0.
    """
    n, mean = d.shape[0], float(d.mean())
    if float(np.ptp(d)) > 1e-6 * abs(mean):
        se = float(d.std(ddof=1)) / math.sqrt(n)
        t_stat = mean / se
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * se
        return t_stat, float(2 * stats.t.sf(abs(t_stat), df=n - 1)), se, mean - half, mean + half
    t_stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    p_value = 1.0 if mean == 0 else min(1.0, 2.0 / 2**n)
    low, high = (mean, mean) if 2.0 / 2**n < 1 - confidence else (-math.inf, math.inf)
    return t_stat, p_value, 0.0, low, high


def _tost(mean: float, se: float, n: int, delta: float, alpha: float) -> tuple[float, float, float]:
    """Two one-sided t-tests of |μ| >= δ: (the larger p, and the (1 - 2α) interval they invert).

    Every seed moved by the same amount (se 0): the exact sign test of each side instead, all n signs alike
    (p = 1/2^n) when |mean| < δ.
    """
    if se > 0:
        p_low = float(stats.t.sf((mean + delta) / se, n - 1))  # H0: μ <= -δ
        p_high = float(stats.t.cdf((mean - delta) / se, n - 1))  # H0: μ >= +δ
        half = float(stats.t.ppf(1 - alpha, n - 1)) * se
        return max(p_low, p_high), mean - half, mean + half
    if abs(mean) >= delta:
        return 1.0, mean, mean
    p = 0.5**n
    return (p, mean, mean) if p < alpha else (p, -math.inf, math.inf)


def _call(mean: float, p_value: float, alpha: float, higher_is_better: bool | None,
          p_equivalence: float | None = None) -> Call:  # fmt: skip
    if p_equivalence is not None:
        if p_equivalence < alpha:
            return "equivalent"
        if p_value >= alpha or mean == 0:
            return "inconclusive"
    elif p_value >= alpha or mean == 0:
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
    tested = {i: c.p_equivalence for i, c in enumerate(comparisons) if c.p_equivalence is not None}
    equivalence = dict(zip(tested, holm_adjust(list(tested.values())), strict=True))
    return [
        replace(c, p_adjusted=a, family=family, p_equivalence_adjusted=equivalence.get(i),
                verdict=_call(c.mean_difference, a, alpha, c.higher_is_better, equivalence.get(i)))
        for i, (c, a) in enumerate(zip(comparisons, adjusted, strict=True))
    ]  # fmt: skip


def compare_arms(
    per_arm: dict[str, list[dict[str, float]]], *, smallest_effect: dict[str, float] | None = None,
    alpha: float = 0.05, primary: str | None = None, directions: dict[str, bool | None] | None = None,
) -> list[PairedComparison]:  # fmt: skip
    """Paired comparisons of every metric both arms have at every seed, in two Holm-corrected families: the
    task metrics (the question asked) and the diagnostics (names starting ``diagnostics.``). Directions
    come from :mod:`contrastlab.metrics`. Each metric with a better direction carries the probability of
    improvement (with its interval); the primary metric also ASO's ε_min (a bootstrap of about 2 s).

    Args:
        per_arm: ``{"baseline": rows, "treatment": rows}``, one row (metric -> value) per seed, paired.
        directions: Whether higher is better, per metric, where the registry's direction is not wanted.
    """
    directions = directions or {}
    families: dict[str, list[PairedComparison]] = {"task": [], "diagnostic": []}
    deltas = smallest_effect or {}
    for name in per_arm["baseline"][0]:
        if not all(name in row for rows in per_arm.values() for row in rows):
            continue
        better = directions[name] if name in directions else direction(name)
        families["diagnostic" if name.startswith("diagnostics.") else "task"].append(
            paired_comparison([r[name] for r in per_arm["baseline"]], [r[name] for r in per_arm["treatment"]],
                              metric=name, higher_is_better=better, alpha=alpha, confidence=1 - alpha,
                              smallest_effect=deltas.get(name))
        )  # fmt: skip
    out = []
    for family, members in families.items():
        for c in adjust_family(members, family=family, alpha=alpha):
            if c.higher_is_better is not None:
                pair = (c.baseline, c.treatment)
                share = Interval(*probability_of_improvement(*pair, higher_is_better=c.higher_is_better))
                aso = (almost_stochastic_order(*pair, higher_is_better=c.higher_is_better)
                       if c.metric == primary else None)  # fmt: skip
                c = replace(c, probability_of_improvement=share, aso_epsilon=aso)
            out.append(c)
    return out


def seeds_needed(sd: float, smallest_effect: float, *, alpha: float = 0.05, power: float = 0.8,
                 largest: int = 10_000) -> int | None:  # fmt: skip
    """The fewest seed pairs whose paired t-test detects a true difference of ``smallest_effect`` with
    probability ``power``, for per-seed differences of standard deviation ``sd``:
    the least n with (t_{1-α/2, n-1} + t_{power, n-1}) · sd / sqrt(n) <= δ. None beyond ``largest``.

    Example:
        >>> seeds_needed(sd=0.01, smallest_effect=0.01)
        10
    """
    if not (smallest_effect > 0 and sd >= 0):
        raise ValueError(f"seeds_needed: sd={sd!r} must be >= 0 and smallest_effect={smallest_effect!r} > 0")
    for n in range(2, largest + 1):
        factor = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
        if factor * sd / math.sqrt(n) <= smallest_effect:
            return n
    return None


@dataclass(frozen=True)
class SequentialPlan:
    """Adding seed pairs until the call is decided, with a false-call rate that stays at most ``alpha``.

    Looks are taken after ``first`` pairs and after every further pair up to ``most``: K = most - first + 1
    looks, each testing at α/K (the t-test for helped / hurt and, with δ, TOST for equivalent). By
    Bonferroni's inequality the chance of any false call over all looks is at most α, whatever the
    dependence between looks; stopping early can only lower it.
    """

    first: int = 3
    most: int = 10
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not 2 <= self.first <= self.most:
            raise ValueError(f"sequential seeds: need 2 <= first ({self.first}) <= most ({self.most})")

    @property
    def looks(self) -> int:
        return self.most - self.first + 1

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / self.looks

    def decided(self, comparison: PairedComparison) -> bool:
        """Whether the comparison (made at ``alpha_per_look``) settles the question."""
        return comparison.verdict in ("helped", "hurt", "equivalent", "increased", "decreased")

    def describe(self) -> dict[str, Any]:
        return {"method": "Bonferroni over the planned looks", "first": self.first, "most": self.most,
                "looks": self.looks, "alpha": self.alpha, "alpha_per_look": self.alpha_per_look}  # fmt: skip
