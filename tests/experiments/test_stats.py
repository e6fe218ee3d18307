"""The verdict's statistics on simulated studies with known effects."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from contrastlab.experiments import paired_comparison


def _study(rng, n, effect, noise=1.0, seed_spread=3.0):
    # Seeds differ a lot (seed_spread) but both arms share each seed's offset, as paired runs do.
    offsets = rng.normal(0, seed_spread, size=n)
    baseline = 10 + offsets + rng.normal(0, noise / np.sqrt(2), size=n)
    treatment = 10 + offsets + effect + rng.normal(0, noise / np.sqrt(2), size=n)
    return baseline, treatment


def test_paired_comparison__t_test_matches_scipy():
    rng = np.random.default_rng(0)
    b, t = _study(rng, 7, 0.5)
    result = paired_comparison(b, t)
    reference = stats.ttest_rel(t, b)
    assert result.t_statistic == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.mean_difference == pytest.approx(float(np.mean(t - b)))


def test_null_effect__no_detectable_effect_in_at_least_90_percent_of_studies():
    rng = np.random.default_rng(1)
    calls = [paired_comparison(*_study(rng, 5, 0.0)).verdict for _ in range(600)]
    share = calls.count("no detectable effect") / len(calls)
    assert share >= 0.90, share  # nominal 0.95 at alpha = 0.05


CASES = [(True, 2.0, "helped"), (True, -2.0, "hurt"), (False, -2.0, "helped"), (False, 2.0, "hurt")]


@pytest.mark.parametrize(("higher_is_better", "effect", "expected"), CASES)
def test_true_effect__called_in_the_right_direction_at_the_expected_rate(higher_is_better, effect, expected):
    rng = np.random.default_rng(2)
    calls = [
        paired_comparison(*_study(rng, 8, effect), higher_is_better=higher_is_better).verdict
        for _ in range(300)
    ]
    # Power of a paired t-test at effect/sd = 2 with 8 pairs is > 0.99; wrong-direction calls never happen.
    assert calls.count(expected) / len(calls) >= 0.95
    assert calls.count("hurt" if expected == "helped" else "helped") == 0


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_interval__covers_the_true_difference_at_95_percent(n):
    rng = np.random.default_rng(3)
    covered = 0
    studies = 600
    for _ in range(studies):
        result = paired_comparison(*_study(rng, n, 0.7))
        covered += result.ci_low <= 0.7 <= result.ci_high
    assert 0.92 <= covered / studies <= 0.98, covered / studies  # the t-interval is exact on normal data


def test_interval_and_call__agree_at_every_number_of_seeds():
    # Seen failing before the fix: the bootstrap interval [+0.0013, +0.0018] excluded 0 while p = 0.10
    # called "no detectable effect".
    two = paired_comparison([0.5, 0.6], [0.5013, 0.6018], metric="accuracy")
    assert two.verdict == "no detectable effect" and two.ci_low < 0 < two.ci_high
    rng = np.random.default_rng(7)
    for n in (2, 3, 4, 5, 8):
        for _ in range(200):
            result = paired_comparison(*_study(rng, n, rng.choice([0.0, 1.0, 3.0])))
            excludes_zero = result.ci_low > 0 or result.ci_high < 0
            assert excludes_zero == (result.verdict != "no detectable effect"), (n, result)
    # ties: every seed moved by one test sample; the sign-flip test cannot reject at 2-5 seeds
    for n in range(2, 9):
        tied = paired_comparison([0.8] * n, [0.8125] * n, metric="accuracy")
        excludes_zero = tied.ci_low > 0 or tied.ci_high < 0
        assert excludes_zero == (tied.verdict == "helped") == (n >= 6), n


def test_sentence__says_a_verdict_below_five_seeds_is_weak():
    assert "A weak verdict: 3 seeds" in paired_comparison([1.0, 2.0, 3.0], [1.1, 2.3, 3.2]).sentence()
    assert "weak" not in paired_comparison([1.0, 2.0, 3.0, 4, 5], [1.1, 2.3, 3.2, 4.1, 5.2]).sentence()
    tied = paired_comparison([0.8] * 3, [0.8125] * 3)
    assert "CI unbounded" in tied.sentence() and tied.to_dict()["ci_low"] is None


def test_minimum_detectable_effect__formula_and_sentence():
    b, t = [1.0, 2.0, 3.0, 4.0, 5.0], [1.1, 1.9, 3.2, 3.9, 5.05]
    result = paired_comparison(b, t, metric="accuracy")
    d = np.subtract(t, b)
    expected = (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * d.std(ddof=1) / np.sqrt(5)
    assert result.minimum_detectable_effect == pytest.approx(expected)
    assert result.verdict == "no detectable effect"
    assert "only effects of about ±" in result.sentence() and "5 seeds" in result.sentence()


def test_degenerate_and_bad_inputs():
    same = paired_comparison([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])  # every seed +0.5 exactly: sign-flip p = 1/4
    assert same.verdict == "no detectable effect" and (same.ci_low, same.ci_high) == (-np.inf, np.inf)
    assert paired_comparison([1.0, 2.0], [1.0, 2.0]).verdict == "no detectable effect"
    with pytest.raises(ValueError, match="at least 2 seeds, got 1"):
        paired_comparison([1.0], [2.0])
    with pytest.raises(ValueError, match="equal-length"):
        paired_comparison([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="must be finite"):
        paired_comparison([1.0, float("nan")], [1.0, 2.0])


def _holm_rejects(p, alpha):
    """Holm (1979) as written: walk the sorted p-values, reject while p_(i) <= alpha / (m - i + 1)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = set()
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected.add(i)
    return rejected


def test_holm_adjust__rejects_exactly_what_holms_procedure_rejects():
    from contrastlab.experiments.stats import holm_adjust

    rng = np.random.default_rng(0)
    for _ in range(300):
        p = (rng.uniform(0, 0.2, size=rng.integers(1, 12)) ** 2).tolist()
        adjusted = holm_adjust(p)
        assert all(a >= q for a, q in zip(adjusted, p, strict=True)) and max(adjusted) <= 1
        for alpha in (0.01, 0.05, 0.1):
            assert {i for i, a in enumerate(adjusted) if a <= alpha} == _holm_rejects(p, alpha)
    with pytest.raises(ValueError, match="probabilities in"):
        holm_adjust([0.1, 1.2])


def test_adjust_family__ten_null_metrics_give_a_false_call_in_at_most_alpha_of_studies():
    from contrastlab.experiments.stats import adjust_family

    rng = np.random.default_rng(3)
    raw_false = adjusted_false = 0
    studies = 300
    for _ in range(studies):
        b, t = _study(rng, 5, 0.0)
        # ten metrics: independent noise around one shared seed effect (correlated, as metrics are)
        members = [paired_comparison(b + rng.normal(0, 1, 5), t + rng.normal(0, 1, 5), metric=f"m{k}")
                   for k in range(10)]  # fmt: skip
        raw_false += any(c.verdict != "no detectable effect" for c in members)
        adjusted = adjust_family(members, family="task")
        adjusted_false += any(c.verdict != "no detectable effect" for c in adjusted)
        assert all(c.p_adjusted is not None and c.p_adjusted >= c.p_value for c in adjusted)
    assert raw_false / studies > 0.2  # uncorrected: a "significant" metric in many null studies
    assert adjusted_false / studies <= 0.07  # Holm: the family-wise error rate stays near alpha=0.05


def test_identical_differences_use_the_exact_sign_flip_test_not_a_degenerate_t_test():
    # float32 accuracies: both seeds lost exactly one of twenty test samples, up to rounding noise
    base = np.float32([0.60, 0.55]).astype(np.float64)
    treat = np.float32([0.55, 0.50]).astype(np.float64)
    two = paired_comparison(base, treat, metric="accuracy")
    assert two.p_value == pytest.approx(0.5) and two.verdict == "no detectable effect"
    six = paired_comparison([0.6] * 6, [0.55] * 6, metric="accuracy")
    assert six.p_value == pytest.approx(2 / 64) and six.verdict == "hurt"
    assert paired_comparison([0.6, 0.6], [0.6, 0.6]).p_value == 1.0


def test_call__says_when_only_the_holm_correction_removed_the_effect():
    # The printed 95% interval is per metric: when it excludes 0 but Holm's correction does not reject,
    # the call says so rather than contradicting its interval (seen in the demo: uniformity, p 0.015 / 0.089).
    from contrastlab.experiments.stats import adjust_family

    strong = paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0], [1.9, 3.1, 3.9, 5.2, 6.0], metric="a")
    weak = paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0], [1.25, 2.05, 3.3, 4.1, 5.35], metric="b")  # p 0.022
    null = [paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0], [1.1, 1.9, 3.1, 3.9, 5.0], metric=f"n{k}")
            for k in range(4)]  # fmt: skip
    adjusted = {c.metric: c for c in adjust_family([strong, weak, *null], family="task")}
    b = adjusted["b"]
    assert b.p_value < 0.05 <= b.p_adjusted and (b.ci_low > 0 or b.ci_high < 0)
    assert b.call() == "no detectable effect after Holm" and b.to_dict()["call"] == b.call()
    assert adjusted["a"].call() == adjusted["a"].verdict == "helped"


# --- equivalence, probability of improvement, ASO, planning, sequential seeds -------------------------------


@pytest.mark.parametrize("n", [3, 5, 10, 20])
@pytest.mark.parametrize("noise", ["normal", "t3"])
def test_equivalence__called_at_most_alpha_when_the_true_effect_is_exactly_delta(n, noise):
    rng = np.random.default_rng(n)
    delta, reps, calls = 0.5, 800, 0
    for _ in range(reps):
        if noise == "normal":
            b, t = _study(rng, n, delta)
        else:  # heavy tails: Student t with 3 degrees of freedom, scaled to sd 1
            b = 10 + rng.normal(0, 3.0, n)
            t = b + delta + rng.standard_t(3, n) / np.sqrt(3)
        calls += paired_comparison(b, t, smallest_effect=delta).verdict == "equivalent"
    bound = 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)  # alpha plus three Monte Carlo standard errors
    assert calls / reps <= bound, calls / reps


def test_equivalence__its_interval_and_its_call_agree_and_no_effect_is_shown_equivalent():
    rng = np.random.default_rng(5)
    for n in (3, 4, 6, 9, 15):
        for _ in range(40):
            b, t = _study(rng, n, rng.normal(0, 0.3), noise=rng.uniform(0.05, 1.0))
            delta = float(rng.uniform(0.05, 1.0))
            c = paired_comparison(b, t, smallest_effect=delta)
            inside = -delta < c.equivalence_low and c.equivalence_high < delta
            assert (c.p_equivalence < 0.05) == inside
            assert (c.verdict == "equivalent") == inside
    calls = [paired_comparison(*_study(rng, 12, 0.0, noise=0.1), smallest_effect=0.5).verdict
             for _ in range(100)]  # fmt: skip
    assert calls.count("equivalent") >= 95  # a true zero effect, small noise: shown equivalent


def test_equivalence__the_four_words_and_their_sentences():
    b = [0.80, 0.82, 0.79, 0.81, 0.80, 0.83]
    real = paired_comparison(b, [x + 0.04 + 0.001 * i for i, x in enumerate(b)], smallest_effect=0.01)
    assert real.verdict == "helped"
    nudged = [x + 0.002 + 0.0005 * (i % 2) for i, x in enumerate(b)]
    small = paired_comparison(b, nudged, smallest_effect=0.01)
    assert small.verdict == "equivalent" and "real but smaller than the smallest effect" in small.sentence()
    noisy = paired_comparison(b, [x + (-1) ** i * 0.03 for i, x in enumerate(b)], smallest_effect=0.01)
    assert noisy.verdict == "inconclusive" and "neither an effect nor its absence" in noisy.sentence()
    assert paired_comparison(b, b[::-1]).verdict == "no detectable effect"  # without δ, the old words
    with pytest.raises(ValueError, match=r"smallest_effect=-0.1; expected a positive number"):
        paired_comparison(b, b, smallest_effect=-0.1)


def test_probability_of_improvement__is_mann_whitney_u_over_pairs_and_its_interval_holds_it():
    from contrastlab.experiments.dominance import probability_of_improvement

    rng = np.random.default_rng(7)
    b, t = rng.normal(0, 1, 6).round(1), rng.normal(0.5, 1, 8).round(1)  # rounded: ties count half
    estimate, low, high = probability_of_improvement(b, t)
    u = stats.mannwhitneyu(t, b).statistic
    assert estimate == pytest.approx(u / (t.size * b.size))
    assert low <= estimate <= high
    lower_better = probability_of_improvement(-b, -t, higher_is_better=False)
    assert lower_better[0] == pytest.approx(estimate)
    assert probability_of_improvement(b, t, seed=3) == probability_of_improvement(b, t, seed=3)


def test_almost_stochastic_order__small_when_the_treatment_dominates_and_direction_aware():
    from contrastlab.experiments.dominance import ASO_THRESHOLD, almost_stochastic_order

    rng = np.random.default_rng(8)
    b = rng.normal(0.70, 0.01, 8)
    t = b + 0.05
    assert almost_stochastic_order(b, t) < ASO_THRESHOLD  # clearly better: almost dominates
    assert almost_stochastic_order(t, b) > 0.5  # clearly worse: far from dominating
    assert almost_stochastic_order(-b, -t, higher_is_better=False) == pytest.approx(
        almost_stochastic_order(b, t), abs=0.02)  # fmt: skip


def test_seeds_needed__is_the_least_n_meeting_the_power_formula_and_has_that_power():
    from contrastlab.experiments.stats import seeds_needed

    for sd, delta in [(0.01, 0.01), (0.02, 0.01), (1.0, 0.3), (0.5, 2.0)]:
        n = seeds_needed(sd, delta)
        assert n is not None

        def reach(k, sd=sd):
            return (stats.t.ppf(0.975, k - 1) + stats.t.ppf(0.8, k - 1)) * sd / np.sqrt(k)

        assert reach(n) <= delta and (n == 2 or reach(n - 1) > delta)
    rng = np.random.default_rng(9)
    n = seeds_needed(1.0, 0.8)
    hits = 0
    for _ in range(600):
        z = rng.normal(0, 5, n)
        hits += paired_comparison(z, z + 0.8 + rng.normal(0, 1.0, n)).verdict == "helped"
    assert hits / 600 >= 0.74  # 80% power (the t approximation of the noncentral t is slightly generous)


def test_sequential_seeds__stopping_at_the_first_decided_look_keeps_false_calls_at_most_alpha():
    from contrastlab.experiments.stats import SequentialPlan

    plan = SequentialPlan(first=3, most=10)
    rng = np.random.default_rng(10)
    reps, false = 400, 0
    for _ in range(reps):
        b, t = _study(rng, plan.most, 0.0)
        for n in range(plan.first, plan.most + 1):
            c = paired_comparison(b[:n], t[:n], alpha=plan.alpha_per_look, confidence=1 - plan.alpha_per_look)
            if plan.decided(c):
                false += 1
                break
    assert false / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)
    assert plan.describe()["looks"] == 8 and plan.alpha_per_look == pytest.approx(0.05 / 8)
    with pytest.raises(ValueError, match="first"):
        SequentialPlan(first=1, most=4)


def test_sentence__names_an_interval_level_that_is_not_a_whole_percent():
    # a sequential verdict tests each look at alpha 0.005: its interval is 99.5%, which ":.0%" printed as
    # "100%" (seen in a --seeds auto verdict's primary sentence)
    c = paired_comparison([0.76, 0.78, 0.75, 0.78, 0.75, 0.76], [0.75, 0.77, 0.76, 0.77, 0.75, 0.76],
                          metric="acc", alpha=0.005, confidence=0.995, smallest_effect=0.05)  # fmt: skip
    assert "99.5% CI" in c.sentence() and "100%" not in c.sentence()
    assert "the 99% interval" in c.sentence()  # TOST at alpha 0.005 is a 1 - 2 * alpha = 99% interval
    assert "95% CI" in paired_comparison([1.0, 2.0, 3.0], [1.5, 2.1, 3.4], metric="m").sentence()


def test_sentence__pairs_that_all_moved_alike_say_so_rather_than_a_detectable_effect_of_zero():
    # Every seed 0.01 better: the spread is 0, so a "minimum detectable effect" would be ±0.
    alike = paired_comparison([0.8, 0.8, 0.8], [0.81, 0.81, 0.81]).sentence()
    assert "every pair differed by exactly +0.01" in alike and "needs 6 or more such pairs" in alike
    assert "±0 " not in alike and "were detectable" not in alike
    same = paired_comparison([0.8, 0.8, 0.8], [0.8, 0.8, 0.8]).sentence()
    assert "every pair gave both arms the same value" in same
    inconclusive = paired_comparison([0.8] * 3, [0.81] * 3, smallest_effect=0.001).sentence()
    assert inconclusive.startswith("inconclusive") and "were detectable" not in inconclusive
