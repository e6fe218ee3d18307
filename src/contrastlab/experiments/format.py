"""Results as text: the table and sentence ``contrastlab verdict`` prints (``str(verdict)``), the lines of
verdicts over several recipes, and the table of ``contrastlab compare``. Reads the types of
:mod:`contrastlab.experiments.results`, computes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from contrastlab.experiments.stats import percent

if TYPE_CHECKING:
    from contrastlab.experiments.results import (
        Extension,
        RecipeVerdicts,
        RunComparison,
        SweepResult,
        Verdict,
    )

__all__ = ["extension_sentence", "format_comparison", "format_recipe_verdicts", "format_verdict",
           "sweep_html", "verdict_html"]

_HEADER = ("metric", "baseline", "treatment", "diff [{level} CI]", "p", "p (Holm)", "P(better)", "verdict")


def format_verdict(verdict: Verdict) -> str:
    """The verdict as a plain-text table, task metrics first, the primary metric's sentence last."""
    rows = [tuple(h.format(level=percent(1 - verdict.alpha)) for h in _HEADER)]
    for c in verdict.comparisons:
        call = c.call()
        mde = c.minimum_detectable_effect
        if c.verdict in ("no detectable effect", "inconclusive") and np.isfinite(mde) and mde:
            call += f" (MDE ±{mde:.2g})"
        bounded = np.isfinite(c.ci_low) and np.isfinite(c.ci_high)
        bounds = f"[{c.ci_low:+.3g}, {c.ci_high:+.3g}]" if bounded else "[unbounded]"
        adjusted = "" if c.p_adjusted is None else f"{c.p_adjusted:.3g}"
        share = "" if c.probability_of_improvement is None else f"{c.probability_of_improvement.estimate:.2f}"
        means = f"{np.mean(c.baseline):.4g}", f"{np.mean(c.treatment):.4g}"
        difference = f"{c.mean_difference:+.3g} {bounds}"
        rows.append((c.metric, *means, difference, f"{c.p_value:.3g}", adjusted, share, call))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    tail = []
    if verdict.stage_cka_mean:  # a verdict judged from per-seed values has no models to compare
        cka = ", ".join(f"{s} {v:.3f}" for s, v in verdict.stage_cka_mean.items())
        tail.append(f"CKA baseline vs treatment per stage (mean over seeds): {cka}")
    seeds = f"seeds {verdict.seeds[0]}..{verdict.seeds[-1]}"
    tail.append(f"Varied per seed: {', '.join(verdict.vary)}; {seeds}" if verdict.vary else f"Paired {seeds}")
    lines += [f"\n{tail[0]}", *tail[1:]]
    looks = verdict.sequential
    if looks is not None:
        outcome = "decided" if looks.decided else "budget spent, undecided"
        lines.append(f"Seeds added until decided: stopped at {looks.stopped_at} of at most {looks.most} "
                     f"({outcome}); each of {looks.looks} looks tested at "
                     f"α={looks.alpha_per_look:.3g}")  # fmt: skip
    if verdict.extended:
        lines.append(extension_sentence(verdict.extended, len(verdict.seeds)))
    for run in verdict.diverged:
        lines.append(f"WARNING: the {run.arm} arm's seed {run.seed} diverged ({run.why}); its values are in "
                     "the table above")  # fmt: skip
    primary = verdict.primary_comparison
    if primary is not None:
        lines.append(f"\nPrimary metric {primary.metric}: {primary.sentence()}")
    return "\n".join(lines)


def extension_sentence(extended: Sequence[Extension], seeds: int) -> str:
    """What a verdict's extensions (``--resume`` with more seed pairs) mean for its p-values."""
    steps = " to ".join(str(e.from_seeds) for e in extended) + f" to {seeds}"
    looked = [e.from_seeds for e in extended if e.after_verdict]
    if not looked:
        return f"Extended from {steps} seed pairs before any verdict was written: no look was taken."
    return (f"Extended from {steps} seed pairs after the verdict on {', '.join(map(str, looked))} had been "
            "written: its p-values and intervals do not account for that look (--seeds auto adds pairs with "
            "the looks accounted for).")  # fmt: skip


def format_recipe_verdicts(result: RecipeVerdicts) -> str:
    """One line per recipe (its primary metric's call, Holm-adjusted across recipes), then the aggregate."""
    lines = [f"{r.recipe} ({' '.join(r.treatment)} against {' '.join(r.baseline)}): {r.call} ({r.metric} "
             f"{r.mean_difference:+.4g}, p={r.p_value:.3g}, Holm across recipes p={r.p_holm_recipes:.3g}, "
             f"{r.seeds} seed pairs)" for r in result.per_recipe]  # fmt: skip
    agg = result.aggregate
    iqm, better = agg.iqm_normalised_difference, agg.probability_of_improvement
    lines.append(f"across {agg.recipes} recipes: IQM of the differences {iqm.estimate:+.2%} of baseline "
                 f"[{iqm.low:+.2%}, {iqm.high:+.2%}], P(treatment better) {better.estimate:.2f} "
                 f"[{better.low:.2f}, {better.high:.2f}]")  # fmt: skip
    return "\n".join(lines)


def format_comparison(result: RunComparison) -> str:
    """One row per run: best monitored metric, test metrics, gaps, diagnostics."""
    keys: list[str] = []
    table = []
    for run in result.runs:
        flat = {"best": f"{run.best.get('value', float('nan')):.4g} @ {run.best.get('epoch')}"}
        flat.update({f"test.{k}": f"{v:.4g}" for k, v in run.test.items()})
        flat.update({f"gap.{k}": f"{v:+.3g}" for k, v in run.gap.items()})
        flat.update({f"diag.{k.split('.', 1)[1].replace('.', '_')}": f"{v:.4g}"
                     for k, v in (run.diagnostics or {}).items()})  # fmt: skip
        keys += [k for k in flat if k not in keys]
        table.append((run.run, flat))
    header = ["run", *keys]
    rows = [header] + [[name, *(flat.get(k, "") for k in keys)] for name, flat in table]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


#: The colours of the report's calls.
_CALL_COLOURS = {"helped": "#1b7f3b", "hurt": "#b3261e", "equivalent": "#1f5fa8"}


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def verdict_html(verdict: Verdict) -> str:
    """The verdict as a notebook shows it: the primary metric's call in large type with its sentence (the
    report's verdict card), then every metric's row of the table."""
    from html import escape

    card = ""
    primary = verdict.primary_comparison
    if primary is not None:
        colour = _CALL_COLOURS.get(primary.verdict, "#5d6678")
        card = (f"<div style='border-left:4px solid {colour};padding:4px 10px;margin-bottom:8px'>"
                f"<div style='font-size:1.4em;color:{colour}'><b>{escape(primary.call())}</b> "
                f"{escape(primary.metric)} {primary.mean_difference:+.4g}</div>"
                f"<div>{escape(primary.sentence())}</div></div>")  # fmt: skip
    rows = []
    for c in verdict.comparisons:
        bounded = np.isfinite(c.ci_low) and np.isfinite(c.ci_high)
        interval = f"[{c.ci_low:+.3g}, {c.ci_high:+.3g}]" if bounded else "unbounded"
        adjusted = "" if c.p_adjusted is None else f"{c.p_adjusted:.3g}"
        means = f"{np.mean(c.baseline):.4g}", f"{np.mean(c.treatment):.4g}"
        rows.append((c.metric, *means, f"{c.mean_difference:+.3g}", interval, f"{c.p_value:.3g}", adjusted,
                     c.call()))  # fmt: skip
    level = percent(1 - verdict.alpha)
    table = _html_table(("metric", "baseline", "treatment", "difference", f"{level} CI", "p", "p (Holm)",
                         "verdict"), rows)  # fmt: skip
    varied = escape(", ".join(verdict.vary))
    return f"<div>{card}{table}<p>{len(verdict.seeds)} seed pairs; varied: {varied}</p></div>"


def sweep_html(result: SweepResult) -> str:
    """A sweep as a notebook shows it: the best trial, then every trial."""
    from html import escape

    params = list(result.params)
    rows = [(str(t.number), t.state, *(str(t.params.get(p, "")) for p in params),
             "" if t.value is None else f"{t.value:.4g}") for t in result.trials]  # fmt: skip
    best = ""
    if result.best is not None:
        chosen = escape(str(result.best.params))
        best = f"<p><b>best {escape(result.monitor)} = {result.best.value:.4g}</b> with {chosen}</p>"
    return best + _html_table(("trial", "state", *params, result.monitor), rows)
