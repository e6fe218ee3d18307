"""An objective: a task loss plus named weighted terms, ``task + Σ_k λ_k(epoch) · term_k``.

Each term is an entry of the term registry (:mod:`contrastlab.train.terms`) evaluated on one batch's
outputs (:class:`~contrastlab.train.terms.BatchOutputs`). The objective weighs and schedules them and holds
nothing else: no model, no queue, no state but the weights that automatic λ adapts. Terms with weight 0 are
still evaluated (without gradient) so that a baseline run logs what the term would have been: the curves of
both arms of a comparison then show the same quantities.
"""

from __future__ import annotations

import math
from collections.abc import Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.train.config import CLASSIFICATION_TASKS, ObjectiveConfig
from contrastlab.train.terms import BatchOutputs, Needs, ScheduleConfig, Term, get_term

if TYPE_CHECKING:
    from contrastlab.models.text import ViewRequest

__all__ = ["CLASSIFICATION_TASKS", "Objective", "ObjectiveValue", "scheduled_weight", "task_loss"]



def scheduled_weight(weight: float, schedule: ScheduleConfig, epoch: int) -> float:
    """λ at ``epoch`` (0-based) under ``schedule``.

    Example:
        >>> from contrastlab.train.terms import ScheduleConfig
        >>> warmup = ScheduleConfig(kind="linear_warmup", warmup_epochs=4)
        >>> [scheduled_weight(0.5, warmup, e) for e in range(5)]
        [0.125, 0.25, 0.375, 0.5, 0.5]
        >>> [scheduled_weight(1.0, ScheduleConfig(kind="start_at", start_epoch=2), e) for e in range(4)]
        [0.0, 0.0, 1.0, 1.0]
    """
    if schedule.kind == "constant":
        return weight
    if schedule.kind == "start_at":
        return weight if epoch >= schedule.start_epoch else 0.0
    if schedule.kind == "linear_warmup":
        if schedule.warmup_epochs == 0:
            return weight
        return weight * min(1.0, (epoch + 1) / schedule.warmup_epochs)
    # cosine_ramp: 0 before start_epoch, then a half cosine up to λ over warmup_epochs
    if epoch < schedule.start_epoch:
        return 0.0
    if schedule.warmup_epochs == 0:
        return weight
    progress = min(1.0, (epoch - schedule.start_epoch + 1) / schedule.warmup_epochs)
    return weight * (1.0 - math.cos(math.pi * progress)) / 2.0


def task_loss(cfg: ObjectiveConfig, logits: Tensor, targets: Tensor) -> Tensor:
    """The supervised loss on one view's logits, in float32.

    Shape:
        - logits: (N, C) for classification, (N, 1) for regression; targets: (N,).
    """
    logits = logits.float()
    if cfg.task == "cross_entropy":
        return F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
    if cfg.task == "focal":
        # Lin et al. 2017: -(1 - p_t)^γ log p_t, with label smoothing folded into the target distribution.
        log_p = F.log_softmax(logits, dim=-1)  # (N, C)
        n_classes = logits.shape[-1]
        target = F.one_hot(targets, n_classes).float()
        target = target * (1 - cfg.label_smoothing) + cfg.label_smoothing / n_classes
        focal = (1 - log_p.exp()).pow(cfg.focal_gamma)
        return -(target * focal * log_p).sum(dim=-1).mean()
    if cfg.task in ("arcface", "cosface"):
        margins = margin_logits(cfg, logits, targets)
        return F.cross_entropy(margins, targets, label_smoothing=cfg.label_smoothing)
    prediction = logits.squeeze(-1)
    if cfg.task == "mse":
        return F.mse_loss(prediction, targets.float())
    if cfg.task == "l1":
        return F.l1_loss(prediction, targets.float())
    return logits.sum() * 0.0  # "none": pretraining on the terms alone


def margin_logits(cfg: ObjectiveConfig, cosine: Tensor, targets: Tensor) -> Tensor:
    """ArcFace (Deng et al. 2019): s·cos(θ_y + m) for the true class; CosFace (Wang et al. 2018):
    s·(cos θ_y - m); s·cos θ for the others.

    The cosine is clamped inside (-1, 1) before the arccos-free ArcFace identity
    cos(θ + m) = cos θ cos m - sin θ sin m, so sin θ = sqrt(1 - cos²θ) and its gradient stay finite; past
    θ = π - m, where θ + m would wrap around and raise the logit, ArcFace's usual linear fallback
    cos θ - m sin m keeps it decreasing.

    Shape:
        - cosine: (N, C) in [-1, 1] (a cosine head's logits); targets: (N,); returns (N, C).
    """
    cos = cosine.float().clamp(-1.0 + 1e-7, 1.0 - 1e-7)
    target = F.one_hot(targets, cos.shape[-1]).bool()
    if cfg.task == "arcface":
        m = 0.5 if cfg.face_margin is None else cfg.face_margin
        sin = (1.0 - cos.pow(2)).sqrt()
        shifted = cos * math.cos(m) - sin * math.sin(m)
        shifted = torch.where(cos > math.cos(math.pi - m), shifted, cos - math.sin(math.pi - m) * m)
    else:
        m = 0.35 if cfg.face_margin is None else cfg.face_margin
        shifted = cos - m
    return cfg.face_scale * torch.where(target, shifted, cos)


@dataclass
class ObjectiveValue:
    """One batch's objective: the total to optimise and every part, unweighted, for logging."""

    total: Tensor
    task: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, float]
    non_finite: list[str] = field(default_factory=list)




def _scalar(name: str, value: Any) -> Tensor:
    """A term's value, which must be a scalar tensor (a loss averaged over the batch)."""
    if not isinstance(value, Tensor) or value.ndim != 0:
        got = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"objective term {name!r} returned {got}; a term's loss must return a scalar tensor "
                         "(e.g. the mean over the batch: .mean())")  # fmt: skip
    return value


class Objective:
    """``task + Σ_k λ_k(epoch) · term_k`` built from an :class:`ObjectiveConfig`.

    ``base_weights`` start at the configured weights; automatic λ (``auto_ratio``) rescales them in
    :meth:`adapt`, and they are the objective's whole state (:meth:`state_dict`).

    Args:
        classification: Whether batches carry class labels; default: whether the task is a classification.
            An adapter whose host computes the task (``task: none``) on labelled data says True.

    Raises:
        ValueError: a term that needs class labels under a task that has none.
    """

    def __init__(self, cfg: ObjectiveConfig, *, classification: bool | None = None) -> None:
        self.cfg = cfg
        self.classification = cfg.task in CLASSIFICATION_TASKS if classification is None else classification
        self.term_cfgs = cfg.terms()
        self.entries: dict[str, Term] = {name: get_term(name) for name in self.term_cfgs}
        for name, term in self.entries.items():
            if term.needs.labels and not self.classification:
                raise ValueError(f"objective.{name} needs class labels; objective.task={cfg.task!r} is not a "
                                 "classification")  # fmt: skip
        self.base_weights = {name: t.weight for name, t in self.term_cfgs.items()}

    @property
    def needs(self) -> Needs:
        """What the configured terms need together (views: the most any needs)."""
        wanted = [t.needs for t in self.entries.values()]
        return Needs(
            views=max((n.views for n in wanted), default=1),
            labels=any(n.labels for n in wanted),
            momentum=any(n.momentum for n in wanted),
            reference=any(n.reference for n in wanted),
            auxiliary=any(n.auxiliary for n in wanted),
        )

    def view_request(self) -> ViewRequest:
        """The extra views (layers, tokens, clusters) the terms read from a text encoder."""
        from contrastlab.models.text import ViewRequest

        request = ViewRequest()
        for name, term in self.entries.items():
            if term.needs.text_views is not None:
                term.needs.text_views(self.term_cfgs[name], request)
        return request

    def weights(self, epoch: int) -> dict[str, float]:
        return {
            name: scheduled_weight(self.base_weights[name], t.schedule, epoch)
            for name, t in self.term_cfgs.items()
        }

    def __call__(self, batch: BatchOutputs, epoch: int) -> ObjectiveValue:
        """Evaluates the objective on one batch's outputs.

        The task loss is averaged over ``batch.supervised`` (the clean input's output when the task is on
        it, otherwise every view: R-Drop's convention). A term is evaluated on the views, or, when it
        ``needs.supervised``, on the supervised outputs; with no view outputs (the trainer skips the views
        while every term's weight is 0 and the task is on the clean input) the view terms are not evaluated.
        """
        task = torch.stack([task_loss(self.cfg, o.logits, batch.targets) for o in batch.supervised]).mean()
        weights = self.weights(epoch)
        total = task
        terms: dict[str, Tensor] = {}
        for name, term in self.entries.items():
            if not batch.views and not term.needs.supervised:
                continue
            cfg = self.term_cfgs[name]
            if weights[name] > 0:
                terms[name] = _scalar(name, term.loss(batch, cfg))
                total = total + weights[name] * terms[name]
            else:
                with torch.no_grad():  # logged for comparison, not optimised
                    terms[name] = _scalar(name, term.loss(batch, cfg))
        parts = {"task": task, **terms}
        non_finite = [name for name, value in parts.items() if not bool(torch.isfinite(value))]
        return ObjectiveValue(total, task, terms, weights, non_finite)

    def adapt(self, ratios: dict[str, float]) -> None:
        """Moves each auto-λ term's weight toward its target gradient-norm ratio (damped: x0.5..x2)."""
        for name, ratio in ratios.items():
            target = self.term_cfgs[name].auto_ratio
            if target is None or ratio <= 0 or not math.isfinite(ratio):
                continue
            self.base_weights[name] *= min(2.0, max(0.5, target / ratio))

    def state_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.base_weights)}

    def load_state_dict(self, state: dict[str, Any], *, configured: Set[str] = frozenset()) -> None:
        """Restores adapted weights, except those of the terms named in ``configured`` (a resume that sets
        their weight, where the config wins)."""
        weights = state["weights"]
        kept = {k: v for k, v in weights.items() if k in self.base_weights and k not in configured}
        self.base_weights.update(kept)
