"""``contrastlab compare``: any set of runs side by side, as one table and one figure of curves."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, BinaryIO

from contrastlab._io import read_json
from contrastlab.experiments.results import ComparedRun, RunComparison
from contrastlab.experiments.schemas import load_result
from contrastlab.train.checkpoint import read_history, write_json
from contrastlab.train.diagnose import generalization_gap
from contrastlab.train.rundir import RunDir

__all__ = ["compare_runs", "plot_curves"]

_DIAGNOSTICS = ("probes.logistic.accuracy", "probes.knn1_accuracy", "clustering.ari", "geometry.uniformity",
                "geometry.rankme")  # fmt: skip


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def compare_runs(run_dirs: list[str | Path], *, out_dir: str | Path | None = None) -> RunComparison:
    """Collects each run's best, final and test metrics, its train/val gap and (when ``contrastlab
    diagnose`` has run) its main diagnostics; writes ``compare.json`` and ``curves.png`` to ``out_dir``.

    Raises:
        FileNotFoundError: a directory that is not a finished run.
    """
    runs = []
    histories = {}
    paths = [Path(p) for p in run_dirs]
    # Runs are named by their directory; where two share a name (seed0 of two arms), by parent/name.
    names = [p.name for p in paths]
    names = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
    for run_dir, name in zip(paths, names, strict=True):
        files = RunDir(run_dir)
        if not files.is_complete():
            raise FileNotFoundError(f"{run_dir} has no metrics.json: is it a finished contrastlab run?")
        metrics = load_result(files.metrics, "metrics")
        has_history = files.history.is_file()  # baselines (e.g. a fingerprint forest) have none
        history = read_history(files.history) if has_history else []
        histories[name] = history
        gap = {
            m: entry["final"]["difference"]
            for m, entry in generalization_gap(history).items()
            if "final" in entry
        }
        diagnostics = None
        if files.diagnostics.is_file():
            diag = read_json(files.diagnostics, "a run's diagnostics.json", keys=("embedding",))["embedding"]
            diagnostics = {k: v for k in _DIAGNOSTICS if (v := _dig(diag, k)) is not None}
        final_val = {k[4:]: v for k, v in metrics["final"].items() if k.startswith("val/")}
        runs.append(ComparedRun(run=name, path=str(run_dir), epochs=metrics["epochs_run"],
                                best=metrics["best"], test=metrics["test"], final_val=final_val, gap=gap,
                                diagnostics=diagnostics))  # fmt: skip
    if out_dir is None:
        return RunComparison(runs)
    out = Path(out_dir)
    write_json(RunComparison(runs).to_dict(), out / "compare.json")
    plots = []
    if importlib.util.find_spec("matplotlib") is not None:
        plot_curves(histories, str(out / "curves.png"))
        plots.append("curves.png")
    return RunComparison(runs, plots)


def plot_curves(histories: dict[str, list[dict[str, Any]]], path: str | BinaryIO) -> None:
    """One panel per logged quantity (each loss term, val metrics, lr, grad norms), one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns: list[str] = []
    for history in histories.values():
        for key in history[0] if history else []:
            keep = key.startswith(("train/", "val/", "grad_norm/")) or key == "lr"
            skip = key.endswith(("positives_per_anchor", "no_positive_share", "duplicate_share", "grad_norm"))
            if keep and not skip and key not in columns:
                columns.append(key)
    cols = 3
    rows = max(1, -(-len(columns) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, column in zip(axes.flat, columns, strict=False):
        for name, history in histories.items():
            points = [(row["epoch"], row[column]) for row in history if isinstance(row.get(column), float)]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=name)
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        if column == "lr":
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
