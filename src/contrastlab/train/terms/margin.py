"""A pairwise margin loss over the views: same-label pairs pulled together, others pushed past a
margin (needs class labels)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from contrastlab.losses import margin_contrastive
from contrastlab.train.terms.base import BatchOutputs, Needs, Term, TermConfig, stacked_views

__all__ = ["ORDER", "TERM", "MarginTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 30


class MarginTermConfig(TermConfig):
    margin: float = Field(default=0.2, ge=0.0)


def _margin(batch: BatchOutputs, cfg: MarginTermConfig) -> Tensor:
    assert batch.labels is not None  # Needs(labels=True): the config checked the task
    return margin_contrastive(stacked_views(batch), batch.labels, margin=cfg.margin)


TERM = Term(_margin, MarginTermConfig, Needs(labels=True))
