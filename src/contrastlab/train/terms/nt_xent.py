"""NT-Xent (SimCLR, Chen et al. 2020) between a sample's two views, the batch's other rows negatives."""

from __future__ import annotations

from torch import Tensor

from contrastlab.losses import nt_xent
from contrastlab.train.terms.base import BatchOutputs, ContrastiveTermConfig, Needs, Term

__all__ = ["ORDER", "TERM"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 40


def _nt_xent(batch: BatchOutputs, cfg: ContrastiveTermConfig) -> Tensor:
    return nt_xent(batch.views[0].projection, batch.views[1].projection, temperature=cfg.temperature,
                   gather_distributed=batch.gather_distributed)  # fmt: skip


TERM = Term(_nt_xent, ContrastiveTermConfig, Needs(views=2))
