"""Everything around the training loop is a callback: early stopping, the plateau scheduler's step, the
epoch lines, every tracker (TensorBoard, MLflow, W&B), a sweep's pruning, and yours.

The trainer calls each :class:`Callback` in order: ``on_fit_start`` before the first epoch (also of a
resumed run), ``on_step_end`` after every optimiser step, ``on_epoch_end`` after each epoch's history row
is made and before its checkpoint is written (so what a callback changes there, a learning rate or the
decision to stop, is saved with the epoch and survives ``kill -9``), ``on_save`` once the checkpoint is on
disk (what only reports: trackers, epoch lines, a sweep's trial), and ``on_fit_end`` once at the end with
how the run ended. A callback asks the trainer to stop through the :class:`Control` it is handed
(Hugging Face's ``TrainerControl``): the run then ends cleanly after the current epoch, its checkpoint
written, and, unless the stop says ``finish=False`` (a pruned sweep trial), evaluates its best checkpoint
on test as any run does.

>>> import contrastlab
>>> class StopAfter(contrastlab.Callback):
...     def __init__(self, epochs):
...         self.epochs = epochs
...     def on_epoch_end(self, row, state, control):
...         if row["epoch"] >= self.epochs:
...             control.stop(f"asked to stop after epoch {self.epochs}")
>>> recipe = {"data": {"name": "blobs", "options": {"n_samples": 200, "n_features": 4}},
...           "trainer": {"epochs": 10, "batch_size": 20}}
>>> result = contrastlab.fit(recipe, callbacks=[StopAfter(2)], run_dir=getfixture("tmp_path") / "run",
...                          quiet=True)
>>> len(result.history), result.stopped_early
(2, True)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contrastlab.train.checkpoint import TrainState
    from contrastlab.train.loggers import RunLogger
    from contrastlab.train.loop import StepState
    from contrastlab.train.rundir import RunDir
    from contrastlab.train.trainer import RunResult

__all__ = ["Callback", "Control", "EarlyStopping", "EpochLines", "PlateauStep", "StepHooks", "Trackers"]


@dataclass
class Control:
    """What the callbacks ask of the trainer; it reads ``should_stop`` after every epoch's callbacks."""

    should_stop: bool = False
    #: Why, for the run's stop line ("stopped early after epoch 7: no better val/loss for 5 epochs").
    reason: str = ""
    #: False: end without the test evaluation and final files (a pruned sweep trial: KILLED, not FINISHED).
    finish: bool = True

    def stop(self, reason: str, *, finish: bool = True) -> None:
        """Ends the run after the current epoch (its checkpoint written); the first reason given is kept."""
        if not self.should_stop:
            self.should_stop, self.reason = True, reason
        self.finish = self.finish and finish


class Callback:
    """A hook into the trainer; override the methods you need (each default does nothing).

    ``state`` is the run's :class:`~contrastlab.train.checkpoint.TrainState` (its epoch, global step,
    history, best epoch and the epochs since it improved), read-only for callbacks but for what they own.
    """

    def on_fit_start(self, state: TrainState, control: Control) -> None:
        """Before the first epoch this process trains (also when resuming)."""

    def on_step_end(self, step: StepState, control: Control) -> None:
        """After every optimiser step (a stop asked here takes effect at the end of the epoch)."""

    def on_epoch_end(self, row: dict[str, Any], state: TrainState, control: Control) -> None:
        """After each epoch's history row (``row["epoch"]`` counts from 1), before its checkpoint."""

    def on_save(self, row: dict[str, Any], state: TrainState, control: Control) -> None:
        """After the epoch's checkpoint is written (a stop asked here ends the run as well)."""

    def on_fit_end(self, result: RunResult | None, status: str) -> None:
        """Once at the end: FINISHED (``result`` holds the test metrics), KILLED (stopped with
        ``finish=False``) or FAILED (training raised; ``result`` is None)."""


class EarlyStopping(Callback):
    """``trainer.early_stopping``: stops after ``patience`` epochs without a better monitored value (the
    trainer keeps the best epoch and its checkpoint). A run that stopped early stays stopped on resume,
    unless a larger patience lets it go on."""

    def __init__(self, monitor: str, patience: int | None) -> None:
        self.monitor, self.patience = monitor, patience

    def _check(self, state: TrainState, control: Control) -> None:
        if self.patience is not None and state.bad_epochs >= self.patience:
            control.stop(f"stopped early after epoch {state.epoch + 1}: no better {self.monitor} for "
                         f"{self.patience} epochs")  # fmt: skip

    def on_fit_start(self, state: TrainState, control: Control) -> None:
        self._check(state, control)

    def on_epoch_end(self, row: dict[str, Any], state: TrainState, control: Control) -> None:
        self._check(state, control)


class PlateauStep(Callback):
    """``trainer.scheduler.name=plateau``: the scheduler steps on the monitored value after each epoch."""

    def __init__(self, scheduler: Any, monitor: str) -> None:
        self.scheduler, self.monitor = scheduler, monitor

    def on_epoch_end(self, row: dict[str, Any], state: TrainState, control: Control) -> None:
        self.scheduler.step(float(row[self.monitor]))


class EpochLines(Callback):
    """One line per epoch on stderr (where no progress bar is shown): the loss, each term, the validation
    metrics, the learning rate."""

    def __init__(self, epochs: int, terms: Sequence[str],
                 line: Callable[[dict[str, Any], int, Sequence[str]], str]) -> None:  # fmt: skip
        self.epochs, self.terms, self.line = epochs, list(terms), line

    def on_save(self, row: dict[str, Any], state: TrainState, control: Control) -> None:
        print(self.line(row, self.epochs, self.terms), file=sys.stderr, flush=True)


class Trackers(Callback):
    """The trackers of ``trainer.loggers`` (TensorBoard, MLflow, W&B): every step's loss, parts, weights and
    gradient norms, every epoch's row, and at the end the test metrics and the run's small files."""

    def __init__(self, loggers: Sequence[RunLogger], run: RunDir) -> None:
        self.loggers, self.run = list(loggers), run

    def on_step_end(self, step: StepState, control: Control) -> None:
        if not self.loggers:
            return
        scalars = {"step/loss": step.loss, "step/grad_norm": step.grad_norm,
                   **{f"step/{k}": v for k, v in step.parts.items()},
                   **{f"step/weight/{k}": v for k, v in step.weights.items()},
                   **{f"step/grad_norm/{k}": v for k, v in step.term_grad_norms.items()}}  # fmt: skip
        for logger in self.loggers:
            logger.step(step.global_step, scalars)

    def on_save(self, row: dict[str, Any], state: TrainState, control: Control) -> None:
        for logger in self.loggers:
            logger.epoch(int(row["epoch"]), state.global_step, row)

    def on_fit_end(self, result: RunResult | None, status: str) -> None:
        from contrastlab.train.loggers import finish_run

        if result is None or status != "FINISHED":
            for logger in self.loggers:
                logger.close(status)
            return
        metrics = {f"test.{k}": v for k, v in result.test.items()}
        if result.best:
            metrics[f"best.{result.best['metric']}"] = float(result.best["value"])
        finish_run(self.loggers, self.run, metrics)


class StepHooks(Callback):
    """Plain functions as a callback: ``on_step(step)`` and ``on_epoch(epoch, row)`` (what ``train``'s
    ``on_step`` / ``on_epoch`` arguments take)."""

    def __init__(self, on_step: Callable[[StepState], None] | None = None,
                 on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> None:  # fmt: skip
        self.on_step, self.on_epoch = on_step, on_epoch

    def on_step_end(self, step: StepState, control: Control) -> None:
        if self.on_step is not None:
            self.on_step(step)

    def on_save(self, row: dict[str, Any], state: TrainState, control: Control) -> None:
        if self.on_epoch is not None:
            self.on_epoch(int(row["epoch"]), row)
