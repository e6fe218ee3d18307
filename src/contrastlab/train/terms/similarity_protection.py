"""Similarity protection (the identity study): the cosine similarity of every same-identity pair in a
batch may fall at most ``margin`` below its value under a frozen copy of the starting model (after
``model.init_from``)."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from contrastlab.losses import similarity_protection
from contrastlab.train.terms.base import BatchOutputs, Needs, Term, TermConfig

__all__ = ["ORDER", "TERM", "ProtectionTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 90


class ProtectionTermConfig(TermConfig):
    """Similarity protection (the identity study): the cosine similarity of every same-identity pair in a
    batch may fall at most ``margin`` below its value under a frozen copy of the starting model (after
    ``model.init_from``)."""

    margin: float = Field(default=0.01, ge=0.0)


def _protection(batch: BatchOutputs, cfg: ProtectionTermConfig) -> Tensor:
    """Similarity protection over the batch's same-identity pairs (i < j)."""
    if batch.reference is None:
        raise ValueError("objective.similarity_protection needs the reference model's output")
    assert batch.labels is not None
    e = F.normalize(batch.views[0].embedding.float(), dim=-1)
    r = F.normalize(batch.reference.embedding.float(), dim=-1)
    y = batch.labels
    pairs = (y[:, None] == y[None, :]).triu(1)
    if not bool(pairs.any()):
        return e.sum() * 0.0  # no two samples of one identity in this batch
    return similarity_protection((e @ e.T)[pairs], (r @ r.T)[pairs], margin=cfg.margin)


TERM = Term(_protection, ProtectionTermConfig, Needs(labels=True, reference=True))
