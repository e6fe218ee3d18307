"""An auxiliary regression head on the embedding, trained with MSE on the dataset's auxiliary targets
    (the identity study's pose term; ``fashion_mnist`` with ``pose_degrees`` gives each image a rotation to
    predict).
    Configuring it adds the head, in both arms of a verdict (weight 0 in the baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.train.terms.base import BatchOutputs, Needs, Term, TermConfig

__all__ = ["ORDER", "TERM", "AuxiliaryTermConfig"]

#: Where the term is evaluated and logged among the built-in ones.
ORDER = 110


class AuxiliaryTermConfig(TermConfig):
    """An auxiliary regression head on the embedding, trained with MSE on the dataset's auxiliary targets
    (the identity study's pose term; ``fashion_mnist`` with ``pose_degrees`` gives each image a rotation to
    predict).
    Configuring it adds the head, in both arms of a verdict (weight 0 in the baseline)."""


def _auxiliary(batch: BatchOutputs, cfg: AuxiliaryTermConfig) -> Tensor:
    """MSE of the auxiliary head against the auxiliary targets, averaged over the supervised outputs."""
    if batch.auxiliary is None or any(o.auxiliary is None for o in batch.supervised):
        raise ValueError("objective.auxiliary needs a model with an auxiliary head and the dataset's "
                         "auxiliary targets (e.g. fashion_mnist with pose_degrees > 0)")  # fmt: skip
    target = batch.auxiliary.float()
    return torch.stack([F.mse_loss(o.auxiliary.float(), target)  # type: ignore[union-attr]
                        for o in batch.supervised]).mean()  # fmt: skip


TERM = Term(_auxiliary, AuxiliaryTermConfig, Needs(auxiliary=True, supervised=True))
