"""What every term shares: its config's base classes (weight, schedule, automatic λ), what a batch gave
(:class:`BatchOutputs`), what a term needs (:class:`Needs`), a registry entry (:class:`Term`), and the ways
the built-in terms read a batch's views."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

if TYPE_CHECKING:
    from contrastlab.models import ModelOutput
    from contrastlab.models.text import ViewRequest

__all__ = ["BatchOutputs", "ContrastiveTermConfig", "LossCall", "Needs", "ScheduleConfig", "Strict", "Term",
           "TermConfig", "extra_view", "stacked_views", "token_rows"]


class Strict(BaseModel):
    """A config section: unknown keys are errors, and assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ScheduleConfig(Strict):
    """How a term's weight λ(epoch) evolves; epochs count from 0.

    - constant: λ from the start.
    - linear_warmup: 0 → λ linearly over ``warmup_epochs``.
    - start_at: 0 before ``start_epoch`` (train on the task first), then λ.
    - cosine_ramp: 0 → λ along a half cosine from ``start_epoch`` over ``warmup_epochs``.
    """

    kind: Literal["constant", "linear_warmup", "start_at", "cosine_ramp"] = "constant"
    warmup_epochs: int = Field(default=0, ge=0)
    start_epoch: int = Field(default=0, ge=0)


class TermConfig(Strict):
    """One weighted auxiliary term. A weight of 0 switches the term off (the baseline arm)."""

    weight: float = Field(default=0.0, ge=0.0)
    schedule: ScheduleConfig = ScheduleConfig()
    #: Target ||∇(λ·term)|| / ||∇ task|| on the shared encoder; λ then adapts (None: fixed λ).
    auto_ratio: float | None = Field(default=None, gt=0.0)


class ContrastiveTermConfig(TermConfig):
    temperature: float = Field(default=0.1, gt=0.0)
    chunk_size: int | Literal["auto"] | None = "auto"


@dataclass
class BatchOutputs:
    """What one micro-batch gave: the model's outputs on each view and what the terms compare them with.

    Attributes:
        views: The V views' outputs (``projection`` (N, P) L2-normalised, ``embedding``, ``logits``,
            ``extras``); empty when the trainer skipped the views (every term's weight 0, task on clean).
        targets: The task targets (N,) (class indices, or standardised regression targets).
        labels: The class labels when the task is a classification, else None (self-supervised pairs).
        supervised: What the task loss reads: the clean input's output when the task is on it, else the views.
        keys: The momentum encoder's output on the second view (terms that need ``momentum``).
        queue: Earlier micro-batches' keys (K, P), the queue's negatives, or None while it is empty.
        reference: The frozen starting model's output on the first view (terms that need ``reference``).
        auxiliary: The dataset's auxiliary targets (N, A) (terms that need ``auxiliary``).
        gather_distributed: Under torchrun: gather every process's rows as negatives.
    """

    views: Sequence[ModelOutput]
    targets: Tensor
    labels: Tensor | None = None
    supervised: Sequence[ModelOutput] = ()
    keys: ModelOutput | None = None
    queue: Tensor | None = None
    reference: ModelOutput | None = None
    auxiliary: Tensor | None = None
    gather_distributed: bool = False

    def __post_init__(self) -> None:
        if not self.supervised:
            self.supervised = self.views


@dataclass(frozen=True)
class Needs:
    """What a term needs beyond the views' outputs.

    Attributes:
        views: The least number of views it compares (``trainer.views.count`` must reach it).
        labels: Class labels: the task must be a classification.
        momentum: A momentum copy of the model run on the second view, and a queue of its earlier keys.
        reference: A frozen copy of the starting model, run on the first view.
        auxiliary: The dataset's auxiliary targets.
        supervised: Computed on the supervised outputs (like the task), also when the views are skipped.
        text_views: The layer and token views of a text encoder that the term reads, from its config.
    """

    views: int = 1
    labels: bool = False
    momentum: bool = False
    reference: bool = False
    auxiliary: bool = False
    supervised: bool = False
    text_views: Callable[[Any, ViewRequest], None] | None = None


#: ``loss(batch, cfg)``: a scalar tensor from the batch's outputs and the term's validated config.
LossCall = Callable[[BatchOutputs, Any], Tensor]


@dataclass(frozen=True)
class Term:
    """A registry entry: the loss call, the config class of ``objective.<name>``, and what it needs."""

    loss: LossCall
    config: type[TermConfig] = TermConfig
    needs: Needs = field(default_factory=Needs)



# --- how the built-in terms read a batch ---------------------------------------------------------------


def extra_view(output: ModelOutput, key: str) -> Tensor:
    if key not in output.extras:
        raise ValueError(f"the model gave no {key!r} view; layer and token views need a text encoder")
    return output.extras[key]


def stacked_views(batch: BatchOutputs, layers: Sequence[int] = ()) -> Tensor:
    """(N, V, P): each view's projection, then (``layers``) the first view's pooled-layer projections."""
    extra = [extra_view(batch.views[0], f"layer:{i}") for i in layers]
    return torch.stack([o.projection for o in batch.views] + extra, dim=1)


def token_rows(output: ModelOutput, key: str, mask_key: str, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """Token (or cluster) views as rows with their sentence's label (its index when there are no labels)."""
    from contrastlab.views.text import flatten_views

    views = extra_view(output, key)
    labels = labels if labels is not None else torch.arange(views.shape[0], device=views.device)
    return flatten_views(views, output.extras[mask_key], labels)
