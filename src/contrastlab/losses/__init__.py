"""Contrastive losses: a pure function and a thin ``nn.Module`` for each.

Conventions shared by every loss (see each docstring for its equation and paper):

- pairs are ``(z_a, z_b)`` of shape (N, D); many views are (N, V, D); labels are (N,) integers;
- ``normalize=True`` L2-normalises rows inside the loss;
- logits are formed and soft-maxed in float32 (float64 for float64 inputs), also under autocast;
- the result is always a scalar tensor, and degenerate batches give a defined, differentiable value.
"""

from contrastlab.losses.consistency import (
    RDropLoss,
    SimilarityProtectionLoss,
    rdrop_kl,
    similarity_protection,
)
from contrastlab.losses.info_nce import ClipLoss, InfoNCELoss, NTXentLoss, clip_loss, info_nce, nt_xent
from contrastlab.losses.memory import MemoryQueue, momentum_copy, momentum_update
from contrastlab.losses.supcon import (
    FocalSupConLoss,
    MarginContrastiveLoss,
    SupConLoss,
    focal_supcon,
    margin_contrastive,
    supcon,
)
from contrastlab.losses.uniformity import UniformityLoss, uniformity_loss

__all__ = [
    "ClipLoss",
    "FocalSupConLoss",
    "InfoNCELoss",
    "MarginContrastiveLoss",
    "MemoryQueue",
    "NTXentLoss",
    "RDropLoss",
    "SimilarityProtectionLoss",
    "SupConLoss",
    "UniformityLoss",
    "clip_loss",
    "focal_supcon",
    "info_nce",
    "margin_contrastive",
    "momentum_copy",
    "momentum_update",
    "nt_xent",
    "rdrop_kl",
    "similarity_protection",
    "supcon",
    "uniformity_loss",
]
