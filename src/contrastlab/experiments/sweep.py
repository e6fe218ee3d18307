"""``contrastlab sweep``: tune λ and τ (or any config values) with Optuna; every trial is a normal run.

    contrastlab sweep recipe.yaml --param objective.supcon.weight=0.05,0.1,0.2 \\
        --param objective.supcon.temperature=0.05,0.1 [--sampler grid|tpe] [--trials N]

The objective is the recipe's early-stopping metric (``trainer.early_stopping.monitor`` and ``mode``) at
its best epoch; trials report it every epoch and Optuna's median pruner stops hopeless ones. The study
lives in ``sweep.db`` (SQLite) inside the sweep directory unless ``--storage`` names another database.

Resuming: run the same command again, with the same values (Optuna fixes each parameter's choices for
the life of a study; a different grid needs a new --out). Grid sweeps enumerate the grid themselves and
run each point that has no complete or pruned trial yet, so a sweep killed at any moment finishes exactly
the missing points; a trial left RUNNING by a dead single worker is marked failed first. TPE sweeps run
until ``trials`` trials have finished.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from typing import Any, BinaryIO

from contrastlab.train import load_config, train
from contrastlab.train.checkpoint import write_json
from contrastlab.train.config import parse_scalar

__all__ = ["parse_param", "run_sweep"]


def parse_param(text: str) -> tuple[str, list[Any]]:
    """``"objective.supcon.weight=0.05,0.1"`` → ("objective.supcon.weight", [0.05, 0.1]).

    Raises:
        ValueError: no ``=``, or no values.
    """
    if "=" not in text:
        raise ValueError(f"--param {text!r} must look like key.path=v1,v2,...")
    key, values = text.split("=", 1)
    parsed = [parse_scalar(v.strip()) for v in values.split(",") if v.strip()]
    if not key or not parsed:
        raise ValueError(f"--param {text!r} names no values")
    return key, parsed


def run_sweep(
    recipe: str | Path,
    params: dict[str, list[Any]],
    *,
    out_dir: str | Path,
    sampler: str = "grid",
    trials: int | None = None,
    storage: str | None = None,
    overrides: list[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Runs (or resumes) the sweep and writes ``sweep.json`` (every trial, the best one).

    Raises:
        ValueError: an unknown sampler, TPE without ``trials``, or no params.
    """
    import optuna

    if not params:
        raise ValueError("a sweep needs at least one --param")
    if sampler not in ("grid", "tpe"):
        raise ValueError(f"sampler must be 'grid' or 'tpe', got {sampler!r}")
    if sampler == "tpe" and not trials:
        raise ValueError("--sampler tpe needs --trials N")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base, _ = load_config(recipe, overrides)
    monitor, mode = base.trainer.early_stopping.monitor, base.trainer.early_stopping.mode
    single_worker = storage is None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=Path(recipe).stem,
        storage=storage or f"sqlite:///{out / 'sweep.db'}",
        load_if_exists=True,
        direction="minimize" if mode == "min" else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    if single_worker:  # nobody else runs this study: a RUNNING trial belongs to a killed process
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)

    def objective(trial: optuna.Trial) -> float:
        values = {key: trial.suggest_categorical(key, choices) for key, choices in params.items()}
        trial_overrides = [*(overrides or []), *(f"{k}={v}" for k, v in values.items())]
        config, raw = load_config(recipe, trial_overrides)
        run_dir = out / "trials" / f"trial{trial.number:03d}"
        trial.set_user_attr("run_dir", str(run_dir))
        print(f"[sweep] trial {trial.number}: {' '.join(trial_overrides)}", file=sys.stderr)

        def report(epoch: int, row: dict[str, Any]) -> None:
            trial.report(row[monitor], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = train(config, run_dir, raw_config=raw, override_note=trial_overrides, on_epoch=report)
        return float(result.best["value"])

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if sampler == "grid":
        grid = [dict(zip(params, combo, strict=True)) for combo in itertools.product(*params.values())]
        finished = [t.params for t in study.get_trials(deepcopy=False, states=done)]
        for point in grid:
            if point not in finished:
                study.enqueue_trial(point)
                study.optimize(objective, n_trials=1)
    else:
        remaining = trials - len(study.get_trials(deepcopy=False, states=done))  # type: ignore[operator]
        if remaining > 0:
            study.optimize(objective, n_trials=remaining)

    result = _summary(study, params, monitor, mode)
    write_json(result, out / "sweep.json")
    if importlib.util.find_spec("matplotlib") is not None:
        plot_sweep(result, str(out / "heatmap.png"))
        result["plots"] = ["heatmap.png"]
    return result


def _summary(study: Any, params: dict[str, list[Any]], monitor: str, mode: str) -> dict[str, Any]:
    import optuna

    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "params": t.params, "value": t.value,
                     "last_reported": t.intermediate_values.get(max(t.intermediate_values, default=0)),
                     "run_dir": t.user_attrs.get("run_dir")})  # fmt: skip
    complete = [r for r in rows if r["state"] == optuna.trial.TrialState.COMPLETE.name]
    best = None
    if complete:
        best = (min if mode == "min" else max)(complete, key=lambda r: r["value"])
    return {"monitor": monitor, "mode": mode, "params": params, "trials": rows, "best": best}


def plot_sweep(result: dict[str, Any], path: str | BinaryIO) -> None:
    """The monitored metric over the swept values: a line for one parameter, a heatmap (the λ x τ grid)
    for two or more (rows and columns are the first two parameters; a cell shows the best completed trial
    over any further parameters, "pruned" where none completed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    params: dict[str, list[Any]] = result["params"]
    better = max if result["mode"] == "max" else min
    complete = [t for t in result["trials"] if t["state"] == "COMPLETE" and set(params) <= set(t["params"])]
    keys = list(params)
    if len(keys) == 1:
        (key, values) = next(iter(params.items()))
        best = [[t["value"] for t in complete if t["params"][key] == v] for v in values]
        xs = [i for i, b in enumerate(best) if b]
        fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(values), 3.2))
        ax.plot(xs, [better(best[i]) for i in xs], marker="o")
        ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(key)
        ax.set_ylabel(f"best {result['monitor']}")
    else:
        (k_rows, rows), (k_cols, cols) = (keys[0], params[keys[0]]), (keys[1], params[keys[1]])
        grid = np.full((len(rows), len(cols)), np.nan)
        for trial in complete:
            i, j = rows.index(trial["params"][k_rows]), cols.index(trial["params"][k_cols])
            grid[i, j] = trial["value"] if np.isnan(grid[i, j]) else better(grid[i, j], trial["value"])
        fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(cols), 1.2 + 0.8 * len(rows)))
        im = ax.imshow(grid, cmap="viridis" if result["mode"] == "max" else "viridis_r")
        ax.set_xticks(range(len(cols)), [str(c) for c in cols])
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        ax.set_xlabel(k_cols)
        ax.set_ylabel(k_rows)
        for i in range(len(rows)):
            for j in range(len(cols)):
                label = "pruned" if np.isnan(grid[i, j]) else f"{grid[i, j]:.3g}"
                ax.text(j, i, label, ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"best {result['monitor']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
