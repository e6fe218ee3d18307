"""Report sections of runs: a single run, a comparison of runs, a sweep; and what every kind shows of its
runs (the settings that differ, where and how each ran)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contrastlab._io import read_json, reading
from contrastlab.experiments.report.document import Headline, Section, Table, cell, figure
from contrastlab.experiments.results import RunComparison, SweepResult
from contrastlab.experiments.schemas import load_result
from contrastlab.train.checkpoint import read_history
from contrastlab.train.keys import flat_settings
from contrastlab.train.rundir import RunDir

__all__ = ["DIAGNOSTICS_FILE", "comparison_sections", "config_diff", "metadata", "run_sections",
           "sweep_sections"]

DIAGNOSTICS_FILE = "a run's diagnostics.json (as contrastlab diagnose writes it)"



def _recorded(run: Path) -> dict[str, Any]:
    """A run's config.yaml (empty when it has none, e.g. a baseline written by an older version)."""
    import yaml

    files = RunDir(run)
    if not files.config.is_file():
        return {}
    with reading(files.config, "a run's config.yaml (as contrastlab train writes it)"):
        recorded = yaml.safe_load(files.config.read_text(encoding="utf-8")) or {}
    return recorded if isinstance(recorded, dict) else {}


def config_diff(runs: dict[str, Path], ignore: tuple[str, ...] = ()) -> Section | None:
    """The config keys whose values differ between the runs, a column per run; None when they agree."""
    flat = {name: flat_settings(_recorded(run).get("config", {})) for name, run in runs.items()}
    keys = sorted({k for values in flat.values() for k in values})
    differing = [k for k in keys if k not in ignore and len({repr(v.get(k)) for v in flat.values()}) > 1]
    if not differing:
        return None
    section = Section("What was compared")
    rows = [[cell(k, css="name"), *(cell(str(flat[n].get(k, "(not set)"))) for n in runs)]
            for k in differing]  # fmt: skip
    caption = "the settings that differ; all others agree"
    section.tables.append(Table(["config key", *runs], rows, caption=caption))
    return section


def metadata(runs: dict[str, Path]) -> Section | None:
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
        rows.append([cell(name, css="name"), *(cell(str(c if c is not None else "")) for c in cells),
                     cell(seconds if seconds is not None else "", digits=3)])  # fmt: skip
    section.tables.append(Table(["run", *keys, "training seconds"], rows))
    return section


# --- a single run ---------------------------------------------------------------------------------------


def run_sections(run: Path) -> list[Section]:
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
            Table(["test metric", "value"], [[cell(k), cell(v)] for k, v in metrics["test"].items()])
        )
    sections = [summary]
    history = read_history(files.history) if files.history.is_file() else []
    if history:
        curves = Section("Training curves")
        curves.figures.append(
            figure(
                lambda f: plot_curves({run.name: history}, f),
                "every logged loss term, metric, learning rate and gradient norm",
            )
        )
        sections.append(curves)
        gap = generalization_gap(history)
        rows = [
            [cell(m), cell(e[w]["train"]), cell(e[w]["val"]), cell(e[w]["difference"]), cell(w)]
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
        from contrastlab.experiments.arms import flatten_numbers

        diag = read_json(diag_file, DIAGNOSTICS_FILE)
        flat: dict[str, float] = {}
        flatten_numbers("", diag.get("embedding", {}), flat)
        section = Section(f"Representation diagnostics ({diag.get('split', 'val')} split)")
        section.tables.append(Table(["diagnostic", "value"], [[cell(k), cell(v)] for k, v in flat.items()]))
        sections.append(section)
    split = next((s for s in ("test", "val") if files.embedding_file(s).is_file()), None)
    if split is not None:
        emb, targets = load_embeddings(files.embedding_file(split))
        section = Section("Embedding projection")
        section.figures.append(
            figure(
                lambda f: plot_projection(emb, targets, f, title=f"PCA of {split} embeddings"),
                f"first two principal components of the {split} embeddings, coloured by target",
            )
        )
        sections.append(section)
    meta = metadata({run.name: run})
    if meta is not None:
        sections.append(meta)
    return sections


# --- a comparison ---------------------------------------------------------------------------------------


def comparison_sections(directory: Path) -> list[Section]:
    """Runs side by side: a sortable table, the settings that differ, the curves and where each ran."""
    result = RunComparison.from_json(directory)
    paths = {run.run: Path(run.path) for run in result.runs}
    sections = [_runs_table(result), config_diff(paths), _runs_curves(result), metadata(paths)]
    return [s for s in sections if s is not None]


def _runs_table(result: RunComparison) -> Section:
    table_rows: list[dict[str, Any]] = []
    for run in result.runs:
        best = run.best.get("value", float("nan"))
        row: dict[str, Any] = {"run": run.run, "epochs": run.epochs, "best": best}
        row.update({f"test.{k}": v for k, v in run.test.items()})
        row.update({f"gap.{k}": v for k, v in run.gap.items()})
        row.update({f"diag.{k}": v for k, v in (run.diagnostics or {}).items()})
        table_rows.append(row)
    columns = list(dict.fromkeys(k for row in table_rows for k in row))
    section = Section("Runs side by side")
    section.paragraphs.append(
        "best: the monitored validation metric at its best epoch; gap: final train "
        "(eval mode) minus val. Click a column to sort."
    )
    section.tables.append(Table(columns, [[cell(r.get(c, "")) for c in columns] for r in table_rows]))
    return section


def _runs_curves(result: RunComparison) -> Section:
    from contrastlab.experiments.compare import plot_curves

    histories, missing = {}, []
    for run in result.runs:
        history = RunDir(run.path).history
        if history.is_file():
            histories[run.run] = read_history(history)
        else:
            missing.append(run.run)
    curves = Section("Curves")
    if histories:
        curves.figures.append(figure(lambda f: plot_curves(histories, f), "one line per run"))
    if missing:
        curves.notes.append(f"no history.csv for {', '.join(missing)} (a baseline, or a moved run directory)")
    return curves


# --- a sweep --------------------------------------------------------------------------------------------


def sweep_sections(directory: Path) -> list[Section]:
    """A sweep: its summary and best trial, the settings that differ, the metric over the grid, the trials."""
    result = SweepResult.from_json(directory)
    # every trial's run sits in the sweep's trials/ (sweep.json records the path as the sweep was given it)
    trial_runs = {f"trial {t.number}": directory / "trials" / Path(t.run_dir).name for t in result.trials
                  if t.run_dir}  # fmt: skip
    runs = {name: path for name, path in trial_runs.items() if RunDir(path).config.is_file()}
    sections = [_sweep_summary(result), config_diff(runs) if len(runs) > 1 else None, _sweep_grid(result),
                _sweep_trials(result), metadata(runs)]  # fmt: skip
    return [s for s in sections if s is not None]


def _sweep_summary(result: SweepResult) -> Section:
    states = [t.state for t in result.trials]
    summary = Section("Summary")
    counts = ", ".join(f"{s.lower()} {states.count(s)}" for s in sorted(set(states)))
    summary.paragraphs.append(
        f"{len(states)} trials ({counts}) over {', '.join(result.params)}; "
        f"objective: {result.monitor} ({result.mode}imize)."
    )
    best = result.best
    if best is not None:
        chosen = ", ".join(f"{k}={v}" for k, v in best.params.items())
        summary.headlines.append(Headline(f"best {result.monitor} = {best.value:.4g} with {chosen}"))
    return summary


def _sweep_grid(result: SweepResult) -> Section | None:
    from contrastlab.experiments.sweep import plot_sweep

    if not any(t.state == "COMPLETE" for t in result.trials):
        return None
    params = list(result.params)
    grid = Section("Grid" if len(params) > 1 else "Metric by value")
    caption = (
        f"best {result.monitor} per cell, {params[0]} x {params[1]}; one seed per cell, so a "
        "difference within the seed-to-seed spread is not evidence (a verdict measures it); the colours "
        "span at least 5% of the mean"
        if len(params) > 1
        else f"best {result.monitor} per value of {params[0]}"
    )
    grid.figures.append(figure(lambda f: plot_sweep(result, f), caption))
    return grid


def _sweep_trials(result: SweepResult) -> Section:
    params = list(result.params)
    trials = Section("Trials")
    rows = [[cell(t.number), cell(t.state), *(cell(t.params.get(p, "")) for p in params),
             cell(t.value if t.value is not None else float("nan")), cell(t.run_dir or "")]
            for t in result.trials]  # fmt: skip
    trials.tables.append(Table(["trial", "state", *params, result.monitor, "run directory"], rows))
    return trials
