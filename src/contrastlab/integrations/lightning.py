"""contrastlab's objective inside a PyTorch Lightning ``training_step`` (the ``lightning`` extra).

:class:`ContrastiveObjective` is the trainer's objective (:class:`contrastlab.train.objective.Objective`:
the task plus any registered terms, weighted and scheduled by epoch) on the outputs your step computed. It
returns the loss to optimise and logs, through ``LightningModule.log_dict``, the total, the task, every term
(unweighted) and its weight λ per step and per epoch, and every ``grad_norm_every`` steps, straight to the
module's loggers, the gradient norm of the task and of each weighted term on the parameters you name::

    class Classifier(L.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model  # returns contrastlab.models.ModelOutput (logits, embedding, projection)
            self.objective = ContrastiveObjective(
                {"task": "cross_entropy", "supcon": {"weight": 0.2, "temperature": 0.1}},
                grad_norm_parameters=lambda: self.model.encoder.parameters())

        def training_step(self, batch, batch_idx):
            x, y = batch
            views = [self.model(x), self.model(x)]  # two dropout views (or two augmentations)
            return self.objective(self, views, y)

Your own model plugs in through ``contrastlab.models.wrap_encoder`` / ``ContrastiveModel`` (heads added), or
by building :class:`~contrastlab.models.ModelOutput` yourself (``projection`` L2-normalised).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from contrastlab.models import ModelOutput
from contrastlab.train.config import ObjectiveConfig
from contrastlab.train.loop import term_grad_norms
from contrastlab.train.objective import Objective, ObjectiveValue
from contrastlab.train.terms import BatchOutputs

__all__ = ["ContrastiveObjective"]


class ContrastiveObjective:
    """``task + Σ_k λ_k(epoch) · term_k`` on one step's outputs, logged to the LightningModule.

    Args:
        objective: What a recipe's ``objective:`` section holds (a mapping), or an ``ObjectiveConfig``.
            Terms that need a momentum encoder, a frozen reference or text views need the trainer; they are
            refused here.
        grad_norm_every: Every this many optimiser steps, the gradient norm of the task and of each
            weighted term (one extra autograd pass each); 0: never.
        grad_norm_parameters: The parameters those norms are taken on (the shared encoder's, so that task
            and terms are compared where they meet); default: every parameter that requires a gradient.
        prefix: The logged names' prefix (``contrastive/task``, ``contrastive/supcon``, ...).
        labelled: Whether ``targets`` are class labels that terms such as SupCon may pair by; default:
            whether the task is a classification (say True with ``task: none`` when your step computes the
            task loss itself and adds it).

    Raises:
        ValueError: a term this helper cannot feed, or a negative ``grad_norm_every``.
    """

    def __init__(self, objective: Mapping[str, Any] | ObjectiveConfig, *, grad_norm_every: int = 10,
                 grad_norm_parameters: Callable[[], Iterable[nn.Parameter]] | None = None,
                 prefix: str = "contrastive", labelled: bool | None = None) -> None:  # fmt: skip
        if not isinstance(objective, ObjectiveConfig):
            objective = ObjectiveConfig.model_validate(objective)
        self.objective = Objective(objective, classification=labelled)
        needs = self.objective.needs
        if needs.momentum or needs.reference or needs.auxiliary:
            wanted = [n for n, t in self.objective.entries.items()
                      if t.needs.momentum or t.needs.reference or t.needs.auxiliary]  # fmt: skip
            raise ValueError(f"objective terms {wanted} need a momentum encoder, a frozen reference or "
                             "auxiliary targets, which contrastlab's trainer provides")  # fmt: skip
        if grad_norm_every < 0:
            raise ValueError(f"grad_norm_every={grad_norm_every} must be >= 0 (0: never)")
        self.grad_norm_every = grad_norm_every
        self.grad_norm_parameters = grad_norm_parameters
        self.prefix = prefix

    def value(self, views: Sequence[ModelOutput], targets: Tensor, epoch: int = 0) -> ObjectiveValue:
        """The objective's parts on one batch's ``views`` (V outputs of the same N samples)."""
        if len(views) < self.objective.needs.views:
            raise ValueError(f"the objective's terms compare {self.objective.needs.views} views of each "
                             f"sample; got {len(views)}")  # fmt: skip
        labels = targets if self.objective.classification else None
        return self.objective(BatchOutputs(views=list(views), targets=targets, labels=labels), epoch)

    def __call__(self, module: Any, views: Sequence[ModelOutput], targets: Tensor, *,
                 log: bool = True) -> Tensor:  # fmt: skip
        """The loss to return from ``training_step``; logs its parts to ``module`` (a LightningModule)."""
        value = self.value(views, targets, int(module.current_epoch))
        if value.non_finite:
            raise FloatingPointError(f"non-finite objective parts {value.non_finite} at step "
                                     f"{module.global_step}")  # fmt: skip
        if log:
            p = self.prefix
            logged = {f"{p}/loss": value.total.detach(), f"{p}/task": value.task.detach(),
                      **{f"{p}/{k}": v.detach() for k, v in value.terms.items()},
                      **{f"{p}/weight/{k}": float(w) for k, w in value.weights.items()}}  # fmt: skip
            module.log_dict(logged, on_step=True, on_epoch=True, batch_size=int(targets.shape[0]))
            every, step = self.grad_norm_every, int(module.global_step)
            if every and step % every == 0 and value.total.requires_grad and module.loggers:
                # straight to the loggers at this step: ``log_dict`` would repeat a value logged on some
                # steps only at the steps between
                params = (self.grad_norm_parameters() if self.grad_norm_parameters is not None
                          else module.parameters())  # fmt: skip
                norms = term_grad_norms(value, [q for q in params if q.requires_grad])
                for logger in module.loggers:
                    logger.log_metrics({f"{p}/grad_norm/{k}": v for k, v in norms.items()}, step=step)
        return value.total
