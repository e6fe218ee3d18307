"""The guard: a non-finite loss or gradient never reaches the weights, and a run that keeps producing them
stops with a report instead of training on.

A step whose loss (any part) or gradient (after fp16 unscaling) is not finite is dropped whole; the run
counts it (``skipped_steps``), and ``max_consecutive_skips`` dropped steps in a row raise
:class:`TrainingDiverged`. Under torchrun every rank takes the same decision, or the gradient exchange
would hang.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from contrastlab.models import ModelOutput

__all__ = ["Guard", "TrainingDiverged", "divergence_report", "finite_divergence"]


class TrainingDiverged(RuntimeError):
    """Raised after ``max_consecutive_skips`` non-finite steps; ``report`` says what went wrong where."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        super().__init__(
            f"training stopped after {report['consecutive_skips']} consecutive non-finite steps "
            f"(epoch {report['epoch']}, step {report['step']}): non-finite {report['non_finite']}; "
            f"max |logit| {report['max_logit']:.3g} at temperature {report['temperature']}, "
            f"feature norms up to {report['max_feature_norm']:.3g}"
        )


class Guard:
    """Counts dropped steps and stops the run at ``limit`` in a row.

    Args:
        limit: ``trainer.max_consecutive_skips``.
        temperatures: The terms' temperatures, for the report's largest logit.
    """

    def __init__(self, limit: int, temperatures: Sequence[float]) -> None:
        self.limit = limit
        self.temperature = min(temperatures, default=None)
        self.consecutive = 0

    def gradients_finite(self, params: Sequence[Tensor], scaler: torch.amp.GradScaler,
                         optimizer: torch.optim.Optimizer) -> bool:  # fmt: skip
        """Unscales (fp16) and checks every gradient; an fp16 overflow lowers the scale, as GradScaler's own
        skipped step would."""
        scaler.unscale_(optimizer)  # a no-op without fp16
        finite = all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)
        if not finite and scaler.is_enabled():
            scaler.update()
        return finite

    def drop(self, optimizer: torch.optim.Optimizer, failure: list[str], outputs: Sequence[ModelOutput],
             epoch: int, step: int) -> None:  # fmt: skip
        """Drops the step's gradients; raises TrainingDiverged at the ``limit``-th dropped step in a row."""
        optimizer.zero_grad(set_to_none=True)
        self.consecutive += 1
        if self.consecutive >= self.limit:
            report = divergence_report(failure, outputs, self.temperature, epoch, step)
            raise TrainingDiverged({**report, "consecutive_skips": self.consecutive})

    def applied(self) -> None:
        self.consecutive = 0


def divergence_report(
    non_finite: list[str], outputs: Sequence[ModelOutput], temperature: float | None, epoch: int, step: int
) -> dict[str, Any]:
    """Where a dropped step went wrong: the non-finite parts, the largest logit, the largest feature norm."""
    report: dict[str, Any] = {"epoch": epoch + 1, "step": step, "non_finite": non_finite,
                              "temperature": temperature, "max_logit": float("nan"),
                              "max_feature_norm": float("nan"), "logits_finite": None}  # fmt: skip
    if not outputs:
        return report
    proj = outputs[0].projection.detach().float()
    sims = proj @ proj.T
    emb = outputs[0].embedding.detach().float()
    report.update(
        max_logit=float(sims.abs().max() / (temperature or 1.0)) if sims.numel() else float("nan"),
        max_feature_norm=float(emb.norm(dim=-1).max()),
        logits_finite=bool(torch.isfinite(outputs[0].logits).all()),
    )
    return report


#: A training loss this many times its first epoch's is a divergence, however finite.
LOSS_GROWTH = 1e3
#: Epochs at the end of a run with the monitored accuracy at chance that make it a divergence.
CHANCE_EPOCHS = 3


def finite_divergence(history: Sequence[dict[str, Any]], chance: float | None = None) -> str | None:
    """Why a run that stayed finite still diverged, or None: its training loss grew to ``LOSS_GROWTH``
    times its first epoch's, or its validation accuracy was at most ``chance`` (the share of the most
    frequent class) in each of its last ``CHANCE_EPOCHS`` epochs.

    Example:
        >>> rows = [{"epoch": 1, "train/loss": 2.0}, {"epoch": 2, "train/loss": 2e8}]
        >>> finite_divergence(rows)
        "the training loss grew to 2e+08 at epoch 2, 1e+08x its first epoch's 2"
        >>> rows = [{"epoch": e, "val/accuracy": a} for e, a in enumerate([0.6, 0.8, 0.25, 0.25, 0.25])]
        >>> finite_divergence(rows, chance=0.25)
        "the validation accuracy was at chance (0.25, the most frequent class's share) for the last 3 epochs"
    """
    losses = [(row["epoch"], float(loss)) for row in history
              if isinstance(loss := row.get("train/loss"), int | float) and math.isfinite(loss)]  # fmt: skip
    if losses and losses[0][1] > 0:
        epoch, worst = max(losses, key=lambda pair: pair[1])
        if worst >= LOSS_GROWTH * losses[0][1]:
            first = losses[0][1]
            return (f"the training loss grew to {worst:.3g} at epoch {epoch}, {worst / first:.3g}x its first "
                    f"epoch's {first:.3g}")  # fmt: skip
    accuracy = [float(row["val/accuracy"]) for row in history if "val/accuracy" in row]
    tail = accuracy[-CHANCE_EPOCHS:]
    if chance is not None and len(tail) == CHANCE_EPOCHS and max(tail) <= chance + 1e-9:
        return (f"the validation accuracy was at chance ({chance:.3g}, the most frequent class's share) for "
                f"the last {CHANCE_EPOCHS} epochs")  # fmt: skip
    return None
