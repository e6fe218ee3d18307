"""Uniformity (Wang & Isola 2020) of each view's projections: spreads the batch over the sphere, the
negatives' half of a contrastive loss without positives (``objective.uniformity: {weight: λ, t: 2}``).
Relations: ``nt_xent`` and ``supcon`` hold it with an alignment half; ``diagnose`` reports the same quantity
on the embedding as ``geometry.uniformity``."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from contrastlab.losses import uniformity_loss
from contrastlab.train.terms.base import BatchOutputs, Term, TermConfig

__all__ = ["ORDER", "TERM", "UniformityTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 120


class UniformityTermConfig(TermConfig):
    #: The Gaussian kernel's scale t.
    t: float = Field(default=2.0, gt=0.0)


def _uniformity(batch: BatchOutputs, cfg: UniformityTermConfig) -> Tensor:
    return torch.stack([uniformity_loss(o.projection, t=cfg.t) for o in batch.views]).mean()


TERM = Term(_uniformity, UniformityTermConfig)
