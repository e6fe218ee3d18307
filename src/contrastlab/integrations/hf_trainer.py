"""Contrastive terms in Hugging Face's ``Trainer`` (the ``text`` extra).

``ContrastiveMixin`` changes one method, ``compute_loss``: the batch goes through the model ``views``
times (dropout makes each pass a different view of every example, the text-views study's recipe), the
model's own task loss is averaged over the passes, and contrastlab's objective terms on the passes' pooled
last hidden states
(labelled by ``labels``) are added: by default ``weight`` times SupCon, or any terms of a recipe's
``objective:`` section (``contrastive_objective={"supcon": {...}, "rdrop": {...}}``; the task stays the
model's own, so ``task`` is ``none``). Mix it into your own Trainer subclass, or use ``ContrastiveTrainer``::

    trainer = ContrastiveTrainer(model=model, args=args, train_dataset=data, contrastive_weight=0.2)

The task and each term are logged (``contrastive/task``, ``contrastive/supcon``, ...) with the Trainer's logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import Trainer

from contrastlab.models import ModelOutput
from contrastlab.train.config import ObjectiveConfig
from contrastlab.train.objective import Objective
from contrastlab.train.terms import BatchOutputs

__all__ = ["ContrastiveMixin", "ContrastiveTrainer", "mean_pool"]


def mean_pool(hidden: Tensor, mask: Tensor | None) -> Tensor:
    """The mean of each sequence's hidden states over its real tokens.

    Shape:
        - hidden: (N, L, H); mask: (N, L) or None; returns (N, H).
    """
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class ContrastiveMixin:
    """``compute_loss`` = mean task loss over ``contrastive_views`` dropout passes + the objective's weighted
    terms on the pooled last hidden states of the passes (default: ``contrastive_weight`` · SupCon)."""

    def __init__(self, *args: Any, contrastive_weight: float = 0.1, contrastive_temperature: float = 0.1,
                 contrastive_views: int = 2, contrastive_objective: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        if contrastive_weight < 0 or contrastive_temperature <= 0 or contrastive_views < 1:
            raise ValueError(
                f"contrastive_weight={contrastive_weight} must be >= 0, contrastive_temperature="
                f"{contrastive_temperature} > 0 and contrastive_views={contrastive_views} >= 1"
            )
        supcon = {"weight": contrastive_weight, "temperature": contrastive_temperature}
        spec = dict(contrastive_objective or {"supcon": supcon})
        if spec.setdefault("task", "none") != "none":
            raise ValueError(f"contrastive_objective task={spec['task']!r}: the model computes the task loss "
                             "here; leave task out (or 'none')")  # fmt: skip
        self.contrastive = Objective(ObjectiveConfig.model_validate(spec), classification=True)
        if contrastive_views < self.contrastive.needs.views:
            raise ValueError(f"contrastive_views={contrastive_views}: the terms compare "
                             f"{self.contrastive.needs.views} views of each example")  # fmt: skip
        super().__init__(*args, **kwargs)
        self.contrastive_views = contrastive_views
        self._parts: dict[str, list[float]] = {}

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:  # fmt: skip
        labels = inputs.get("labels")
        if labels is None:
            raise ValueError("ContrastiveMixin needs a 'labels' column: SupCon pairs the examples by label")
        outputs = [model(**inputs, output_hidden_states=True) for _ in range(self.contrastive_views)]
        task = torch.stack([o.loss for o in outputs]).mean()
        mask = inputs.get("attention_mask")
        views = []
        for o in outputs:
            pooled = mean_pool(o.hidden_states[-1], mask)
            views.append(ModelOutput(o.logits, embedding=pooled, projection=F.normalize(pooled, dim=-1)))
        epoch = int(getattr(getattr(self, "state", None), "epoch", None) or 0)
        value = self.contrastive(BatchOutputs(views=views, targets=labels, labels=labels), epoch)
        loss = task + value.total  # the objective's own task is "none" (zero)
        for name, part in {"task": task, **value.terms}.items():
            self._parts.setdefault(f"contrastive/{name}", []).append(float(part.detach()))
        return (loss, outputs[0]) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's logs, plus the means of the task and each term since the last log."""
        for name, values in self._parts.items():
            if values:
                logs[name] = sum(values) / len(values)
                values.clear()
        super().log(logs, *args, **kwargs)  # type: ignore[misc]


class ContrastiveTrainer(ContrastiveMixin, Trainer):
    """``transformers.Trainer`` with the contrastive term (see :class:`ContrastiveMixin`)."""
