"""The cross-modal CLIP term (Radford et al. 2021) between a two-tower model's views of one sample
    (model.name=fusion: the graph and the text vectors), every other sample of the batch a negative.
    The fusion study's ``--use_contrastive_loss 1 --contrastive_loss_weight λ --contrastive_temperature τ`` is
    ``objective.clip: {weight: λ, temperature: τ}``."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from contrastlab.losses import clip_loss
from contrastlab.train.terms.base import BatchOutputs, ContrastiveTermConfig, Term

__all__ = ["ORDER", "TERM", "ClipTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 100


class ClipTermConfig(ContrastiveTermConfig):
    """The cross-modal CLIP term (Radford et al. 2021) between a two-tower model's views of one sample
    (model.name=fusion: the graph and the text vectors), every other sample of the batch a negative.
    The fusion study's ``--use_contrastive_loss 1 --contrastive_loss_weight λ --contrastive_temperature τ`` is
    ``objective.clip: {weight: λ, temperature: τ}``."""

    temperature: float = Field(default=0.07, gt=0.0)


def _clip(batch: BatchOutputs, cfg: ClipTermConfig) -> Tensor:
    extras = batch.views[0].extras
    if "graph" not in extras or "text" not in extras:
        raise ValueError("objective.clip compares a two-tower model's graph and text views, and this model "
                         f"gave {sorted(extras) or 'no'} views (no text view with model.options."
                         "text_tower=false); use model.name=fusion on a paired graph+text dataset, or drop "
                         "the term: objective.clip=null")  # fmt: skip
    return clip_loss(extras["graph"], extras["text"], temperature=cfg.temperature, normalize=False,
                     chunk_size=cfg.chunk_size, gather_distributed=batch.gather_distributed)  # fmt: skip


TERM = Term(_clip, ClipTermConfig)
