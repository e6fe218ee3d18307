"""Focal SupCon: SupCon with each positive pair weighted by (1 - p)^γ, hard positives first."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from contrastlab.losses import focal_supcon
from contrastlab.train.terms.base import BatchOutputs, ContrastiveTermConfig, Term, stacked_views

__all__ = ["ORDER", "TERM", "FocalSupConTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 20


class FocalSupConTermConfig(ContrastiveTermConfig):
    gamma: float = Field(default=2.0, ge=0.0)


def _focal_supcon(batch: BatchOutputs, cfg: FocalSupConTermConfig) -> Tensor:
    return focal_supcon(stacked_views(batch), batch.labels, temperature=cfg.temperature, gamma=cfg.gamma,
                        chunk_size=cfg.chunk_size, gather_distributed=batch.gather_distributed)  # fmt: skip


TERM = Term(_focal_supcon, FocalSupConTermConfig)
