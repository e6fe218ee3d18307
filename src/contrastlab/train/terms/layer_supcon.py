"""SupCon summed over several blocks of a text encoder: at ``level: sentence`` on each block's pooled
    state (one view per dropout view), at ``level: token`` on each block's top-``k`` tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import Tensor

from contrastlab.losses import supcon
from contrastlab.train.terms.base import (
    BatchOutputs,
    ContrastiveTermConfig,
    Needs,
    Term,
    extra_view,
    token_rows,
)

if TYPE_CHECKING:
    from contrastlab.models.text import ViewRequest

__all__ = ["ORDER", "TERM", "LayerSupConTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 80


class LayerSupConTermConfig(ContrastiveTermConfig):
    """SupCon summed over several blocks of a text encoder: at ``level: sentence`` on each block's pooled
    state (one view per dropout view), at ``level: token`` on each block's top-``k`` tokens."""

    layers: list[int] = Field(min_length=1)
    level: Literal["sentence", "token"] = "sentence"
    k: int = Field(default=16, ge=1)


def _layer_supcon(batch: BatchOutputs, cfg: LayerSupConTermConfig) -> Tensor:
    total = batch.views[0].projection.new_zeros(())
    for layer in cfg.layers:
        if cfg.level == "sentence":
            rows = torch.stack([extra_view(o, f"layer:{layer}") for o in batch.views], dim=1)
            labels = batch.labels
        else:
            rows, labels = token_rows(batch.views[0], f"tokens:{layer}", "tokens_mask", batch.labels)
        total = total + supcon(rows, labels, temperature=cfg.temperature, chunk_size=cfg.chunk_size,
                               gather_distributed=batch.gather_distributed)  # fmt: skip
    return total


def _layer_views(cfg: LayerSupConTermConfig, request: ViewRequest) -> None:
    if cfg.level == "sentence":
        request.layers.update(cfg.layers)
    else:
        request.token_layers.update(cfg.layers)
        request.k = cfg.k


TERM = Term(_layer_supcon, LayerSupConTermConfig, Needs(text_views=_layer_views))
