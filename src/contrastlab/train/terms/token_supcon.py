"""SupCon over token views (text encoders): the ``k`` tokens that [CLS] attends to most in the last
    layer are each a view of their sentence; ``select: kmeans`` uses the centroids of ``clusters`` k-means
    clusters of those tokens instead. With class labels every view of a same-class sentence is a positive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field
from torch import Tensor

from contrastlab.losses import supcon
from contrastlab.train.terms.base import BatchOutputs, ContrastiveTermConfig, Needs, Term, token_rows

if TYPE_CHECKING:
    from contrastlab.models.text import ViewRequest

__all__ = ["ORDER", "TERM", "TokenSupConTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 70


class TokenSupConTermConfig(ContrastiveTermConfig):
    """SupCon over token views (text encoders): the ``k`` tokens that [CLS] attends to most in the last
    layer are each a view of their sentence; ``select: kmeans`` uses the centroids of ``clusters`` k-means
    clusters of those tokens instead. With class labels every view of a same-class sentence is a positive."""

    k: int = Field(default=16, ge=1)
    select: Literal["attention", "kmeans"] = "attention"
    clusters: int = Field(default=8, ge=1)


def _token_supcon(batch: BatchOutputs, cfg: TokenSupConTermConfig) -> Tensor:
    key, mask = ("clusters", "clusters_mask") if cfg.select == "kmeans" else ("tokens:-1", "tokens_mask")
    rows, labels = token_rows(batch.views[0], key, mask, batch.labels)
    return supcon(rows, labels, temperature=cfg.temperature, chunk_size=cfg.chunk_size,
                  gather_distributed=batch.gather_distributed)  # fmt: skip


def _token_views(cfg: TokenSupConTermConfig, request: ViewRequest) -> None:
    request.k = cfg.k
    if cfg.select == "kmeans":
        request.clusters = cfg.clusters
    else:
        request.token_layers.add(-1)


TERM = Term(_token_supcon, TokenSupConTermConfig, Needs(text_views=_token_views))
