"""A contrastive term in Hugging Face's ``Trainer`` (the ``text`` extra).

``ContrastiveMixin`` changes one method, ``compute_loss``: the batch goes through the model ``views``
times (dropout makes each pass a different view of every example, seed 004's recipe), the model's own task
loss is averaged over the passes, and ``weight`` times contrastlab's SupCon over the passes' pooled last
hidden states (labelled by ``labels``) is added. Mix it into your own Trainer subclass, or use
``ContrastiveTrainer``::

    trainer = ContrastiveTrainer(model=model, args=args, train_dataset=data, contrastive_weight=0.2)

The term and the task are logged (``contrastive/supcon``, ``contrastive/task``) with the Trainer's logs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers import Trainer

from contrastlab.losses import supcon

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
    """``compute_loss`` = mean task loss over ``contrastive_views`` dropout passes + ``contrastive_weight``
    · SupCon(pooled last hidden states of the passes, labels)."""

    def __init__(self, *args: Any, contrastive_weight: float = 0.1, contrastive_temperature: float = 0.1,
                 contrastive_views: int = 2, **kwargs: Any) -> None:  # fmt: skip
        if contrastive_weight < 0 or contrastive_temperature <= 0 or contrastive_views < 1:
            raise ValueError(
                f"contrastive_weight={contrastive_weight} must be >= 0, contrastive_temperature="
                f"{contrastive_temperature} > 0 and contrastive_views={contrastive_views} >= 1"
            )
        super().__init__(*args, **kwargs)
        self.contrastive_weight = contrastive_weight
        self.contrastive_temperature = contrastive_temperature
        self.contrastive_views = contrastive_views
        self._parts: dict[str, list[float]] = {"contrastive/task": [], "contrastive/supcon": []}

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:  # fmt: skip
        labels = inputs.get("labels")
        if labels is None:
            raise ValueError("ContrastiveMixin needs a 'labels' column: SupCon pairs the examples by label")
        outputs = [model(**inputs, output_hidden_states=True) for _ in range(self.contrastive_views)]
        task = torch.stack([o.loss for o in outputs]).mean()
        mask = inputs.get("attention_mask")
        views = torch.stack([mean_pool(o.hidden_states[-1], mask) for o in outputs], dim=1)  # (N, V, H)
        term = supcon(views, labels, temperature=self.contrastive_temperature)
        loss = task + self.contrastive_weight * term
        self._parts["contrastive/task"].append(float(task.detach()))
        self._parts["contrastive/supcon"].append(float(term.detach()))
        return (loss, outputs[0]) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's logs, plus the means of the task and the term since the last log."""
        for name, values in self._parts.items():
            if values:
                logs[name] = sum(values) / len(values)
                values.clear()
        super().log(logs, *args, **kwargs)  # type: ignore[misc]


class ContrastiveTrainer(ContrastiveMixin, Trainer):
    """``transformers.Trainer`` with the contrastive term (see :class:`ContrastiveMixin`)."""
