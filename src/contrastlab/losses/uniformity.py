"""Uniformity (Wang & Isola, ICML 2020): how evenly embeddings spread over the unit sphere, as a loss."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from contrastlab.losses._common import (
    check_embeddings,
    check_positive,
    connected_zero,
    full_precision,
    prepare,
)

__all__ = ["UniformityLoss", "uniformity_loss"]


def uniformity_loss(z: Tensor, *, t: float = 2.0) -> Tensor:
    """Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity on
    the Hypersphere", ICML 2020, Eq. 5: ``log E_{i<j} exp(-t ||z_i - z_j||²)`` over the distinct pairs of
    L2-normalised rows, as a log-mean-exp (finite for any batch and t).

    Lower is more uniform: between -4t (every pair antipodal) and 0 (collapse to one point). Minimising it
    spreads a batch's embeddings; it is the half of the contrastive loss that pushes negatives apart.

    Args:
        z: Embeddings; normalised here.
        t: The Gaussian kernel's scale (the paper's t = 2).

    Shape:
        - z: (N, D); returns a scalar.

    Returns:
        The uniformity; a connected zero for N = 1 (no pair).

    Raises:
        TypeError, ValueError: ``z`` not a floating (N, D) tensor, or t <= 0.

    Example:
        >>> round(uniformity_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item(), 4)  # antipodal: -2·4
        -8.0
    """
    check_embeddings("z", z)
    check_positive("t", t)
    with full_precision(z):
        u = prepare(z, normalize=True)  # (N, D), float32 or float64
        n = u.shape[0]
        if n < 2:
            return connected_zero(u)
        rows, cols = torch.triu_indices(n, n, offset=1, device=u.device)
        squared = (2.0 - 2.0 * (u[rows] * u[cols]).sum(dim=-1)).clamp_min(0.0)  # (N(N-1)/2,)
        return torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())


class UniformityLoss(nn.Module):
    """:func:`uniformity_loss` as a module (``t`` validated once)."""

    def __init__(self, *, t: float = 2.0) -> None:
        super().__init__()
        self.t = check_positive("t", t)

    def forward(self, z: Tensor) -> Tensor:
        return uniformity_loss(z, t=self.t)
