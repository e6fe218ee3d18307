"""contrastlab's losses as sentence-transformers losses (the ``sentence-transformers`` extra).

Each is an ``nn.Module`` taking ``(sentence_features, labels)`` as sentence-transformers' own losses do, so
it drops into ``SentenceTransformerTrainer(loss=...)`` or ``model.fit``; the computation is contrastlab's
(tiled: exact at any batch size in memory that grows with the batch, not its square; ``gather_distributed``
for negatives from every process).

- :class:`InfoNCELoss`: (anchor, positive, *hard negatives) columns, each anchor against every positive and
  every hard negative of the batch: what ``MultipleNegativesRankingLoss`` computes (its ``scale`` is
  ``1 / temperature``), in one call at batch sizes its cached variant has to split into mini-batches.
- :class:`SupConLoss`: two or more views per row (columns) and a label per row: Khosla et al.'s SupCon.
- :class:`CLIPLoss`: (anchor, positive) pairs, both directions averaged (CLIP's symmetric InfoNCE).

>>> import torch
>>> from contrastlab.integrations.sentence_transformers import InfoNCELoss
>>> class Tiny(torch.nn.Module):  # stands in for a SentenceTransformer
...     def forward(self, features):
...         return {"sentence_embedding": features["x"]}
>>> loss = InfoNCELoss(Tiny(), temperature=0.05)
>>> columns = [{"x": torch.eye(4)}, {"x": torch.eye(4)}]
>>> round(float(loss(columns, torch.zeros(4))), 4)  # each anchor equals its positive and nothing else
0.0
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from contrastlab.losses import clip_loss, info_nce, supcon

__all__ = ["CLIPLoss", "InfoNCELoss", "SupConLoss"]


class _ColumnsLoss(nn.Module):
    """What the three share: embedding each text column with the model, and the config the trainer logs."""

    #: The temperature when none is given (sentence-transformers' default scale 20 is 0.05).
    default_temperature = 0.05

    def __init__(self, model: nn.Module, *, temperature: float | None = None,
                 chunk_size: int | str | None = "auto", gather_distributed: bool = False) -> None:
        super().__init__()
        temperature = self.default_temperature if temperature is None else temperature
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r}; expected > 0")
        self.model = model
        self.temperature = temperature
        self.chunk_size = chunk_size
        self.gather_distributed = gather_distributed

    def embed(self, sentence_features: Iterable[dict[str, Tensor]]) -> list[Tensor]:
        """Each column's (N, D) sentence embeddings."""
        return [self.model(features)["sentence_embedding"] for features in sentence_features]

    def get_config_dict(self) -> dict[str, Any]:
        """What sentence-transformers writes into the model card."""
        return {"temperature": self.temperature, "chunk_size": self.chunk_size,
                "gather_distributed": self.gather_distributed}  # fmt: skip


class InfoNCELoss(_ColumnsLoss):
    """InfoNCE over (anchor, positive, *hard negatives) columns; ``MultipleNegativesRankingLoss`` with
    ``scale = 1 / temperature`` computes the same value."""

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        columns = self.embed(sentence_features)
        if len(columns) < 2:
            raise ValueError(f"InfoNCELoss needs (anchor, positive[, negatives]) columns, got {len(columns)}")
        negatives = torch.cat(columns[2:]) if len(columns) > 2 else None
        return info_nce(columns[0], columns[1], negatives=negatives, temperature=self.temperature,
                        chunk_size=self.chunk_size, gather_distributed=self.gather_distributed)  # fmt: skip


class SupConLoss(_ColumnsLoss):
    """SupCon over the rows' views (each text column a view of the row) and their labels."""

    default_temperature = 0.1

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        views = torch.stack(self.embed(sentence_features), dim=1)  # (N, V, D)
        return supcon(views, labels, temperature=self.temperature, chunk_size=self.chunk_size,
                      gather_distributed=self.gather_distributed)  # fmt: skip


class CLIPLoss(_ColumnsLoss):
    """CLIP's symmetric InfoNCE over (anchor, positive) pairs."""

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        columns = self.embed(sentence_features)
        if len(columns) != 2:
            raise ValueError(f"CLIPLoss needs (anchor, positive) columns, got {len(columns)}")
        return clip_loss(columns[0], columns[1], temperature=self.temperature, chunk_size=self.chunk_size,
                         gather_distributed=self.gather_distributed)  # fmt: skip
