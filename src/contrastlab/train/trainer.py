"""Training a run: ``train(config, run_dir)`` builds it (``build.py``), restores it when resuming, then
for each epoch trains (``loop.py``: views, forward, objective, guard, step), evaluates on train and val
(``evaluate.py``), writes one history row, steps the schedulers, decides early stopping and saves an atomic
checkpoint (a :class:`TrainState`). A run killed at any moment resumes from its last checkpoint with the
same history as an uninterrupted run (on CPU; the ``seconds`` column aside).
"""

from __future__ import annotations

import difflib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contrastlab import distributed, plugins
from contrastlab.models import ContrastiveModel
from contrastlab.train.build import Parts, build_parts
from contrastlab.train.callbacks import (
    Callback,
    Control,
    EarlyStopping,
    EpochLines,
    PlateauStep,
    StepHooks,
    Trackers,
)
from contrastlab.train.checkpoint import (
    TrainState,
    atomic_write,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    write_history,
    write_json,
    write_yaml,
)
from contrastlab.train.config import ConfigError, TrainConfig
from contrastlab.train.evaluate import evaluate, metric_names, predict, predict_views
from contrastlab.train.guard import Guard, TrainingDiverged, finite_divergence
from contrastlab.train.keys import Override
from contrastlab.train.loggers import check_trackers, open_loggers
from contrastlab.train.loop import EpochLog, StepState, dry_step, train_epoch
from contrastlab.train.progress import epoch_line, progress_bar
from contrastlab.train.rundir import RunDir, RunDirError, run_metadata

__all__ = ["RunResult", "StepState", "TrainingDiverged", "overridden_weights", "resolve_device", "train"]


@dataclass(repr=False)
class RunResult:
    """A finished (or stopped) run: its history, best epoch, test metrics and trained model. It prints as
    the summary ``contrastlab train`` ends with, and shows as a small table in a notebook."""

    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    stopped_early: bool
    test: dict[str, float] = field(default_factory=dict)
    #: The trained model (best weights) on the process that wrote the run; None elsewhere.
    model: ContrastiveModel | None = None
    #: Why the run diverged although every step stayed finite (guard.finite_divergence), else None.
    diverged: str | None = None
    #: False when a callback ended the run without its test evaluation (a pruned sweep trial).
    finished: bool = True

    def __repr__(self) -> str:
        best = self.best
        at = f"{best.get('value'):.4f} at epoch {best.get('epoch')}"
        lines = [f"run: {self.run_dir}", f"best {best.get('metric')} = {at}"]
        if self.test:
            lines.append("test: " + ", ".join(f"{k}={v:.4f}" for k, v in self.test.items()))
        if self.diverged:
            lines.append(f"WARNING: the run diverged: {self.diverged}; its metrics are those of a broken run")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        best = self.best
        rows = [("run", str(self.run_dir)), ("epochs", str(len(self.history))),
                (f"best {best.get('metric')}", f"{best.get('value'):.4g} at epoch {best.get('epoch')}"),
                *((f"test {k}", f"{v:.4g}") for k, v in self.test.items())]  # fmt: skip
        if self.diverged:
            rows.append(("WARNING", f"diverged: {self.diverged}"))
        cells = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                        for k, v in rows)  # fmt: skip
        return f"<table>{cells}</table>"


def overridden_weights(overrides: Sequence[str]) -> set[str]:
    """The terms whose weight an override sets (``objective.supcon.weight=0.1`` or ``objective.supcon=...``):
    on resume their configured weight replaces the adapted one; every other term keeps its adapted λ.

    Example:
        >>> sorted(overridden_weights(["trainer.epochs=9", "objective.supcon.weight=0.1", "objective.x={}"]))
        ['supcon', 'x']
    """
    return {term for text in overrides if (term := Override.parse(text).term) is not None}


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    raw_config: dict[str, Any] | None = None,
    resume: bool = False,
    override_note: list[str] | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    callbacks: Sequence[Callback] = (),
    on_step: Callable[[StepState], None] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    model: nn.Module | None = None,
    dataset: Any = None,
) -> RunResult:
    """Trains ``config`` into ``run_dir`` (created), or resumes the run there.

    Args:
        config: The validated configuration.
        run_dir: Where config.yaml, history.csv, checkpoints/, metrics.json and embeddings/ go.
        raw_config: The mapping the config came from, recorded in config.yaml.
        resume: Continue from ``checkpoints/last.pt``; ``config`` may differ (e.g. a new λ) and the change
            is recorded in config.yaml's ``overrides`` history. A run killed before its first checkpoint
            starts over; files of interrupted atomic writes are removed.
        override_note: The overrides that produced ``config``, for the record.
        progress: Show a progress bar (default: when stderr is a terminal; otherwise one line per epoch).
        quiet: Neither bar nor epoch lines (a caller such as ``contrastlab verdict`` shows its own).
        callbacks: Your :class:`~contrastlab.train.callbacks.Callback` objects, called after the built-in
            ones (early stopping, the plateau scheduler, the trackers, the epoch lines); one may stop the
            run through its ``control``.
        on_step: Called after every optimiser step (a function; ``callbacks`` for more).
        on_epoch: Called with (epoch, history row) after each epoch is checkpointed; an exception it raises
            ends the run there, its files intact.
        overwrite: Start afresh where a run exists, removing it first (else that is an error).
        model: Your encoder instead of ``model.name`` (a copy is trained; see ContrastiveModel for the
            contract); the task and projection heads are added. Resume a run with the same encoder.
        dataset: Your dataset instead of ``data.name`` (see ``contrastlab.data.tables.as_dataset``).

    Raises:
        TrainingDiverged: ``max_consecutive_skips`` steps in a row had a non-finite loss or gradient.
        CheckpointError: resume from an unreadable checkpoint.
        RunDirError: another process is using ``run_dir``; a new run where one exists without
            ``overwrite``; resume where no run was ever started.
    """
    run = RunDir(run_dir)
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset)
        name = f"python:{getattr(dataset, 'name', type(dataset).__name__)}"
        config = config.model_copy(update={"data": config.data.model_copy(update={"name": name})})
    if model is not None:  # config.yaml records that the model came from Python
        name = f"python:{type(model).__qualname__}"
        config = config.model_copy(update={"model": config.model.model_copy(update={"name": name})})
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 owns the directory
    if is_main:
        _check_run_dir(run, resume=resume, overwrite=overwrite)
        check_trackers(config.trainer.loggers, config.trainer.tracking)
    # Everything that can fail before training (data, model, one batch, the metric names the config uses)
    # fails here, before the run directory is created, locked or cleared.
    p, logged = _prepare(config, quiet, model, dataset)
    hooks = [*callbacks, *([StepHooks(on_step, on_epoch)] if on_step or on_epoch else [])]
    if not is_main:
        return _train(p, logged, config, run, raw_config, resume, override_note, progress, quiet, hooks)
    with run.lock():
        if resume:
            run.remove_temporaries()
            if not run.last.is_file():
                print(f"note: {run.path} has no checkpoint yet (stopped during its first epoch): "
                      "starting it over", file=sys.stderr)  # fmt: skip
                run.clear()
                resume = False
        elif run.holds_run():
            _check_run_dir(run, resume=False, overwrite=overwrite)  # another process may have started one
            run.clear()
        return _train(p, logged, config, run, raw_config, resume, override_note, progress, quiet, hooks)


def _check_run_dir(run: RunDir, *, resume: bool, overwrite: bool) -> None:
    """What the run directory allows, checked without changing it.

    Raises:
        RunDirError: a path that cannot be a directory, a resume where nothing was ever saved, a new run
            where one exists without ``overwrite``.
    """
    run.check_creatable()
    if resume and not run.last.is_file():
        run.check_started()
    if not resume and not overwrite and run.holds_run():
        raise RunDirError(
            f"{run.path} already holds a run; resume it (contrastlab resume {run.path}), choose "
            "another name, or overwrite it (--overwrite; the old run is deleted)"
        )


def _prepare(config: TrainConfig, quiet: bool, encoder: nn.Module | None, dataset: Any
             ) -> tuple[Parts, set[str]]:  # fmt: skip
    """The run's parts, after one dry step and a check of every metric name the config uses; returns them
    with the names each epoch's history row will hold."""
    tc = config.trainer
    device = resolve_device(tc.device)
    _set_threads(tc.threads, quiet)
    rank, world = distributed.init_from_environment(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    p = build_parts(config, device, rank, world, encoder, dataset)
    step = dry_step(p, tc)
    log = EpochLog(sums=step, names=dict.fromkeys(step), micro_batches=1)
    nan = float("nan")
    evaluated = {part: dict.fromkeys(metric_names(p.model, p.data, idx, config, part), nan)
                 for part, idx in (("train", p.train_idx), ("val", p.split["val"]))}  # fmt: skip
    logged = set(_epoch_row(p, 0, log, evaluated["train"], evaluated["val"], time.perf_counter()))
    monitors = {"trainer.early_stopping.monitor": tc.early_stopping.monitor}
    if tc.scheduler.name == "plateau":
        monitors["trainer.scheduler.monitor"] = tc.scheduler.monitor
    for key, name in monitors.items():
        if name not in logged:
            started = sorted(n for n in logged if n.startswith(name))  # val/acc: val/accuracy
            close = started or difflib.get_close_matches(name, sorted(logged), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{key}={name!r} is not a metric this run logs; {hint}it logs "
                              f"{sorted(n for n in logged if '/' in n)}")  # fmt: skip
    return p, logged


def _train(
    p: Parts,
    logged: set[str],
    config: TrainConfig,
    run: RunDir,
    raw_config: dict[str, Any] | None,
    resume: bool,
    override_note: list[str] | None,
    progress: bool | None,
    quiet: bool,
    callbacks: list[Callback],
) -> RunResult:
    tc = config.trainer
    is_main = p.rank == 0
    state = TrainState(config=config.model_dump(mode="json"))
    if resume:
        state = TrainState.load(run.last)
        _restore(p, state, configured=overridden_weights(override_note or []))
    if override_note or not resume:
        note = {"epoch": state.epoch + 1, "resume": resume, "overrides": override_note or []}
        state.overrides_log.append(note)
    state.config = config.model_dump(mode="json")
    meta = run_metadata()
    if is_main:
        write_yaml({"config": state.config, "raw": raw_config or {}, "overrides": state.overrides_log,
                    "plugins": plugins.loaded(), "meta": meta}, run.config)  # fmt: skip
        write_json({k: v.tolist() for k, v in p.split.items()}, run.split)

    show_bar = (sys.stderr.isatty() if progress is None else progress) and is_main and not quiet
    around: list[Callback] = [EarlyStopping(tc.early_stopping.monitor, tc.early_stopping.patience)]
    if p.scheduler is not None and tc.scheduler.name == "plateau":
        around.append(PlateauStep(p.scheduler, tc.scheduler.monitor))
    if is_main:
        around.append(Trackers(open_loggers(tc.loggers, run=run, config=state.config, meta=meta,
                                            tracking=tc.tracking), run))  # fmt: skip
        if not show_bar and not quiet:
            around.append(EpochLines(tc.epochs, list(p.objective.term_cfgs), epoch_line))
    around += callbacks
    try:
        result = _fit(p, logged, config, run, state, around, show_bar, quiet)
    except BaseException:
        for callback in around:
            callback.on_fit_end(None, "FAILED")
        raise
    for callback in around:
        callback.on_fit_end(result, "FINISHED" if result.finished else "KILLED")
    return result


def _fit(p: Parts, logged: set[str], config: TrainConfig, run: RunDir, state: TrainState,
         callbacks: list[Callback], show_bar: bool, quiet: bool) -> RunResult:  # fmt: skip
    """The epochs from the state's next one, then the test evaluation and the run's files (rank 0)."""
    tc = config.trainer
    is_main = p.rank == 0
    control = Control()

    def each_step(step: StepState) -> None:
        for callback in callbacks:
            callback.on_step_end(step, control)

    es = tc.early_stopping
    temperatures = [t for term in config.objective.terms().values()
                    if (t := getattr(term, "temperature", None)) is not None]  # fmt: skip
    guard = Guard(tc.max_consecutive_skips, temperatures)
    for callback in callbacks:  # a run that stopped early stays stopped on resume (EarlyStopping says so)
        callback.on_fit_start(state, control)
    state.stopped_early = control.should_stop
    for epoch in range(state.epoch + 1, tc.epochs if not control.should_stop else 0):
        started = time.perf_counter()
        bar = partial(progress_bar, desc=f"epoch {epoch + 1}/{tc.epochs}", show=show_bar,
                      periodic=is_main and not quiet and not show_bar)  # fmt: skip
        log, state.global_step = train_epoch(p, tc, epoch, state.global_step, guard, bar, each_step)
        clean_train = evaluate(p.model, p.data, p.train_idx, config, p.scale, p.device, part="train")
        val = evaluate(p.model, p.data, p.split["val"], config, p.scale, p.device, part="val")
        row = _epoch_row(p, epoch, log, clean_train, val, started)
        if missing := logged - set(row):  # the names the config's monitors were checked against
            raise RuntimeError(f"bug: the names predicted before the run, {sorted(missing)}, were not logged")
        row = distributed.broadcast_object(row)  # every rank decides (LR, best, stop) on rank 0's numbers
        state.history.append(row)
        state.epoch = epoch

        monitored = float(row[es.monitor])
        if _better(monitored, state.best.get("value"), es.resolved_mode):
            state.best = {"epoch": epoch + 1, "metric": es.monitor, "value": monitored}
            state.bad_epochs = 0
            if is_main:
                save_checkpoint({"model": p.model.state_dict(), "epoch": epoch, "config": state.config},
                                run.best)  # fmt: skip
        else:
            state.bad_epochs += 1
        for callback in callbacks:  # what they change (LR, the stop) is saved with the epoch
            callback.on_epoch_end(row, state, control)
        state.stopped_early = control.should_stop
        if is_main:  # only rank 0 writes
            _capture(p, state).save(run.last)
            write_history(state.history, run.history)
        for callback in callbacks:
            callback.on_save(row, state, control)
        if control.should_stop:
            break

    distributed.barrier()  # rank 0's checkpoints are on disk before anyone reads them
    state.stopped_early = control.should_stop
    if not is_main or not control.finish:
        return RunResult(run.path, state.history, state.best, state.stopped_early, finished=control.finish)
    diverged = finite_divergence(state.history, _chance(p))
    if not quiet:
        print(_stop_line(state, tc.epochs, control.reason, diverged), file=sys.stderr, flush=True)
    return _finish(run, p, config, state, diverged)


def _chance(p: Parts) -> float | None:
    """The validation accuracy of always answering the most frequent class (None for a regression)."""
    if not p.classifying or p.split["val"].numel() == 0:
        return None
    counts = torch.bincount(p.data.targets[p.split["val"]])
    return float(counts.max()) / float(counts.sum())


def _stop_line(state: TrainState, epochs: int, reason: str, diverged: str | None = None) -> str:
    """Why training ended (and that it diverged, when it did), and what the test evaluation will use."""
    best = state.best
    chosen = (f"best {best['metric']} = {best['value']:.4g} at epoch {best['epoch']}" if best
              else "no best epoch")  # fmt: skip
    why = reason or f"trained the epoch budget ({epochs})"
    warning = f"; WARNING: the run diverged: {diverged} (lower trainer.lr?)" if diverged else ""
    return f"{why}{warning}; {chosen}; evaluating that checkpoint on test and saving embeddings"


def resolve_device(name: str) -> torch.device:
    """``trainer.device``: "auto" is cuda when available, then mps, then cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _set_threads(threads: int | None, quiet: bool) -> None:
    """``trainer.threads``; without it, one line when the machine is busier than its cores (where fewer
    threads than torch picks are often faster)."""
    if threads is not None:
        torch.set_num_threads(threads)
        return
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if not quiet and load > cores and torch.get_num_threads() > 1:
        print(f"note: the machine is busy (load {load:.1f} on {cores} cores); trainer.threads=1 may train "
              "faster", file=sys.stderr)  # fmt: skip


def _epoch_row(p: Parts, epoch: int, log: EpochLog, clean_train: dict[str, float], val: dict[str, float],
               started: float) -> dict[str, Any]:  # fmt: skip
    """One history row: the epoch's training means, weights and gradient norms, then train and val metrics
    on clean inputs, their gaps, the LR, the dropped steps and the time."""
    row: dict[str, Any] = {"epoch": epoch + 1}
    row.update({f"train/{k}": v for k, v in log.means().items()})
    row["train/grad_norm"] = log.grad_norm / max(log.steps, 1)
    row.update({f"weight/{k}": w for k, w in p.objective.weights(epoch).items()})
    row.update({f"grad_norm/{k}": v / log.term_grad_measured for k, v in log.term_grad_norms.items()})
    row.update({f"train_eval/{k}": v for k, v in clean_train.items()})
    row.update({f"val/{k}": v for k, v in val.items()})
    for k in (k for k in val if k in clean_train):
        row[f"gap/{k}"] = clean_train[k] - val[k]
        row[f"gap_ratio/{k}"] = clean_train[k] / val[k] if val[k] else float("nan")
    row["lr"] = p.optimizer.param_groups[-1]["lr"]
    row["skipped_steps"] = log.skipped
    row["seconds"] = time.perf_counter() - started
    return row


def _capture(p: Parts, state: TrainState) -> TrainState:
    """``state`` with every part's state filled in, ready to save."""
    state.model = p.model.state_dict()
    state.optimizer = p.optimizer.state_dict()
    state.scheduler = p.scheduler.state_dict() if p.scheduler is not None else {}
    state.scaler = p.scaler.state_dict()
    state.lrs = [g["lr"] for g in p.optimizer.param_groups]
    state.weights = p.objective.state_dict()["weights"]
    state.momentum = p.momentum.state_dict() if p.momentum is not None else None
    state.queue = p.queue.state_dict() if p.queue is not None else None
    state.reference = p.reference.state_dict() if p.reference is not None else None
    state.rng = capture_rng()
    return state


def _restore(p: Parts, state: TrainState, configured: set[str]) -> None:
    """Puts every part back as ``state`` saved it; the terms in ``configured`` keep their new weight."""
    p.model.load_state_dict(state.model)
    p.optimizer.load_state_dict(state.optimizer)
    if p.scheduler is not None:
        p.scheduler.load_state_dict(state.scheduler)
    p.scaler.load_state_dict(state.scaler)
    p.objective.load_state_dict({"weights": state.weights}, configured=configured)
    if p.momentum is not None and state.momentum is not None:
        p.momentum.load_state_dict(state.momentum)
    if p.queue is not None and state.queue is not None:
        p.queue.load_state_dict(state.queue)
    if p.reference is not None and state.reference is not None:
        p.reference.load_state_dict(state.reference)  # the start, not the resume point
    restore_rng(state.rng)
    for group, lr in zip(p.optimizer.param_groups, state.lrs, strict=True):
        group["lr"] = lr  # the scheduler's current LR, not the config's initial one


def _finish(run: RunDir, p: Parts, config: TrainConfig, state: TrainState, diverged: str | None
            ) -> RunResult:  # fmt: skip
    """Reloads the best weights, evaluates on test, saves embeddings (and two views of each split, when the
    run has views: what alignment is measured on) and metrics.json."""
    model = p.model
    model.load_state_dict(load_checkpoint(run.best)["model"])
    test = evaluate(model, p.data, p.split["test"], config, p.scale, p.device, part="test")
    with torch.no_grad():
        for name in ("train", "val", "test"):
            idx = p.split[name]
            if idx.numel() == 0:
                continue
            out = predict(model, p.data, idx, p.device)
            arrays = {"embedding": out.embedding.float().numpy(),
                      "projection": out.projection.float().numpy(), "targets": p.data.targets[idx].numpy()}
            if p.augment is not None or config.trainer.views.count > 1:  # alignment needs two views
                a, b = predict_views(model, p.data, idx, p.device, p.augment, config.trainer.seed)
                arrays.update(view_a=a.numpy(), view_b=b.numpy())
            with atomic_write(run.embeddings / f"{name}.npz") as handle:
                np.savez(handle, **arrays)
    write_json(
        {
            "best": state.best,
            "final": state.history[-1] if state.history else {},
            "test": test,
            "stopped_early": state.stopped_early,
            "epochs_run": len(state.history),
            "target_scale": {"mean": p.scale.mean, "sd": p.scale.sd},
            "diverged": diverged,
        },
        run.metrics,
    )
    return RunResult(run.path, state.history, state.best, state.stopped_early, test, model, diverged)
