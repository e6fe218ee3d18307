"""Text views: more than one representation of a sentence from one transformer forward.

The text-views study's ideas, as functions on a transformer's hidden states (the text encoder calls them;
they need torch only):

- Dropout views come from the trainer: ``trainer.views.count: 2`` with ``mode: one_stage`` (the batch
  duplicated inside one forward) or ``two_stage`` (two forwards). Dropout masks are drawn from torch's
  global generator, which the trainer seeds and checkpoints, so a run (and a resumed run) is reproducible.
- Layer views: the pooled representation of chosen hidden layers (:func:`pool`).
- Top-k token views: the k tokens the [CLS] position attends to most in the last layer, each a view of its
  sentence (:func:`cls_attention`, :func:`top_k_tokens`, :func:`gather_tokens`); and the k-means version,
  one view per cluster centroid of those tokens (:func:`cluster_tokens`).
- Token views of different sentences have different counts (short sentences have fewer than k tokens);
  :func:`flatten_views` turns them into rows with their sentence's label for ``supcon``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["cls_attention", "cluster_tokens", "flatten_views", "gather_tokens", "pool", "top_k_tokens"]


def pool(hidden: Tensor, mask: Tensor, how: Literal["mean", "cls", "last"] = "mean") -> Tensor:
    """One vector per sentence: the mean over its real tokens, the first ([CLS]) token, or the last real
    token (decoder language models, whose last position has attended to the whole text). "last" finds each
    row's last real token from the mask, so left and right padding both work.

    Shape:
        - hidden: (N, L, H); mask: (N, L), 1 for real tokens; returns (N, H).

    Example:
        >>> h = torch.arange(6.0).view(2, 3, 1)  # two texts of 3 positions
        >>> pool(h, torch.tensor([[1, 1, 0], [0, 1, 1]]), "last").flatten().tolist()  # right / left padded
        [1.0, 5.0]
    """
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.bool() * (positions + 1)).argmax(dim=1)  # (N,) the last position holding a real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how != "mean":
        raise ValueError(f"pooling={how!r}; expected 'mean', 'cls' or 'last'")
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def cls_attention(attention: Tensor) -> Tensor:
    """How much the first position ([CLS]) attends to each token, averaged over heads.

    Shape:
        - attention: (N, heads, L, L), rows softmax-normalised; returns (N, L).
    """
    if attention.ndim != 4:
        raise ValueError(f"attention must be (N, heads, L, L), got shape {tuple(attention.shape)}")
    return attention[:, :, 0, :].mean(1)


def top_k_tokens(scores: Tensor, valid: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The positions of the ``k`` highest-scoring valid tokens of each sentence, best first.

    A sentence with fewer than k valid tokens gets all of them; its remaining slots are masked out.

    Shape:
        - scores: (N, L) float; valid: (N, L) bool (False for special tokens and padding).
        - Returns: index (N, k') long and mask (N, k') bool, with k' = min(k, L).
    """
    if k < 1:
        raise ValueError(f"k={k}; expected >= 1")
    if scores.shape != valid.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and valid {tuple(valid.shape)} must have one shape")
    k = min(k, scores.shape[1])
    masked = scores.float().masked_fill(~valid, float("-inf"))
    values, index = masked.topk(k, dim=1)
    return index, torch.isfinite(values)


def gather_tokens(hidden: Tensor, index: Tensor) -> Tensor:
    """The hidden states at ``index``.

    Shape:
        - hidden: (N, L, H); index: (N, k); returns (N, k, H).
    """
    return hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


@torch.no_grad()
def _assign(tokens: Tensor, mask: Tensor, clusters: int, iterations: int) -> Tensor:
    """Lloyd's k-means on each sentence's tokens (batched); returns each token's cluster (N, k).

    Initial centroids are the first ``clusters`` tokens (callers pass tokens best first, so the most
    attended tokens seed the clusters): deterministic, no random draw.
    """
    n, k, _ = tokens.shape
    c = min(clusters, k)
    x = tokens.float()
    centroids = x[:, :c].clone()
    assign = torch.zeros(n, k, dtype=torch.long, device=tokens.device)
    for step in range(iterations):
        distance = torch.cdist(x, centroids)  # (N, k, c)
        distance = distance.masked_fill(~mask.unsqueeze(-1), 0.0)
        new = distance.argmin(-1)
        if step > 0 and torch.equal(new, assign):
            break
        assign = new
        one_hot = torch.nn.functional.one_hot(assign, c).float() * mask.unsqueeze(-1)  # (N, k, c)
        counts = one_hot.sum(1)  # (N, c)
        sums = one_hot.transpose(1, 2) @ x  # (N, c, H)
        centroids = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), centroids)
    return assign


def cluster_tokens(
    tokens: Tensor, mask: Tensor, clusters: int, iterations: int = 10
) -> tuple[Tensor, Tensor]:
    """The text-views study's cluster views: k-means on each sentence's tokens, one view per centroid.

    Assignments are computed without gradient; the centroids are means of the assigned token states, so
    gradients flow back to the tokens. Empty clusters (a short sentence) are masked out.

    Shape:
        - tokens: (N, k, H), best first; mask: (N, k) bool.
        - Returns: centroids (N, c, H) and mask (N, c) bool, c = min(clusters, k).
    """
    if clusters < 1:
        raise ValueError(f"clusters={clusters}; expected >= 1")
    assign = _assign(tokens.detach(), mask, clusters, iterations)
    c = min(clusters, tokens.shape[1])
    one_hot = torch.nn.functional.one_hot(assign, c).to(tokens.dtype) * mask.unsqueeze(-1).to(tokens.dtype)
    counts = one_hot.sum(1)  # (N, c)
    centroids = (one_hot.transpose(1, 2) @ tokens) / counts.clamp_min(1).unsqueeze(-1)
    return centroids, counts > 0


def flatten_views(views: Tensor, mask: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The valid views of every sentence as rows, each with its sentence's label (positives of a row are
    then its sentence's other views and, with class labels, every view of a same-class sentence).

    Shape:
        - views: (N, k, P); mask: (N, k) bool; labels: (N,).
        - Returns: (M, P) rows and (M,) labels, M = mask.sum().
    """
    if views.shape[:2] != mask.shape or labels.shape[0] != views.shape[0]:
        raise ValueError(
            f"views {tuple(views.shape)}, mask {tuple(mask.shape)} and labels {tuple(labels.shape)} "
            "must agree on (N, k)"
        )
    return views[mask], labels.unsqueeze(1).expand_as(mask)[mask]
