"""SupCon (Khosla et al. 2020) over the views of each sample, every same-label row a positive; with
``layers``, the pooled states of those blocks of a text encoder join the views (the text-views study)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field
from torch import Tensor

from contrastlab.losses import supcon
from contrastlab.losses.supcon import SUPCON_TEMPERATURE
from contrastlab.train.terms.base import BatchOutputs, ContrastiveTermConfig, Needs, Term, stacked_views

if TYPE_CHECKING:
    from contrastlab.models.text import ViewRequest

__all__ = ["ORDER", "TERM", "SupConTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 10


class SupConTermConfig(ContrastiveTermConfig):
    temperature: float = Field(default=SUPCON_TEMPERATURE, gt=0.0)
    base_temperature: float | None = Field(default=None, gt=0.0)
    #: Text encoders: the pooled states of these blocks (0-based, -1 the last) join the views of each
    #: sample (the text-views study's multi-view SupCon: dropout views plus intermediate-layer [CLS]).
    layers: list[int] | None = None


def _supcon(batch: BatchOutputs, cfg: SupConTermConfig) -> Tensor:
    return supcon(stacked_views(batch, cfg.layers or ()), batch.labels, temperature=cfg.temperature,
                  base_temperature=cfg.base_temperature, chunk_size=cfg.chunk_size,
                  gather_distributed=batch.gather_distributed)  # fmt: skip


def _supcon_views(cfg: SupConTermConfig, request: ViewRequest) -> None:
    request.layers.update(cfg.layers or ())


TERM = Term(_supcon, SupConTermConfig, Needs(text_views=_supcon_views))
