"""``contrastlab report DIR``: one self-contained HTML file from the JSON results a command saved.

The kind of report follows from what the directory holds: ``curve.json`` (verdicts along a setting, e.g. a
label budget), ``verdicts.json`` (verdicts over several recipes), ``verdict.json`` (a paired verdict),
``sweep.json`` (a sweep), ``compare.json`` (a comparison) or ``metrics.json`` (a single run). Everything
is read from those saved results and the run directories they point to (``history.csv``,
``embeddings/*.npz``, ``diagnostics.json``); nothing is trained or recomputed except the figures, which are
drawn with matplotlib and embedded as base64 PNGs, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from contrastlab._io import read_json, reading
from contrastlab.experiments.schemas import load_result
from contrastlab.train.checkpoint import atomic_write, read_history
from contrastlab.train.config import flat_settings
from contrastlab.train.rundir import RunDir

DIAGNOSTICS_FILE = "a run's diagnostics.json (as contrastlab diagnose writes it)"

__all__ = ["Figure", "Report", "Section", "Table", "build_report", "render_html", "write_report"]

_KINDS = (
    ("curve.json", "curve"),
    ("verdicts.json", "verdicts"),
    ("verdict.json", "verdict"),
    ("sweep.json", "sweep"),
    ("compare.json", "comparison"),
    ("metrics.json", "run"),
)


@dataclass
class Cell:
    text: str
    sort: str = ""
    css: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Figure:
    png: str  # base64
    caption: str


@dataclass
class Headline:
    text: str
    css: str = ""


@dataclass
class Badge:
    """The answer for one primary metric, in large type: the call, the effect and which way is better."""

    word: str
    metric: str
    effect: str
    interval: str
    better: str
    css: str = ""


@dataclass
class Link:
    """A link to a file of the result (its path relative to the result's directory)."""

    text: str
    path: str


@dataclass
class Section:
    title: str
    badges: list[Badge] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    headlines: list[Headline] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower())


@dataclass
class Report:
    title: str
    kind: str
    source: str
    sections: list[Section]


def _cell(value: Any, *, digits: int = 4, css: str = "") -> Cell:
    if isinstance(value, float | int | np.floating) and not isinstance(value, bool):
        number = float(value)
        text = "nan" if np.isnan(number) else f"{number:.{digits}g}"
        return Cell(text=text, sort=repr(number), css=css)
    return Cell(text=str(value), sort=str(value), css=css)


def _figure(draw: Callable[[BinaryIO], None], caption: str) -> Figure:
    buffer = io.BytesIO()
    draw(buffer)
    return Figure(png=base64.b64encode(buffer.getvalue()).decode("ascii"), caption=caption)


def _verdict_css(verdict: str) -> str:
    return {"helped": "helped", "hurt": "hurt", "equivalent": "equivalent"}.get(verdict, "none")


def _tidy(value: float) -> float:
    """A difference with its float noise (below 1e-7 of one) shown as the 0 it is."""
    return 0.0 if abs(value) < 1e-7 else value


def _badge(c: dict[str, Any], alpha: float) -> Badge:
    """A verdict comparison as a badge: "helped", "+0.012 test.accuracy", its interval, the better way."""
    level = f"{(1 - alpha) * 100:.3f}".rstrip("0").rstrip(".")
    if c["ci_low"] is None or c["ci_high"] is None:
        interval = f"{level}% CI unbounded (every seed moved alike)"
    else:
        interval = f"{level}% CI {_tidy(c['ci_low']):+.3g} to {_tidy(c['ci_high']):+.3g}"
    if c.get("smallest_effect"):
        interval += f"; smallest effect that matters ±{c['smallest_effect']:.3g}"
    better_share = c.get("probability_of_improvement")
    if better_share:
        interval += (f"; P(treatment better) {better_share['estimate']:.2f} "
                     f"[{better_share['low']:.2f}, {better_share['high']:.2f}]")  # fmt: skip
    if c.get("aso_epsilon") is not None:
        interval += f"; ASO ε_min {c['aso_epsilon']:.2f} (< 0.2: almost stochastically better)"
    better = {True: "higher is better", False: "lower is better", None: "no better direction"}
    return Badge(word=c["verdict"], metric=c["metric"], effect=f"{_tidy(c['mean_difference']):+.4g}",
                 interval=interval, better=better[c["higher_is_better"]],
                 css=_verdict_css(c["verdict"]))  # fmt: skip


# --- what was compared, and where it ran ----------------------------------------------------------------


def _recorded(run: Path) -> dict[str, Any]:
    """A run's config.yaml (empty when it has none, e.g. a baseline written by an older version)."""
    import yaml

    files = RunDir(run)
    if not files.config.is_file():
        return {}
    with reading(files.config, "a run's config.yaml (as contrastlab train writes it)"):
        recorded = yaml.safe_load(files.config.read_text(encoding="utf-8")) or {}
    return recorded if isinstance(recorded, dict) else {}


def _config_diff(runs: dict[str, Path], ignore: tuple[str, ...] = ()) -> Section | None:
    """The config keys whose values differ between the runs, a column per run; None when they agree."""
    flat = {name: flat_settings(_recorded(run).get("config", {})) for name, run in runs.items()}
    keys = sorted({k for values in flat.values() for k in values})
    differing = [k for k in keys if k not in ignore and len({repr(v.get(k)) for v in flat.values()}) > 1]
    if not differing:
        return None
    section = Section("What was compared")
    rows = [[_cell(k, css="name"), *(_cell(str(flat[n].get(k, "(not set)"))) for n in runs)]
            for k in differing]  # fmt: skip
    caption = "the settings that differ; all others agree"
    section.tables.append(Table(["config key", *runs], rows, caption=caption))
    return section


def _metadata(runs: dict[str, Path]) -> Section | None:
    """Where and how each run was made (versions, threads, host, command, start, git commit, duration)."""
    metas: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        meta = _recorded(run).get("meta")
        if meta:
            metas[name] = meta
    if not metas:
        return None
    section = Section("Run metadata")
    keys = ["contrastlab", "torch", "torch_threads", "python", "host", "started", "git_commit", "command"]
    rows = []
    for name, meta in metas.items():
        history = RunDir(runs[name]).history
        seconds = None
        if history.is_file():
            seconds = sum(float(r.get("seconds", 0) or 0) for r in read_history(history))
        cells = [" ".join(meta[k]) if k == "command" and isinstance(meta.get(k), list) else meta.get(k, "")
                 for k in keys]  # fmt: skip
        rows.append([_cell(name, css="name"), *(_cell(str(c if c is not None else "")) for c in cells),
                     _cell(seconds if seconds is not None else "", digits=3)])  # fmt: skip
    section.tables.append(Table(["run", *keys, "training seconds"], rows))
    return section


# --- a single run ---------------------------------------------------------------------------------------


def _run_sections(run: Path) -> list[Section]:
    from contrastlab.diagnostics.summary import plot_projection
    from contrastlab.experiments.compare import plot_curves
    from contrastlab.train.diagnose import generalization_gap, load_embeddings

    files = RunDir(run)
    metrics = load_result(files.metrics, "metrics")
    summary = Section("Summary")
    best = metrics.get("best", {})
    if best:
        summary.paragraphs.append(
            f"Best {best.get('metric')} = {best.get('value'):.4g} at epoch {best.get('epoch')} "
            f"of {metrics.get('epochs_run')} epochs."
        )
    if metrics.get("test"):
        summary.tables.append(
            Table(["test metric", "value"], [[_cell(k), _cell(v)] for k, v in metrics["test"].items()])
        )
    sections = [summary]
    history = read_history(files.history) if files.history.is_file() else []
    if history:
        curves = Section("Training curves")
        curves.figures.append(
            _figure(
                lambda f: plot_curves({run.name: history}, f),
                "every logged loss term, metric, learning rate and gradient norm",
            )
        )
        sections.append(curves)
        gap = generalization_gap(history)
        rows = [
            [_cell(m), _cell(e[w]["train"]), _cell(e[w]["val"]), _cell(e[w]["difference"]), _cell(w)]
            for m, e in gap.items()
            for w in ("final", "at_best_val")
            if w in e
        ]
        if rows:
            section = Section("Train/val gap")
            section.tables.append(Table(["metric", "train (eval mode)", "val", "train - val", "when"], rows))
            sections.append(section)
    diag_file = files.diagnostics
    if diag_file.is_file():
        from contrastlab.experiments.verdict import flatten_numbers

        diag = read_json(diag_file, DIAGNOSTICS_FILE)
        flat: dict[str, float] = {}
        flatten_numbers("", diag.get("embedding", {}), flat)
        section = Section(f"Representation diagnostics ({diag.get('split', 'val')} split)")
        section.tables.append(Table(["diagnostic", "value"], [[_cell(k), _cell(v)] for k, v in flat.items()]))
        sections.append(section)
    split = next((s for s in ("test", "val") if files.embedding_file(s).is_file()), None)
    if split is not None:
        emb, targets = load_embeddings(files.embedding_file(split))
        section = Section("Embedding projection")
        section.figures.append(
            _figure(
                lambda f: plot_projection(emb, targets, f, title=f"PCA of {split} embeddings"),
                f"first two principal components of the {split} embeddings, coloured by target",
            )
        )
        sections.append(section)
    meta = _metadata({run.name: run})
    if meta is not None:
        sections.append(meta)
    return sections


# --- a comparison ---------------------------------------------------------------------------------------


def _comparison_sections(directory: Path) -> list[Section]:
    from contrastlab.experiments.compare import plot_curves

    result = load_result(directory / "compare.json", "compare")
    table_rows: list[dict[str, Any]] = []
    for run in result["runs"]:
        row: dict[str, Any] = {
            "run": run["run"],
            "epochs": run["epochs"],
            "best": run["best"].get("value", float("nan")),
        }
        row.update({f"test.{k}": v for k, v in run["test"].items()})
        row.update({f"gap.{k}": v for k, v in run["gap"].items()})
        row.update({f"diag.{k}": v for k, v in run.get("diagnostics", {}).items()})
        table_rows.append(row)
    columns = list(dict.fromkeys(k for row in table_rows for k in row))
    section = Section("Runs side by side")
    section.paragraphs.append(
        "best: the monitored validation metric at its best epoch; gap: final train "
        "(eval mode) minus val. Click a column to sort."
    )
    section.tables.append(Table(columns, [[_cell(r.get(c, "")) for c in columns] for r in table_rows]))
    sections = [section]
    paths = {run["run"]: Path(run["path"]) for run in result["runs"]}
    diff = _config_diff(paths)
    if diff is not None:
        sections.append(diff)
    histories = {}
    missing = []
    for run in result["runs"]:
        path = Path(run["path"])
        if RunDir(path).history.is_file():
            histories[run["run"]] = read_history(RunDir(path).history)
        else:
            missing.append(run["run"])
    curves = Section("Curves")
    if histories:
        curves.figures.append(_figure(lambda f: plot_curves(histories, f), "one line per run"))
    if missing:
        curves.notes.append(f"no history.csv for {', '.join(missing)} (a baseline, or a moved run directory)")
    sections.append(curves)
    meta = _metadata(paths)
    if meta is not None:
        sections.append(meta)
    return sections


# --- a sweep --------------------------------------------------------------------------------------------


def _sweep_sections(directory: Path) -> list[Section]:
    from contrastlab.experiments.sweep import plot_sweep

    result = load_result(directory / "sweep.json", "sweep")
    params = list(result["params"])
    states = [t["state"] for t in result["trials"]]
    summary = Section("Summary")
    counts = ", ".join(f"{s.lower()} {states.count(s)}" for s in sorted(set(states)))
    summary.paragraphs.append(
        f"{len(states)} trials ({counts}) over {', '.join(params)}; "
        f"objective: {result['monitor']} ({result['mode']}imize)."
    )
    if result.get("best"):
        best = result["best"]
        chosen = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        summary.headlines.append(Headline(f"best {result['monitor']} = {best['value']:.4g} with {chosen}"))
    sections = [summary]
    # every trial's run sits in the sweep's trials/ (sweep.json records the path as the sweep was given it)
    runs = {f"trial {t['number']}": directory / "trials" / Path(t["run_dir"]).name for t in result["trials"]
            if t.get("run_dir") and RunDir(directory / "trials" / Path(t["run_dir"]).name).config.is_file()}
    diff = _config_diff(runs) if len(runs) > 1 else None
    if diff is not None:
        sections.append(diff)
    if any(s == "COMPLETE" for s in states):
        figure = Section("Grid" if len(params) > 1 else "Metric by value")
        caption = (
            f"best {result['monitor']} per cell, {params[0]} x {params[1]}; one seed per cell, so a "
            "difference within the seed-to-seed spread is not evidence (a verdict measures it); the colours "
            "span at least 5% of the mean"
            if len(params) > 1
            else f"best {result['monitor']} per value of {params[0]}"
        )
        figure.figures.append(_figure(lambda f: plot_sweep(result, f), caption))
        sections.append(figure)
    trials = Section("Trials")
    rows = [
        [
            _cell(t["number"]),
            _cell(t["state"]),
            *(_cell(t["params"].get(p, "")) for p in params),
            _cell(t["value"] if t["value"] is not None else float("nan")),
            _cell(t.get("run_dir") or ""),
        ]
        for t in result["trials"]
    ]
    trials.tables.append(Table(["trial", "state", *params, result["monitor"], "run directory"], rows))
    sections.append(trials)
    meta = _metadata(runs)
    if meta is not None:
        sections.append(meta)
    return sections


# --- a verdict ------------------------------------------------------------------------------------------


def _verdict_sections(directory: Path) -> list[Section]:
    from contrastlab.diagnostics.layers import plot_cka_heatmap
    from contrastlab.experiments.verdict import arm_run, extension_sentence
    from contrastlab.train.diagnose import load_embeddings

    verdict = load_result(directory / "verdict.json", "verdict")
    comparisons = verdict["comparisons"]
    seeds = verdict["seeds"]
    summary = Section("Verdict")
    recipe = verdict["recipe"]  # a path, or a mapping given from Python
    on = recipe if isinstance(recipe, str) else f"recipe {recipe.get('name') or '(from Python)'}"
    summary.paragraphs.append(
        f"Treatment {' '.join(verdict['treatment'])} against baseline {' '.join(verdict['baseline'])} on "
        f"{on}, {len(seeds)} seeds ({', '.join(map(str, seeds))}); each seed's two runs "
        "share the split and the initial weights."
    )
    primary = verdict.get("primary")
    alpha = float(verdict.get("alpha", 0.05))
    for c in comparisons:
        if c["metric"] == primary or (primary is None and c["metric"].startswith("test.")):
            summary.badges.append(_badge(c, alpha))
            summary.headlines.append(Headline(f"{c['metric']}: {c['sentence']}", _verdict_css(c["verdict"])))
    summary.figures.append(
        _figure(lambda f: _plot_forest(comparisons, f),
                "every metric's paired difference with its interval, as a share of the baseline mean and "
                "turned so that right is better (metrics with no better direction as measured); colour: the "
                "call")
    )  # fmt: skip
    varied = ", ".join(verdict.get("vary", ["init", "order"]))
    summary.paragraphs.append(f"Drawn anew at each seed (the same in both arms): {varied}.")
    sequential = verdict.get("sequential")
    if sequential:
        summary.paragraphs.append(
            f"Seeds were added until the call was decided: {sequential['stopped_at']} of at most "
            f"{sequential['most']}, each of {sequential['looks']} looks tested at α = "
            f"{sequential['alpha_per_look']:.3g} (Bonferroni over the looks), so intervals are at that level."
        )
    if verdict.get("extended"):
        summary.paragraphs.append(extension_sentence(verdict["extended"], len(verdict["seeds"])))
    if any(c.get("p_adjusted") is not None for c in comparisons):
        summary.paragraphs.append(
            "Verdicts are called on Holm-adjusted p-values, within the task metrics and within the "
            "diagnostics: testing many metrics at once would otherwise find a 'significant' one by chance. "
            + (f"The primary metric is {primary}, the test value of the metric the recipe early-stops on."
               if primary else "")
        )  # fmt: skip
    rows = []
    for c in comparisons:
        mde = c["minimum_detectable_effect"] if c["minimum_detectable_effect"] is not None else ""
        bounded = c["ci_low"] is not None and c["ci_high"] is not None
        interval = f"{_tidy(c['ci_low']):+.3g} to {_tidy(c['ci_high']):+.3g}" if bounded else "unbounded"
        rows.append(
            [
                _cell(c.get("call", c["verdict"]), css=_verdict_css(c["verdict"])),
                _cell(c["metric"], css="name"),
                _cell(float(np.mean(c["baseline"]))),
                _cell(float(np.mean(c["treatment"]))),
                _cell(_tidy(c["mean_difference"]), digits=3),
                Cell(text=interval, sort=repr(c["ci_low"] if bounded else float("-inf"))),
                _cell(c["p_value"], digits=3),
                _cell(c["p_adjusted"] if c.get("p_adjusted") is not None else "", digits=3),
                _cell(mde, digits=3),
                _cell(c["probability_of_improvement"]["estimate"] if c.get("probability_of_improvement")
                      else "", digits=2),
            ]
        )  # fmt: skip
    level = f"{(1 - alpha) * 100:.3f}".rstrip("0").rstrip(".")
    every = Section("Every metric")
    every.tables.append(
        Table(
            [
                "verdict",
                "metric",
                "baseline",
                "treatment",
                "difference",
                f"{level}% CI",
                "p (paired t)",
                "p (Holm)",
                "detectable effect",
                "P(better)",
            ],
            rows,
            caption="means over seeds; difference = treatment - baseline",
        )
    )
    sections = [summary]
    first = {arm: arm_run(directory, arm, seeds[0]).path for arm in ("baseline", "treatment")}
    diff = _config_diff(first)
    if diff is not None:
        sections.append(diff)
    sections.append(every)

    per_seed = Section("Per seed")
    columns = ["metric", "arm", *(f"seed {s}" for s in seeds)]
    seed_rows = []
    for c in comparisons:
        for arm in ("baseline", "treatment"):
            seed_rows.append([_cell(c["metric"]), _cell(arm), *(_cell(v) for v in c[arm])])
        seed_rows.append(
            [_cell(c["metric"]), _cell("difference"), *(_cell(v, digits=3) for v in c["differences"])]
        )
    per_seed.tables.append(Table(columns, seed_rows))
    for k in seeds:
        for arm in ("baseline", "treatment"):
            run = arm_run(directory, arm, k)
            per_seed.links.append(Link(f"{arm} seed {k}", f"{arm}/seed{k}/"))
            if (run.path / "report.html").is_file():
                per_seed.links.append(Link("(its report)", f"{arm}/seed{k}/report.html"))
    sections.append(per_seed)

    histories: dict[str, list[list[dict[str, Any]]]] = {"baseline": [], "treatment": []}
    best_epochs: dict[str, list[int]] = {"baseline": [], "treatment": []}
    for arm in histories:
        for s in seeds:
            run = arm_run(directory, arm, s)
            if run.history.is_file():
                histories[arm].append(read_history(run.history))
            if run.metrics.is_file():
                best_epochs[arm].append(int(load_result(run.metrics, "metrics")["best"]["epoch"]))
    if histories["baseline"] and histories["treatment"]:
        curves = Section("Curves")
        curves.figures.append(
            _figure(
                lambda f: _plot_arm_curves(histories, best_epochs, f),
                "each arm's mean over seeds (line) and lowest to highest seed (band); ticks: each "
                "seed's best epoch; baseline blue, treatment orange",
            )
        )
        sections.append(curves)

    projection = Section("Embeddings of both arms")
    seed = seeds[0]
    files = {arm: arm_run(directory, arm, seed).embedding_file("test") for arm in ("baseline", "treatment")}
    if all(p.is_file() for p in files.values()):
        loaded = {arm: load_embeddings(p) for arm, p in files.items()}
        projection.figures.append(
            _figure(
                lambda f: _plot_arm_projections(loaded, f),
                f"PCA of the test embeddings, seed {seed}, coloured by target",
            )
        )
    else:
        projection.notes.append(f"no test embeddings for seed {seed} in both arms")
    sections.append(projection)

    cka = Section("CKA between the arms")
    stage_cka = verdict.get("stage_cka_baseline_vs_treatment", {})
    if stage_cka:
        stages = list(stage_cka)
        matrix = np.array([stage_cka[s] for s in stages], dtype=np.float64)  # (stages, seeds)
        cka.paragraphs.append(
            "Linear CKA between the baseline and the treatment model at each stage, on the "
            "test inputs: 1 means the treatment left that stage's representation unchanged "
            "(up to rotation and scale)."
        )
        cka.figures.append(
            _figure(
                lambda f: plot_cka_heatmap(
                    matrix,
                    stages,
                    [f"seed {s}" for s in seeds],
                    f,
                    title="CKA baseline vs treatment",
                    name_a="stage",
                    name_b="seed",
                ),
                "stage x seed",
            )
        )
        diag_file = arm_run(directory, "treatment", seed).diagnostics
        if diag_file.is_file():
            full = read_json(diag_file, DIAGNOSTICS_FILE).get("comparison", {}).get("stage_cka_matrix")
            if full:
                values = np.array(full["values"], dtype=np.float64)
                cka.figures.append(
                    _figure(
                        lambda f: plot_cka_heatmap(
                            values,
                            full["stages"],
                            full["stages"],
                            f,
                            title=f"every stage pair, seed {seed}",
                            name_a="treatment",
                            name_b="baseline",
                        ),
                        "CKA of every treatment stage against every baseline stage",
                    )
                )
        sections.append(cka)
    meta = _metadata({f"{arm} seed {k}": arm_run(directory, arm, k).path for k in seeds
                      for arm in ("baseline", "treatment")})  # fmt: skip
    if meta is not None:
        sections.append(meta)
    return sections


def _plot_forest(comparisons: list[dict[str, Any]], path: str | BinaryIO) -> None:
    """One forest plot: a row per metric, a panel per family (task, diagnostic) with one shared axis each:
    the difference and its interval in % of the baseline mean, turned so that right is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"helped": "#1b7f3b", "hurt": "#b3261e", "equivalent": "#1f5fa8"}
    grouped: dict[str, list[dict[str, Any]]] = {"task": [], "diagnostic": []}
    for c in comparisons:
        grouped[c.get("family") or "task"].append(c)
    families = [(f, rows) for f, rows in grouped.items() if rows]
    heights = [max(1, len(rows)) for _, rows in families]
    fig, axes = plt.subplots(len(families), 1, figsize=(9.5, 0.34 * sum(heights) + 1.4 * len(families)),
                             squeeze=False, gridspec_kw={"height_ratios": heights})  # fmt: skip
    for ax, (family, rows) in zip(axes[:, 0], families, strict=True):
        labels = []
        for i, c in enumerate(reversed(rows)):
            scale = abs(float(np.mean(c["baseline"])))
            sign = -1.0 if c["higher_is_better"] is False else 1.0
            unit = 100.0 * sign / scale if scale > 1e-12 else float("nan")
            color = colors.get(c["verdict"], "#5d6678")
            mid = c["mean_difference"] * unit
            if c["ci_low"] is not None and c["ci_high"] is not None and np.isfinite(mid):
                low, high = sorted((c["ci_low"] * unit, c["ci_high"] * unit))
                ax.plot([low, high], [i, i], color=color, linewidth=2.2)
            if np.isfinite(mid):
                ax.plot([mid], [i], "o", color=color, markersize=5)
            arrow = {True: "↑", False: "↓", None: "·"}[c["higher_is_better"]]
            labels.append(f"{c['metric']} {arrow}  {c.get('call', c['verdict'])}")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), labels, fontsize=8.5)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.tick_params(axis="x", labelsize=8.5)
        ax.set_xlabel("treatment - baseline, % of the baseline mean   (worse ←   → better)", fontsize=9)
        ax.set_title(f"{family} metrics", fontsize=10, loc="left")
        ax.grid(axis="x", color="#e5e7eb", linewidth=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_arm_curves(histories: dict[str, list[list[dict[str, Any]]]], best: dict[str, list[int]],
                     path: str | BinaryIO) -> None:  # fmt: skip
    """Each arm's mean over seeds per epoch with a min-max band, and each seed's best epoch as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    first = histories["treatment"][0][0]
    columns = [
        k
        for k in first
        if (k.startswith(("train/", "val/")) or k == "lr")
        and not k.endswith(("positives_per_anchor", "no_positive_share", "duplicate_share"))
    ]
    cols = 3
    rows = max(1, -(-len(columns) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    colors = {"baseline": "#1f77b4", "treatment": "#ff7f0e"}
    for ax, column in zip(axes.flat, columns, strict=False):
        for arm, runs in histories.items():
            # Mean over seeds at each epoch, with a band from the lowest to the highest seed (seeds that
            # stopped early drop out of the later epochs).
            by_epoch: dict[int, list[float]] = {}
            for history in runs:
                for r in history:
                    value = r.get(column)
                    if isinstance(value, float) and np.isfinite(value):
                        by_epoch.setdefault(int(r["epoch"]), []).append(value)
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            values = [np.asarray(by_epoch[e]) for e in epochs]
            label = f"{arm} (mean of {len(runs)} seeds, band min-max)"
            ax.plot(epochs, [v.mean() for v in values], color=colors[arm], linewidth=1.6, label=label)
            ax.fill_between(epochs, [v.min() for v in values], [v.max() for v in values], color=colors[arm],
                            alpha=0.18, linewidth=0)  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        if column == "lr":
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    for ax in list(axes.flat)[: len(columns)]:
        for arm, epochs in best.items():  # each seed's best epoch, as ticks along the bottom
            ax.plot(epochs, [0.02] * len(epochs), "|", color=colors[arm], markersize=8,
                    transform=ax.get_xaxis_transform())  # fmt: skip
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_arm_projections(
    loaded: dict[str, tuple[np.ndarray, np.ndarray | None]], path: str | BinaryIO
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(loaded), figsize=(5 * len(loaded), 4.4), squeeze=False)
    for ax, (arm, (emb, targets)) in zip(axes.flat, loaded.items(), strict=True):
        x = emb - emb.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        xy = x @ vt[:2].T  # (n, 2)
        classes = targets is not None and targets.dtype.kind in "iub" and len(np.unique(targets)) <= 10
        points = ax.scatter(xy[:, 0], xy[:, 1], c=targets, s=8, cmap="tab10" if classes else "viridis")
        if targets is not None and not classes:
            fig.colorbar(points, ax=ax, fraction=0.046)
        elif classes:
            ax.legend(*points.legend_elements(), fontsize=7, title="class", title_fontsize=7)
        ax.set_title(arm)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- verdicts over several recipes ---------------------------------------------------------------------


def _verdicts_sections(directory: Path) -> list[Section]:
    result = read_json(directory / "verdicts.json", "verdicts over recipes (contrastlab verdict --recipes)",
                       keys=("aggregate",))
    agg = result["aggregate"]
    iqm, better = agg["iqm_normalised_difference"], agg["probability_of_improvement"]
    summary = Section("Across recipes")
    summary.headlines.append(Headline(
        f"IQM of the per-seed differences: {iqm['estimate']:+.2%} of the baseline "
        f"[{iqm['low']:+.2%}, {iqm['high']:+.2%}]; P(treatment better) {better['estimate']:.2f} "
        f"[{better['low']:.2f}, {better['high']:.2f}] over {agg['recipes']} recipes"))  # fmt: skip
    summary.paragraphs.append(
        "Each recipe's primary metric, its per-seed differences as a share of the recipe's baseline mean "
        "(positive = better); the interquartile mean and the probability of improvement averaged over "
        "recipes, with stratified bootstrap 95% intervals (rliable's aggregate view). Calls are "
        "Holm-adjusted across recipes."
    )
    # the call and its numbers first; the arms' settings (long key=value lists) last, wrapped
    rows = [[_cell(r["call"], css=_verdict_css(r["verdict"])), _cell(r["recipe"], css="name"),
             _cell(r["metric"], css="name"), _cell(r["mean_difference"], digits=3),
             _cell(r["p_value"], digits=3), _cell(r["p_holm_recipes"], digits=3), _cell(r.get("seeds", "")),
             _cell(" ".join(r.get("treatment", [])) or "", css="settings"),
             _cell(" ".join(r.get("baseline", [])) or "", css="settings")]
            for r in result["per_recipe"]]  # fmt: skip
    columns = ["verdict", "recipe", "metric", "difference", "p", "p (Holm, recipes)", "seed pairs",
               "treatment", "baseline"]
    summary.tables.append(Table(columns, rows))
    for r in result["per_recipe"]:
        summary.links.append(Link(f"{r['recipe']}: its verdict and runs", f"{r['recipe']}/"))
    return [summary]


# --- a curve of verdicts ------------------------------------------------------------------------------


def _curve_sections(directory: Path) -> list[Section]:
    from contrastlab.experiments.curve import plot_curve, read_curve
    from contrastlab.experiments.stats import percent

    curve = read_curve(directory)
    base, treated = curve["arms"]
    summary = Section("Curve")
    summary.headlines.append(Headline(
        f"{curve['metric']}, {treated} - {base}: "
        + "; ".join(f"{p['label']}: {p['summary']['call']}" for p in curve["points"])))  # fmt: skip
    if curve.get("notes"):
        summary.paragraphs.append(curve["notes"])
    summary.figures.append(_figure(lambda f: plot_curve(curve, f),
                                   f"{curve['title']}: both arms per point, and the paired difference with "
                                   "each verdict's interval (shaded: the equivalence margin)"))  # fmt: skip

    def spread(values: list[float]) -> str:
        mean = float(np.mean(values))
        return f"{mean:.4g} ± {float(np.std(values, ddof=1)) if len(values) > 1 else 0.0:.2g}"

    rows = []
    for p in curve["points"]:
        s = p["summary"]
        low, high = s["ci"]
        bounded = low is not None and high is not None
        level = percent(s["confidence"])
        interval = f"{_tidy(low):+.3g} to {_tidy(high):+.3g} ({level})" if bounded else "unbounded"
        rows.append([
            Cell(text=p["label"], sort=repr(float(p["x"])), css="name"), _cell(s["n"]),
            Cell(text=spread(s["baseline"]), sort=repr(s["baseline_mean"])),
            Cell(text=spread(s["treatment"]), sort=repr(s["treatment_mean"])),
            _cell(_tidy(s["difference"]), digits=3),
            Cell(text=interval, sort=repr(low if bounded else float("-inf"))),
            _cell(s["call"], css=_verdict_css(s["verdict"])),
        ])  # fmt: skip
    summary.tables.append(Table(
        [curve["x_label"], "seed pairs", f"{base} (mean ± sd)", f"{treated} (mean ± sd)", "difference",
         "interval", "call"], rows,
        caption=f"{curve['metric']} over seeds; difference = {treated} - {base}, paired by seed",
    ))  # fmt: skip
    for p in curve["points"]:
        summary.links.append(Link(f"{p['label']}: its verdict and runs", f"{p['verdict']}/"))
    return [summary]


# --- entry points ---------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[Path], list[Section]]] = {
    "curve": _curve_sections,
    "verdicts": _verdicts_sections,
    "verdict": _verdict_sections,
    "sweep": _sweep_sections,
    "comparison": _comparison_sections,
    "run": _run_sections,
}


def build_report(directory: str | Path) -> Report:
    """Reads the saved results in ``directory`` into a :class:`Report` (sections of tables and figures).

    Raises:
        FileNotFoundError: the directory holds none of curve.json, verdicts.json, verdict.json, sweep.json,
            compare.json, metrics.json; or a curve's point whose verdict has not finished.
    """
    path = Path(directory)
    for filename, kind in _KINDS:
        if (path / filename).is_file():
            return Report(
                title=f"contrastlab {kind}: {path.resolve().name}",
                kind=kind,
                source=str(path),
                sections=_BUILDERS[kind](path),
            )
    raise FileNotFoundError(
        f"{path} holds no contrastlab result: expected one of {', '.join(f for f, _ in _KINDS)}"
    )


def render_html(report: Report) -> str:
    """The report as one HTML document (autoescaped; images inline)."""
    import jinja2

    from contrastlab import __version__

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("contrastlab.experiments.report", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template("template.html.j2")
    return template.render(
        title=report.title,
        kind=report.kind,
        source=report.source,
        sections=report.sections,
        version=__version__,
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Renders the report of ``directory`` into ``out`` (default ``DIR/report.html``), atomically. Links to
    the result's files are relative to where the report is written."""
    report = build_report(directory)
    target = Path(out) if out is not None else Path(directory) / "report.html"
    base = os.path.relpath(Path(directory).resolve(), target.resolve().parent)
    for section in report.sections:
        for link in section.links:
            link.path = Path(base, link.path).as_posix() if base != "." else link.path
    with atomic_write(target, "wb") as handle:
        handle.write(render_html(report).encode("utf-8"))
    return target
