"""``contrastlab sweep``: tune λ and τ (or any config values) with Optuna; every trial is a normal run.

    contrastlab sweep recipe.yaml --param objective.supcon.weight=0.05,0.1,0.2 \\
        --param objective.supcon.temperature=0.05,0.1 [--sampler grid|tpe] [--trials N]

The objective is the recipe's early-stopping metric (``trainer.early_stopping.monitor`` and ``mode``) at
its best epoch; trials report it every epoch and Optuna's median pruner stops hopeless ones once a third of
the epochs have passed (:func:`prune_after`; ``--no-prune`` runs every trial to the end: a grid whose
points must all be compared, or noisy epochs). The study
lives in ``sweep.db`` (SQLite) inside the sweep directory unless ``--storage`` names another database.

Resuming: run the same command again, with the same values (Optuna fixes each parameter's choices for
the life of a study; a different grid needs a new --out). Grid sweeps enumerate the grid themselves and
run each point that has no complete or pruned trial yet, so a sweep killed at any moment finishes exactly
the missing points; a trial left RUNNING by a dead single worker is marked failed first. TPE sweeps run
until ``trials`` trials have finished; a trial at the point of an earlier complete or pruned one takes its
value (or is pruned) and its run instead of training the same settings again (``same_as`` in sweep.json).

Several workers (``--storage postgresql://...``, Optuna's RDB storage): start the same command on each
machine. Every grid point runs exactly once across them (see :func:`_run_grid`); workers record a
heartbeat, and a trial whose worker has been silent for GRACE_SECONDS is failed and its point run again.
Every worker returns when the whole study is finished, each writing the same ``sweep.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import json
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from contrastlab.experiments.results import SweepResult, SweepTrial
from contrastlab.train import load_config, train
from contrastlab.train.callbacks import Callback, Control
from contrastlab.train.checkpoint import write_json
from contrastlab.train.keys import Override, parse_scalar
from contrastlab.train.loggers import finish_group, tracking_group
from contrastlab.train.recipes import recipe_name

__all__ = ["parse_param", "prune_after", "run_each_once", "run_sweep"]


def parse_param(text: str) -> tuple[str, list[Any]]:
    """``"objective.supcon.weight=0.05,0.1"`` → ("objective.supcon.weight", [0.05, 0.1]). A value may be a
    YAML list or mapping (``"model.hidden_dims=[128, 128],[256]"``): only the commas outside brackets,
    braces and quotes separate values.

    Raises:
        ValueError: no ``=``, or no values.
    """
    if "=" not in text:
        raise ValueError(f"--param {text!r} must look like key.path=v1,v2,...")
    key, values = text.split("=", 1)
    parsed = [parse_scalar(v.strip()) for v in _split_values(values) if v.strip()]
    if not key or not parsed:
        raise ValueError(f"--param {text!r} names no values")
    return key, parsed


def prune_after(epochs: int) -> int:
    """The first epoch at which a trial may be pruned: the one after the first third of the (shortest
    trial's) epochs. Early epochs rank settings by how fast they start, not where they end: a lower
    learning rate or a larger batch starts slower.

    Example:
        >>> [prune_after(e) for e in (1, 3, 6, 15, 200)]
        [1, 2, 3, 6, 67]
    """
    return epochs // 3 + 1


def _split_values(text: str) -> list[str]:
    """``text`` split at its commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _label(value: Any) -> Any:
    """A swept value as Optuna stores it (its choices must be scalars): a list or mapping as its JSON text,
    which reads back as the same value when it becomes a trial's override."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


#: How often a worker on shared storage records that it is alive, and after how long without a heartbeat
#: its running trial is declared dead (failed, then run again by whichever worker gets to it).
HEARTBEAT_SECONDS = 15
GRACE_SECONDS = 60
#: How often a worker with nothing left to claim checks on the trials other workers are running.
POLL_SECONDS = 2.0


def _open_study(url: str, *, name: str, shared: bool, **study_options: Any) -> tuple[Any, Any]:
    """Creates or loads the study. On shared storage, workers prove they are alive (heartbeats), and
    workers starting together may race to create Optuna's tables (PostgreSQL then rejects the second
    ``CREATE TYPE``): that is retried, the tables being there the second time."""
    import optuna
    import sqlalchemy.exc

    warnings.filterwarnings("ignore", message=".*heartbeat_interval.* is an experimental feature")
    for attempt in range(6):
        try:
            if shared:
                rdb = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                                 grace_period=GRACE_SECONDS)  # fmt: skip
            else:
                rdb = optuna.storages.RDBStorage(url)
            study = optuna.create_study(study_name=name, storage=rdb, load_if_exists=True, **study_options)
            return study, rdb
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 5:
                raise
            time.sleep(0.2 + 0.3 * attempt)
    raise AssertionError("unreachable")


def run_each_once(storage: str, name: str, points: list[dict[str, Any]],
                  run: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
    """Calls ``run(point)`` for every point exactly once across all the processes that share ``storage``
    (an Optuna RDB URL) and ``name``, the sweep's mechanism: each point is a trial claimed row-locked, with
    heartbeats, so a point whose worker died is run again after :data:`GRACE_SECONDS`. Returns when every
    point has run (in this process or another). A verdict shares its seed pairs among workers this way.
    """
    study, rdb = _open_study(storage, name=name, shared=True, direction="minimize")
    choices = {key: list(dict.fromkeys(p[key] for p in points)) for key in points[0]}

    def objective(trial: Any) -> float:
        run({key: trial.suggest_categorical(key, values) for key, values in choices.items()})  # as enqueued
        return 0.0

    _run_grid(study, rdb, points, objective, shared=True)


def _point(trial: Any) -> dict[str, Any]:
    """The grid point of a trial: its fixed (enqueued) params, or the params it suggested."""
    return dict(trial.system_attrs.get("fixed_params") or trial.params)


def _run_grid(study: Any, rdb: Any, grid: list[dict[str, Any]], objective: Any, *, shared: bool) -> None:
    """Runs every grid point that has no complete or pruned trial, exactly once across all workers.

    Each worker enqueues the points nobody holds (not complete, pruned, running or waiting), then claims
    one waiting trial; Optuna's claim is a row-locked WAITING -> RUNNING transition, so two workers never
    claim the same trial. Two workers can still enqueue the same point at the same moment; of the trials
    of one point, the first claimed (by start time, then number) runs, and the others end as FAIL with
    ``duplicate_of``. With nothing left to claim, a worker on shared storage waits for the others'
    running trials, so that every worker returns a complete study (and takes over a dead worker's point).
    """
    import optuna

    TrialState = optuna.trial.TrialState
    held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    while True:
        if shared:
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        taken = [_point(t) for t in trials if t.state in held]
        for point in grid:
            if point not in taken:
                study.enqueue_trial(point)
        trial_id = study._pop_waiting_trial_id()
        if trial_id is None:
            if shared and any(t.state == TrialState.RUNNING for t in trials):
                time.sleep(POLL_SECONDS)
                continue
            return
        trial = optuna.Trial(study, trial_id)
        first = _first_claim(study, trial.number)
        if first is not None:
            trial.set_user_attr("duplicate_of", first)
            study.tell(trial, state=TrialState.FAIL)
            continue
        with _heartbeat(rdb, trial_id, enabled=shared):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
            else:
                study.tell(trial, value)


def _same_point(trial: Any) -> Any:
    """The first complete or pruned trial of the study at the same point as ``trial``, if any (Optuna's
    advice for a sampler that repeats itself)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    earlier = trial.study.get_trials(deepcopy=False, states=done)
    return next((t for t in earlier if t.params == trial.params), None)


def _first_claim(study: Any, number: int) -> int | None:
    """The number of another trial of the same grid point that was claimed before ``number``, if any."""
    import optuna

    TrialState = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    mine = next(t for t in trials if t.number == number)
    point = _point(mine)
    for other in trials:
        if other.number == number or _point(other) != point:
            continue
        if other.state in (TrialState.COMPLETE, TrialState.PRUNED):
            return int(other.number)
        if other.state == TrialState.RUNNING and (other.datetime_start, other.number) < (
            mine.datetime_start,
            mine.number,
        ):
            return int(other.number)
    return None


@contextlib.contextmanager
def _heartbeat(rdb: Any, trial_id: int, *, enabled: bool) -> Iterator[None]:
    """Records the trial's heartbeat every HEARTBEAT_SECONDS while the block runs."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            rdb.record_heartbeat(trial_id)
            if stop.wait(HEARTBEAT_SECONDS):
                return

    thread = threading.Thread(target=beat, name=f"sweep-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_sweep(
    recipe: str | Path | dict[str, Any],
    params: dict[str, list[Any]],
    *,
    out_dir: str | Path,
    sampler: str = "grid",
    trials: int | None = None,
    storage: str | None = None,
    overrides: list[str] | None = None,
    seed: int = 0,
    prune: bool = True,
    model: Any = None,
    dataset: Any = None,
    target: str | None = None,
    task: str | None = None,
) -> SweepResult:
    """Runs (or resumes) the sweep and writes ``sweep.json`` (every trial, the best one; ``print`` the result
    for a summary). ``model`` and
    ``dataset`` (with ``target`` and ``task``): your encoder and data for every trial, as
    :func:`contrastlab.fit` takes them.

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
    params = {key: [_label(v) for v in values] for key, values in params.items()}
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset, target=target, task=task)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base, _ = load_config(recipe, overrides)
    monitor, mode = base.trainer.early_stopping.monitor, base.trainer.early_stopping.resolved_mode
    epochs = min([base.trainer.epochs, *(int(e) for e in params.get("trainer.epochs", []))])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, rdb = _open_study(
        storage or f"sqlite:///{out / 'sweep.db'}",
        name=recipe_name(recipe),
        shared=storage is not None,
        direction="minimize" if mode == "min" else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=prune_after(epochs))
        if prune
        else optuna.pruners.NopPruner(),
    )
    if storage is None:
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            rdb.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)

    def objective(trial: optuna.Trial) -> float:
        return _trial(trial, recipe, params, overrides or [], out, monitor, model, dataset)

    with tracking_group("sweep", out):  # the trials' MLflow runs are children of one parent, one W&B group
        _optimise(study, rdb, params, objective, sampler, trials, storage is not None)
        result = _summary(study, params, monitor, mode)
        write_json(result.to_dict(), out / "sweep.json")
        if importlib.util.find_spec("matplotlib") is not None:
            plot_sweep(result, str(out / "heatmap.png"))
            result = dataclasses.replace(result, plots=["heatmap.png"])
        best = result.best
        summary = {"best_value": None if best is None else best.value, "monitor": monitor,
                   "best_params": json.dumps({} if best is None else best.params)}  # fmt: skip
        finish_group(base.trainer, out, summary, [out / name for name in ("sweep.json", *result.plots)])
    return result


def _trial(trial: Any, recipe: str | Path | dict[str, Any], params: dict[str, list[Any]],
           overrides: list[str], out: Path, monitor: str, model: Any, dataset: Any) -> float:  # fmt: skip
    """Trains one trial's point (the recipe with the point's overrides) into ``out/trials``; its best
    monitored value. A point an earlier trial already ran (TPE draws categorical points again) gives that
    trial's value instead of a second training."""
    import optuna

    values = {key: trial.suggest_categorical(key, choices) for key, choices in params.items()}
    trial_overrides = [*overrides, *(str(Override.of(k, v)) for k, v in values.items())]
    earlier = _same_point(trial)
    if earlier is not None:
        trial.set_user_attr("same_as", earlier.number)
        trial.set_user_attr("run_dir", earlier.user_attrs.get("run_dir"))
        print(f"[sweep] trial {trial.number}: the point of trial {earlier.number}, not trained again",
              file=sys.stderr)  # fmt: skip
        if earlier.state == optuna.trial.TrialState.PRUNED:
            raise optuna.TrialPruned()
        return float(earlier.value)
    config, raw = load_config(recipe, trial_overrides)
    run_dir = out / "trials" / f"trial{trial.number:03d}"
    trial.set_user_attr("run_dir", str(run_dir))
    print(f"[sweep] trial {trial.number}: {' '.join(trial_overrides)}", file=sys.stderr)
    result = train(config, run_dir, raw_config=raw, override_note=trial_overrides,
                   callbacks=[_Pruning(trial, monitor)], model=model, dataset=dataset)  # fmt: skip
    if not result.finished:
        raise optuna.TrialPruned()
    return float(result.best["value"])


class _Pruning(Callback):
    """Reports the monitored value of every epoch to the trial; when Optuna's pruner says so, the run ends
    there (its checkpoint written, no test evaluation) and the trial is PRUNED."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_save(self, row: dict[str, Any], state: Any, control: Control) -> None:
        self.trial.report(row[self.monitor], int(row["epoch"]))
        if self.trial.should_prune():
            control.stop(f"pruned by the sweep after epoch {row['epoch']}", finish=False)


def _optimise(study: Any, rdb: Any, params: dict[str, list[Any]], objective: Any, sampler: str,
              trials: int | None, shared: bool) -> None:  # fmt: skip
    """Runs the grid (claimed row by row when ``shared``) or TPE's trials until ``trials`` are done."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if sampler == "grid":
        grid = [dict(zip(params, combo, strict=True)) for combo in itertools.product(*params.values())]
        with warnings.catch_warnings():  # heartbeats outside Study.optimize are what we mean to do
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            _run_grid(study, rdb, grid, objective, shared=shared)
    else:
        remaining = trials - len(study.get_trials(deepcopy=False, states=done))  # type: ignore[operator]
        if remaining > 0:
            stop = optuna.study.MaxTrialsCallback(trials, states=done)  # type: ignore[arg-type]
            study.optimize(objective, n_trials=remaining, callbacks=[stop])


def _summary(study: Any, params: dict[str, list[Any]], monitor: str, mode: str) -> SweepResult:
    import optuna

    rows = [SweepTrial(number=t.number, state=t.state.name, params=t.params, value=t.value,
                       last_reported=t.intermediate_values.get(max(t.intermediate_values, default=0)),
                       run_dir=t.user_attrs.get("run_dir"), same_as=t.user_attrs.get("same_as"))
            for t in study.get_trials(deepcopy=False)]  # fmt: skip
    complete = [r for r in rows if r.state == optuna.trial.TrialState.COMPLETE.name]
    pick = min if mode == "min" else max
    best = pick(complete, key=lambda r: float(r.value or 0.0)) if complete else None
    return SweepResult(monitor, mode, params, rows, best)


def colour_range(values: Any, least: float = 0.05) -> tuple[float, float]:
    """The colour scale of a heatmap of one-seed values: their range, widened around its middle to at least
    ``least`` of their mean's size, so that differences smaller than that (within seed noise, typically) do
    not fill the whole scale. NaN cells are ignored.

    Example:
        >>> [round(v, 5) for v in colour_range([0.800, 0.801])]  # 5% of 0.8005 around the middle
        [0.78049, 0.82051]
        >>> [round(v, 5) for v in colour_range([0.2, 0.9])]  # a wide range stays as it is
        [0.2, 0.9]
    """
    import numpy as np

    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    span = max(hi - lo, least * abs(float(finite.mean())), 1e-12)
    middle = (lo + hi) / 2
    return middle - span / 2, middle + span / 2


def plot_sweep(result: SweepResult, path: str | BinaryIO) -> None:
    """The monitored metric over the swept values: a line for one parameter, a heatmap (the λ x τ grid)
    for two or more (rows and columns are the first two parameters; a cell shows the best completed trial
    over any further parameters, "pruned" where none completed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    params = result.params
    better = max if result.mode == "max" else min
    complete = [t for t in result.trials if t.state == "COMPLETE" and set(params) <= set(t.params)]
    keys = list(params)
    if len(keys) == 1:
        (key, values) = next(iter(params.items()))
        best = [[t.value for t in complete if t.value is not None and t.params[key] == v] for v in values]
        xs = [i for i, b in enumerate(best) if b]
        fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(values), 3.2))
        ax.plot(xs, [better(best[i]) for i in xs], marker="o")
        ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(key)
        ax.set_ylabel(f"best {result.monitor}")
    else:
        (k_rows, rows), (k_cols, cols) = (keys[0], params[keys[0]]), (keys[1], params[keys[1]])
        grid = np.full((len(rows), len(cols)), np.nan)
        for trial in complete:
            i, j = rows.index(trial.params[k_rows]), cols.index(trial.params[k_cols])
            grid[i, j] = trial.value if np.isnan(grid[i, j]) else better(grid[i, j], trial.value)
        fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(cols), 1.2 + 0.8 * len(rows)))
        low, high = colour_range(grid)
        im = ax.imshow(grid, cmap="viridis" if result.mode == "max" else "viridis_r", vmin=low, vmax=high)
        ax.set_xticks(range(len(cols)), [str(c) for c in cols])
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        ax.set_xlabel(k_cols)
        ax.set_ylabel(k_rows)
        for i in range(len(rows)):
            for j in range(len(cols)):
                label = "pruned" if np.isnan(grid[i, j]) else f"{grid[i, j]:.3g}"
                ax.text(j, i, label, ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"best {result.monitor}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
