"""Report sections of verdicts: one verdict (:func:`verdict_sections`), verdicts over several recipes and a
curve of verdicts. Each section has its own small function and reads the typed results
(:class:`~contrastlab.experiments.results.Verdict`), never the JSON's keys."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

from contrastlab._io import read_json
from contrastlab.experiments.arms import arm_run
from contrastlab.experiments.format import extension_sentence
from contrastlab.experiments.report.document import (
    Badge,
    Cell,
    Headline,
    Link,
    Section,
    Table,
    cell,
    figure,
    tidy,
    verdict_css,
)
from contrastlab.experiments.report.figures import plot_arm_curves, plot_arm_projections, plot_forest
from contrastlab.experiments.report.runs import DIAGNOSTICS_FILE, config_diff, metadata
from contrastlab.experiments.results import RecipeVerdicts, Verdict
from contrastlab.experiments.schemas import load_result
from contrastlab.experiments.stats import PairedComparison, percent
from contrastlab.train.checkpoint import read_history

__all__ = ["curve_sections", "verdict_sections", "verdicts_sections"]

ARMS = ("baseline", "treatment")


def verdict_sections(directory: Path) -> list[Section]:
    """A verdict's report: the answer, what differs between the arms, every metric, each seed, the arms'
    curves and embeddings, the CKA between them and where each run ran."""
    verdict = Verdict.from_json(directory)
    first = {arm: arm_run(directory, arm, verdict.seeds[0]).path for arm in ARMS}
    runs = {f"{arm} seed {k}": arm_run(directory, arm, k).path for k in verdict.seeds for arm in ARMS}
    sections = [_summary(verdict), config_diff(first), _every_metric(verdict), _per_seed(verdict, directory),
                _curves(verdict, directory), _projections(verdict, directory), _cka(verdict, directory),
                metadata(runs)]  # fmt: skip
    return [s for s in sections if s is not None]


def _badge(c: PairedComparison) -> Badge:
    """A comparison as a badge: "helped", "+0.012 test.accuracy", its interval, the better way."""
    level = percent(c.confidence).rstrip("%")
    if np.isfinite(c.ci_low) and np.isfinite(c.ci_high):
        interval = f"{level}% CI {tidy(c.ci_low):+.3g} to {tidy(c.ci_high):+.3g}"
    else:
        interval = f"{level}% CI unbounded (every seed moved alike)"
    if c.smallest_effect:
        interval += f"; smallest effect that matters ±{c.smallest_effect:.3g}"
    share = c.probability_of_improvement
    if share is not None:
        interval += f"; P(treatment better) {share.estimate:.2f} [{share.low:.2f}, {share.high:.2f}]"
    if c.aso_epsilon is not None:
        interval += f"; ASO ε_min {c.aso_epsilon:.2f} (< 0.2: almost stochastically better)"
    better = {True: "higher is better", False: "lower is better", None: "no better direction"}
    return Badge(word=c.verdict, metric=c.metric, effect=f"{tidy(c.mean_difference):+.4g}", interval=interval,
                 better=better[c.higher_is_better], css=verdict_css(c.verdict))  # fmt: skip


def _summary(verdict: Verdict) -> Section:
    summary = Section("Verdict")
    recipe = verdict.recipe  # a path, or a mapping given from Python
    on = recipe if isinstance(recipe, str) else f"recipe {recipe.get('name') or '(from Python)'}"
    seeds = verdict.seeds
    summary.paragraphs.append(
        f"Treatment {' '.join(verdict.treatment)} against baseline {' '.join(verdict.baseline)} on {on}, "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); each seed's two runs share the split and the "
        "initial weights."
    )
    primary = verdict.primary
    for c in verdict.comparisons:
        if c.metric == primary or (primary is None and c.metric.startswith("test.")):
            summary.badges.append(_badge(c))
            summary.headlines.append(Headline(f"{c.metric}: {c.sentence()}", verdict_css(c.verdict)))
    summary.figures.append(figure(
        lambda f: plot_forest(verdict.comparisons, f),
        "every metric's paired difference with its interval, as a share of the baseline mean and turned so "
        "that right is better (metrics with no better direction as measured); colour: the call"))  # fmt: skip
    summary.paragraphs.append(f"Drawn anew at each seed (the same in both arms): {', '.join(verdict.vary)}.")
    looks = verdict.sequential
    if looks is not None:
        summary.paragraphs.append(
            f"Seeds were added until the call was decided: {looks.stopped_at} of at most {looks.most}, "
            f"each of {looks.looks} looks tested at α = {looks.alpha_per_look:.3g} (Bonferroni over the "
            "looks), so intervals are at that level."
        )
    if verdict.extended:
        summary.paragraphs.append(extension_sentence(verdict.extended, len(seeds)))
    if any(c.p_adjusted is not None for c in verdict.comparisons):
        summary.paragraphs.append(
            "Verdicts are called on Holm-adjusted p-values, within the task metrics and within the "
            "diagnostics: testing many metrics at once would otherwise find a 'significant' one by chance. "
            + (f"The primary metric is {primary}, the test value of the metric the recipe early-stops on."
               if primary else "")
        )  # fmt: skip
    return summary


def _every_metric(verdict: Verdict) -> Section:
    rows = []
    for c in verdict.comparisons:
        bounded = bool(np.isfinite(c.ci_low) and np.isfinite(c.ci_high))
        interval = f"{tidy(c.ci_low):+.3g} to {tidy(c.ci_high):+.3g}" if bounded else "unbounded"
        mde = c.minimum_detectable_effect
        share = c.probability_of_improvement
        rows.append([
            cell(c.call(), css=verdict_css(c.verdict)), cell(c.metric, css="name"),
            cell(float(np.mean(c.baseline))), cell(float(np.mean(c.treatment))),
            cell(tidy(c.mean_difference), digits=3),
            Cell(text=interval, sort=repr(c.ci_low if bounded else float("-inf"))),
            cell(c.p_value, digits=3), cell(c.p_adjusted if c.p_adjusted is not None else "", digits=3),
            cell(mde if np.isfinite(mde) else "", digits=3),
            cell(share.estimate if share is not None else "", digits=2),
        ])  # fmt: skip
    level = percent(1 - verdict.alpha)
    columns = ["verdict", "metric", "baseline", "treatment", "difference", f"{level} CI", "p (paired t)",
               "p (Holm)", "detectable effect", "P(better)"]  # fmt: skip
    every = Section("Every metric")
    every.tables.append(Table(columns, rows, caption="means over seeds; difference = treatment - baseline"))
    return every


def _per_seed(verdict: Verdict, directory: Path) -> Section:
    per_seed = Section("Per seed")
    rows = []
    for c in verdict.comparisons:
        rows.append([cell(c.metric), cell("baseline"), *(cell(v) for v in c.baseline)])
        rows.append([cell(c.metric), cell("treatment"), *(cell(v) for v in c.treatment)])
        rows.append([cell(c.metric), cell("difference"), *(cell(v, digits=3) for v in c.differences)])
    per_seed.tables.append(Table(["metric", "arm", *(f"seed {s}" for s in verdict.seeds)], rows))
    for k in verdict.seeds:
        for arm in ARMS:
            per_seed.links.append(Link(f"{arm} seed {k}", f"{arm}/seed{k}/"))
            if (arm_run(directory, arm, k).path / "report.html").is_file():
                per_seed.links.append(Link("(its report)", f"{arm}/seed{k}/report.html"))
    return per_seed


def _curves(verdict: Verdict, directory: Path) -> Section | None:
    histories: dict[str, list[list[dict[str, Any]]]] = {arm: [] for arm in ARMS}
    best_epochs: dict[str, list[int]] = {arm: [] for arm in ARMS}
    for arm in ARMS:
        for k in verdict.seeds:
            run = arm_run(directory, arm, k)
            if run.history.is_file():
                histories[arm].append(read_history(run.history))
            if run.metrics.is_file():
                best_epochs[arm].append(int(load_result(run.metrics, "metrics")["best"]["epoch"]))
    if not (histories["baseline"] and histories["treatment"]):
        return None
    curves = Section("Curves")
    curves.figures.append(figure(
        lambda f: plot_arm_curves(histories, best_epochs, f),
        "each arm's mean over seeds (line) and lowest to highest seed (band); ticks: each seed's best epoch; "
        "baseline blue, treatment orange"))  # fmt: skip
    return curves


def _projections(verdict: Verdict, directory: Path) -> Section:
    projection = Section("Embeddings of both arms")
    seed = verdict.seeds[0]
    files = {arm: arm_run(directory, arm, seed).embedding_file("test") for arm in ARMS}
    if all(p.is_file() for p in files.values()):
        from contrastlab.train.diagnose import load_embeddings

        loaded = {arm: load_embeddings(p) for arm, p in files.items()}
        projection.figures.append(figure(lambda f: plot_arm_projections(loaded, f),
                                         f"PCA of the test embeddings, seed {seed}, coloured by target"))
    else:
        projection.notes.append(f"no test embeddings for seed {seed} in both arms")
    return projection


def _cka(verdict: Verdict, directory: Path) -> Section | None:
    if not verdict.stage_cka:
        return None
    from contrastlab.diagnostics.layers import plot_cka_heatmap

    cka = Section("CKA between the arms")
    stages, seeds = list(verdict.stage_cka), verdict.seeds
    matrix = np.array([verdict.stage_cka[s] for s in stages], dtype=np.float64)  # (stages, seeds)
    cka.paragraphs.append(
        "Linear CKA between the baseline and the treatment model at each stage, on the test inputs: 1 means "
        "the treatment left that stage's representation unchanged (up to rotation and scale)."
    )
    cka.figures.append(figure(
        lambda f: plot_cka_heatmap(matrix, stages, [f"seed {s}" for s in seeds], f,
                                   title="CKA baseline vs treatment", name_a="stage", name_b="seed"),
        "stage x seed"))  # fmt: skip
    seed = seeds[0]
    diagnostics = arm_run(directory, "treatment", seed).diagnostics
    if diagnostics.is_file():  # the run's diagnostics.json: every treatment stage against every baseline one
        full = read_json(diagnostics, DIAGNOSTICS_FILE).get("comparison", {}).get("stage_cka_matrix")
        if full:
            names, values = full.get("stages"), np.array(full.get("values"), dtype=np.float64)
            cka.figures.append(figure(
                lambda f: plot_cka_heatmap(values, names, names, f, title=f"every stage pair, seed {seed}",
                                           name_a="treatment", name_b="baseline"),
                "CKA of every treatment stage against every baseline stage"))  # fmt: skip
    return cka


def verdicts_sections(directory: Path) -> list[Section]:
    """Verdicts over several recipes: each recipe's call (Holm across recipes) and rliable's aggregate."""
    result = RecipeVerdicts.from_json(directory)
    agg = result.aggregate
    iqm, better = agg.iqm_normalised_difference, agg.probability_of_improvement
    summary = Section("Across recipes")
    summary.headlines.append(Headline(
        f"IQM of the per-seed differences: {iqm.estimate:+.2%} of the baseline [{iqm.low:+.2%}, "
        f"{iqm.high:+.2%}]; P(treatment better) {better.estimate:.2f} [{better.low:.2f}, {better.high:.2f}] "
        f"over {agg.recipes} recipes"))  # fmt: skip
    summary.paragraphs.append(
        "Each recipe's primary metric, its per-seed differences as a share of the recipe's baseline mean "
        "(positive = better); the interquartile mean and the probability of improvement averaged over "
        "recipes, with stratified bootstrap 95% intervals (rliable's aggregate view). Calls are "
        "Holm-adjusted across recipes."
    )
    # the call and its numbers first; the arms' settings (long key=value lists) last, wrapped
    rows = [[cell(r.call, css=verdict_css(r.verdict)), cell(r.recipe, css="name"), cell(r.metric, css="name"),
             cell(r.mean_difference, digits=3), cell(r.p_value, digits=3), cell(r.p_holm_recipes, digits=3),
             cell(r.seeds), cell(" ".join(r.treatment), css="settings"),
             cell(" ".join(r.baseline), css="settings")]
            for r in result.per_recipe]  # fmt: skip
    columns = ["verdict", "recipe", "metric", "difference", "p", "p (Holm, recipes)", "seed pairs",
               "treatment", "baseline"]  # fmt: skip
    summary.tables.append(Table(columns, rows))
    for r in result.per_recipe:
        summary.links.append(Link(f"{r.recipe}: its verdict and runs", f"{r.recipe}/"))
    return [summary]


def curve_sections(directory: Path) -> list[Section]:
    """A curve of verdicts: each point's arms, paired difference, interval and call, and the plot."""
    from contrastlab.experiments.curve import plot_curve, read_curve

    curve = read_curve(directory)
    base, treated = curve.arms
    summary = Section("Curve")
    summary.headlines.append(Headline(f"{curve.metric}, {treated} - {base}: "
                                      + "; ".join(f"{p.label}: {p.comparison.call()}" for p in curve.points)))
    if curve.notes:
        summary.paragraphs.append(curve.notes)
    summary.figures.append(figure(lambda f: plot_curve(curve, f),
                                  f"{curve.title}: both arms per point, and the paired difference with each "
                                  "verdict's interval (shaded: the equivalence margin)"))  # fmt: skip

    def spread(values: list[float]) -> str:
        mean = float(np.mean(values))
        return f"{mean:.4g} ± {float(np.std(values, ddof=1)) if len(values) > 1 else 0.0:.2g}"

    rows = []
    for p in curve.points:
        c = p.comparison
        bounded = bool(np.isfinite(c.ci_low) and np.isfinite(c.ci_high))
        level = percent(c.confidence)
        interval = f"{tidy(c.ci_low):+.3g} to {tidy(c.ci_high):+.3g} ({level})" if bounded else "unbounded"
        rows.append([
            Cell(text=p.label, sort=repr(float(p.x)), css="name"), cell(c.n),
            Cell(text=spread(c.baseline), sort=repr(statistics.fmean(c.baseline))),
            Cell(text=spread(c.treatment), sort=repr(statistics.fmean(c.treatment))),
            cell(tidy(c.mean_difference), digits=3),
            Cell(text=interval, sort=repr(c.ci_low if bounded else float("-inf"))),
            cell(c.call(), css=verdict_css(c.verdict)),
        ])  # fmt: skip
    summary.tables.append(Table(
        [curve.x_label, "seed pairs", f"{base} (mean ± sd)", f"{treated} (mean ± sd)", "difference",
         "interval", "call"], rows,
        caption=f"{curve.metric} over seeds; difference = {treated} - {base}, paired by seed",
    ))  # fmt: skip
    for p in curve.points:
        summary.links.append(Link(f"{p.label}: its verdict and runs", f"{p.verdict}/"))
    return [summary]
