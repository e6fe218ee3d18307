"""Consistency terms: R-Drop's symmetric KL between two predictions, and similarity protection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.losses._common import (
    check_embeddings,
    check_positive,
    check_same_shape,
    compute_dtype,
    connected_zero,
    full_precision,
)

__all__ = ["RDropLoss", "SimilarityProtectionLoss", "rdrop_kl", "similarity_protection"]


def rdrop_kl(logits_a: Tensor, logits_b: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """R-Drop's symmetric KL divergence between two predictive distributions of the same inputs.

    Liang et al., "R-Drop: Regularized Dropout for Neural Networks", NeurIPS 2021, Eq. 2:
    ``(KL(p || q) + KL(q || p)) / 2`` with p = softmax(logits_a), q = softmax(logits_b), summed over classes
    and averaged over samples (and over unmasked tokens for sequence logits), so the term's weight does not
    depend on the batch size or the sequence length. Both directions carry gradient, as in the paper.

    Args:
        logits_a: Logits from the first stochastic forward pass.
        logits_b: Logits from the second pass on the same inputs.
        mask: For (N, T, C) logits, which tokens count (True = keep), e.g. the attention mask.

    Shape:
        - logits_a, logits_b: (N, C) or (N, T, C).
        - mask: (N, T), bool or 0/1 integers.
        - Returns: scalar.

    Returns:
        The mean symmetric KL; a connected zero when the mask keeps no token.

    Raises:
        TypeError: non-float logits.
        ValueError: mismatched shapes, or a mask on 2-D logits or of the wrong shape.

    Example:
        >>> a = torch.tensor([[2.0, 0.0]])
        >>> rdrop_kl(a, a).item()
        0.0
        >>> p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.8, 0.2])
        >>> expected = 0.5 * ((p * (p / q).log()).sum() + (q * (q / p).log()).sum())
        >>> bool(torch.isclose(rdrop_kl(p.log()[None], q.log()[None]), expected))
        True
    """
    check_embeddings("logits_a", logits_a, ndims=(2, 3))
    check_embeddings("logits_b", logits_b, ndims=(2, 3))
    check_same_shape("logits_a", logits_a, "logits_b", logits_b)
    if mask is not None:
        if logits_a.ndim != 3:
            raise ValueError(
                f"mask applies to (N, T, C) token logits, but logits_a has shape {tuple(logits_a.shape)}"
            )
        if not isinstance(mask, Tensor) or mask.shape != logits_a.shape[:2]:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must have shape {tuple(logits_a.shape[:2])} (N, T), got {got}")
        if mask.is_floating_point():
            raise TypeError(f"mask must be bool or integer 0/1, got dtype {mask.dtype}")
    dtype = compute_dtype(logits_a)
    with full_precision(logits_a):
        log_p = F.log_softmax(logits_a.to(dtype), dim=-1)
        log_q = F.log_softmax(logits_b.to(dtype), dim=-1)
        # (p - q)(log p - log q) summed over classes is KL(p||q) + KL(q||p); log-space keeps it finite.
        per_item = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=-1) / 2  # (N,) or (N, T)
        if mask is None:
            return per_item.mean()
        keep = mask.to(torch.bool)
        if not bool(keep.any()):
            return connected_zero(log_p, log_q)
        return per_item[keep].mean()


def similarity_protection(similarity: Tensor, reference: Tensor, *, margin: float = 0.01) -> Tensor:
    """Penalises similarities that fall more than ``margin`` below a frozen reference.

    ``mean(max(0, reference - similarity - margin))``: while fine-tuning an embedding model, pairs whose
    similarity the starting model already got right (the reference, e.g. the cosine similarity of two
    images of one identity under a frozen copy) must not lose more than ``margin`` of it. The reference is
    treated as a constant (detached).

    Args:
        similarity: Similarities under the model being trained.
        reference: The same pairs' similarities under the frozen reference model.
        margin: Allowed drop before the penalty starts, >= 0.

    Shape:
        - similarity, reference: any shape, equal; e.g. (N,).
        - Returns: scalar.

    Returns:
        The mean hinge over all elements.

    Raises:
        TypeError: non-float inputs.
        ValueError: mismatched shapes, empty inputs or margin < 0.

    Example:
        >>> sim = torch.tensor([0.90, 0.50, 0.70])
        >>> ref = torch.tensor([0.80, 0.60, 0.75])
        >>> round(similarity_protection(sim, ref, margin=0.01).item(), 4)  # (0 + 0.09 + 0.04) / 3
        0.0433
    """
    check_embeddings("similarity", similarity, ndims=None)
    check_embeddings("reference", reference, ndims=None)
    check_same_shape("similarity", similarity, "reference", reference)
    m = check_positive("margin", margin, allow_zero=True)
    dtype = compute_dtype(similarity)
    with full_precision(similarity):
        gap = reference.detach().to(dtype) - similarity.to(dtype) - m
        return F.relu(gap).mean()


class RDropLoss(nn.Module):
    """Module form of :func:`rdrop_kl` (it has no hyperparameters; the weight lives in the objective).

    Example:
        >>> RDropLoss()(torch.randn(4, 3), torch.randn(4, 3)).shape
        torch.Size([])
    """

    def forward(self, logits_a: Tensor, logits_b: Tensor, mask: Tensor | None = None) -> Tensor:
        return rdrop_kl(logits_a, logits_b, mask=mask)


class SimilarityProtectionLoss(nn.Module):
    """Module form of :func:`similarity_protection`.

    Example:
        >>> SimilarityProtectionLoss(margin=0.0)(torch.zeros(3), torch.ones(3)).item()
        1.0
    """

    def __init__(self, *, margin: float = 0.01) -> None:
        super().__init__()
        self.margin = check_positive("margin", margin, allow_zero=True)

    def forward(self, similarity: Tensor, reference: Tensor) -> Tensor:
        return similarity_protection(similarity, reference, margin=self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
