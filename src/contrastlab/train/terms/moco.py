"""MoCo (He et al. 2020): view 1 through the model against view 2 through a momentum copy of it, with a
    FIFO queue of earlier keys as extra negatives."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from contrastlab.losses import info_nce
from contrastlab.train.terms.base import BatchOutputs, ContrastiveTermConfig, Needs, Term

__all__ = ["ORDER", "TERM", "MoCoTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 60


class MoCoTermConfig(ContrastiveTermConfig):
    """MoCo (He et al. 2020): view 1 through the model against view 2 through a momentum copy of it, with a
    FIFO queue of earlier keys as extra negatives."""

    temperature: float = Field(default=0.2, gt=0.0)
    queue_size: int = Field(default=4096, ge=1)
    momentum: float = Field(default=0.99, ge=0.0, le=1.0)


def _moco(batch: BatchOutputs, cfg: MoCoTermConfig) -> Tensor:
    if batch.keys is None:
        raise ValueError("objective.moco needs the momentum encoder's output on the second view (keys)")
    return info_nce(batch.views[0].projection, batch.keys.projection.detach().float(), negatives=batch.queue,
                    temperature=cfg.temperature, chunk_size=cfg.chunk_size,
                    gather_distributed=batch.gather_distributed)  # fmt: skip


TERM = Term(_moco, MoCoTermConfig, Needs(views=2, momentum=True))
