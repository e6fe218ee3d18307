"""``contrastlab compare``: any set of runs side by side, as one table and one figure of curves."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, BinaryIO

from contrastlab._io import read_json
from contrastlab.experiments.schemas import load_result
from contrastlab.train.checkpoint import read_history, write_json
from contrastlab.train.diagnose import generalization_gap
from contrastlab.train.rundir import RunDir

__all__ = ["compare_runs", "format_comparison", "plot_curves"]

_DIAGNOSTICS = ("probes.logistic.accuracy", "probes.knn1_accuracy", "clustering.ari", "geometry.uniformity",
                "geometry.rankme")  # fmt: skip


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def compare_runs(run_dirs: list[str | Path], *, out_dir: str | Path | None = None) -> dict[str, Any]:
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
        row: dict[str, Any] = {
            "run": name,
            "path": str(run_dir),
            "epochs": metrics["epochs_run"],
            "best": metrics["best"],
            "test": metrics["test"],
            "final_val": {k[4:]: v for k, v in metrics["final"].items() if k.startswith("val/")},
            "gap": gap,
        }
        diag_file = files.diagnostics
        if diag_file.is_file():
            diag = read_json(diag_file, "a run's diagnostics.json", keys=("embedding",))["embedding"]
            row["diagnostics"] = {k: v for k in _DIAGNOSTICS if (v := _dig(diag, k)) is not None}
        runs.append(row)
    result: dict[str, Any] = {"runs": runs}
    if out_dir is not None:
        out = Path(out_dir)
        write_json(result, out / "compare.json")
        if importlib.util.find_spec("matplotlib") is not None:
            plot_curves(histories, str(out / "curves.png"))
            result["plots"] = ["curves.png"]
    return result


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


def format_comparison(result: dict[str, Any]) -> str:
    """One row per run: best monitored metric, test metrics, final val metrics, gaps, diagnostics."""
    keys: list[str] = []
    table = []
    for run in result["runs"]:
        flat = {"best": f"{run['best'].get('value', float('nan')):.4g} @ {run['best'].get('epoch')}"}
        flat.update({f"test.{k}": f"{v:.4g}" for k, v in run["test"].items()})
        flat.update({f"gap.{k}": f"{v:+.3g}" for k, v in run["gap"].items()})
        flat.update({f"diag.{k.split('.', 1)[1].replace('.', '_')}": f"{v:.4g}"
                     for k, v in run.get("diagnostics", {}).items()})  # fmt: skip
        keys += [k for k in flat if k not in keys]
        table.append((run["run"], flat))
    header = ["run", *keys]
    rows = [header] + [[name, *(flat.get(k, "") for k in keys)] for name, flat in table]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
