"""R-Drop (Liang et al. 2021): the symmetric KL between two dropout views' predictions (MSE for a
regression)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from contrastlab.losses import rdrop_kl
from contrastlab.train.terms.base import BatchOutputs, Needs, Term, TermConfig

__all__ = ["ORDER", "TERM"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 50


def _rdrop(batch: BatchOutputs, cfg: TermConfig) -> Tensor:
    a, b = batch.views[0].logits, batch.views[1].logits
    if batch.labels is not None:  # classification: symmetric KL between the two predictive distributions
        return rdrop_kl(a, b)
    return F.mse_loss(a.float(), b.float())


TERM = Term(_rdrop, TermConfig, Needs(views=2))
