"""Label-aware contrastive losses: SupCon, its focal variant, and the pairwise margin loss.

All three take ``features`` as (N, V, D) views or (N, D) single-view embeddings with labels, flatten the
views view-major (row ``v * N + i`` is view ``v`` of sample ``i``) and treat every other row with the same
label as a positive. Anchors with no positive contribute nothing; a batch without any returns a zero that
is still connected to the graph.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from contrastlab import distributed
from contrastlab.losses._common import (
    check_embeddings,
    check_labels,
    check_positive,
    connected_zero,
    full_precision,
    gather_columns,
    prepare,
)
from contrastlab.losses._tiled import (
    ChunkSize,
    check_chunk_size,
    focal_positive_sum,
    resolve_chunk_size,
    row_logsumexp,
)

__all__ = [
    "SUPCON_TEMPERATURE",
    "FocalSupConLoss",
    "MarginContrastiveLoss",
    "SupConLoss",
    "focal_supcon",
    "margin_contrastive",
    "supcon",
]

ContrastMode = Literal["all", "one"]

#: SupCon's default temperature τ wherever SupCon is offered (these losses, a recipe's ``objective.supcon``,
#: the sentence-transformers loss): 0.1, the value Khosla et al. train with.
SUPCON_TEMPERATURE = 0.1


def flatten_views(
    features: Tensor, labels: Tensor | None, *, name: str = "features"
) -> tuple[Tensor, Tensor]:
    """Flattens (N, V, D) views view-major and builds the matching labels.

    Without labels every sample is its own class (the self-supervised case), which needs V >= 2.

    Shape:
        - features: (N, V, D) or (N, D).
        - labels: (N,) or None.
        - Returns: ((V·N, D), (V·N,)).
    """
    check_embeddings(name, features, ndims=(2, 3))
    n = features.shape[0]
    if labels is None:
        if features.ndim == 2 or features.shape[1] < 2:
            raise ValueError(
                f"{name} of shape {tuple(features.shape)} has a single view and no labels were given, so no "
                "anchor has a positive; pass labels, or (N, V, D) features with V >= 2 views"
            )
        labels = torch.arange(n, device=features.device)
    else:
        labels = check_labels(labels, n)
        if labels.device != features.device:
            raise ValueError(f"labels must be on {name}'s device {features.device}, got {labels.device}")
    if features.ndim == 2:
        return features, labels
    v = features.shape[1]
    flat = features.transpose(0, 1).reshape(v * n, features.shape[2])  # (V·N, D), view-major
    return flat, labels.repeat(v)


def _check_contrast_mode(contrast_mode: str) -> ContrastMode:
    if contrast_mode not in ("all", "one"):
        raise ValueError(f"contrast_mode must be 'all' or 'one', got {contrast_mode!r}")
    return contrast_mode  # type: ignore[return-value]


def _sample_labels(features: Tensor, labels: Tensor | None, gather_distributed: bool) -> Tensor | None:
    """Without labels every sample is its own class; across ranks those ids must not collide."""
    if labels is not None or not gather_distributed:
        return labels
    n = features.shape[0]
    return torch.arange(n, device=features.device) + distributed.rank() * n


class _Contrast(NamedTuple):
    """Local anchors against (possibly gathered) columns, with class ids shared by both."""

    anchors: Tensor  # (A, D)
    cols: Tensor  # (M, D)
    anchor_cls: Tensor  # (A,) class index into [0, C)
    col_cls: Tensor  # (M,)
    offset: int  # anchor k is column k + offset
    n_pos: Tensor  # (A,) positives per anchor
    tile: int | None


def _contrast(
    features: Tensor,
    labels: Tensor | None,
    *,
    normalize: bool,
    contrast_mode: ContrastMode,
    chunk_size: ChunkSize,
    gather_distributed: bool,
) -> _Contrast:
    flat, flat_labels = flatten_views(features, _sample_labels(features, labels, gather_distributed))
    z = prepare(flat, normalize=normalize)  # (M_local, D)
    anchors = z if contrast_mode == "all" else z[: features.shape[0]]
    cols, offset = gather_columns(z, gather_distributed)
    col_labels = distributed.all_gather(flat_labels) if cols is not z else flat_labels
    _, cls = torch.unique(torch.cat([flat_labels[: anchors.shape[0]], col_labels]), return_inverse=True)
    anchor_cls, col_cls = cls[: anchors.shape[0]], cls[anchors.shape[0] :]
    n_pos = torch.bincount(col_cls)[anchor_cls] - 1  # same class, minus the anchor itself
    tile = resolve_chunk_size(chunk_size, anchors.shape[0], cols.shape[0], z.device)
    return _Contrast(anchors, cols, anchor_cls, col_cls, offset, n_pos, tile)


def supcon(
    features: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = SUPCON_TEMPERATURE,
    base_temperature: float | None = None,
    contrast_mode: ContrastMode = "all",
    normalize: bool = True,
    chunk_size: ChunkSize = "auto",
    gather_distributed: bool = False,
) -> Tensor:
    """Supervised contrastive loss, L_out of Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.

    Eq. 2: for each anchor i with positives P(i) (same label, not i) and A(i) = every row but i,

        loss_i = -(τ / τ_base) · (1/|P(i)|) Σ_{p∈P(i)} log( exp(s_ip/τ) / Σ_{a∈A(i)} exp(s_ia/τ) ),

    averaged over anchors that have at least one positive (anchors without one are left out of the mean;
    they would otherwise divide by zero). Without labels it is SimCLR's NT-Xent over V views.

    Args:
        features: V views of N samples, or single-view embeddings when ``labels`` are given (positives are
            then the other rows with the same label).
        labels: Integer class of each sample; None makes each sample its own class.
        temperature: τ > 0.
        base_temperature: τ_base, the reference implementation's rescaling; None means τ (factor 1). The
            SupContrast code sets τ_base = 0.07 (its default τ): pass 0.07 to reproduce its scale at any τ.
        contrast_mode: "all" uses every view as an anchor; "one" only the first view (the reference's
            ``contrast_mode='one'``), still contrasted against all views.
        normalize: L2-normalise rows first.
        chunk_size: Tile side for the streaming computation (None: dense; "auto": by size).
        gather_distributed: Contrast local anchors against every rank's views; labels are gathered too, so
            positives may live on other ranks.

    Shape:
        - features: (N, V, D) or (N, D).
        - labels: (N,).
        - Returns: scalar.

    Returns:
        Mean loss over anchors with a positive; a connected zero if no anchor has one.

    Raises:
        TypeError: non-float features or non-integer labels.
        ValueError: bad shapes, temperature <= 0, unknown contrast_mode, or one view without labels.

    Example:
        Two orthogonal samples with two identical views each: the positive sits at cosine 1 among two
        negatives at 0, so the loss is log(1 + 2/e).

        >>> views = torch.eye(2).unsqueeze(1).repeat(1, 2, 1)  # (N=2, V=2, D=2)
        >>> round(supcon(views, temperature=1.0).item(), 4)
        0.5514
    """
    t = check_positive("temperature", temperature)
    factor = 1.0 if base_temperature is None else t / check_positive("base_temperature", base_temperature)
    mode = _check_contrast_mode(contrast_mode)
    with full_precision(features):
        c = _contrast(
            features,
            labels,
            normalize=normalize,
            contrast_mode=mode,
            chunk_size=chunk_size,
            gather_distributed=gather_distributed,
        )
        has_pos = c.n_pos > 0
        if not bool(has_pos.any()):
            return connected_zero(c.anchors)
        # Σ_p s_ip = a_i · (Σ of its class's columns - a_i): O(N·D), no mask, no N x N tensor.
        class_sum = c.cols.new_zeros(int(c.col_cls.max()) + 1, c.cols.shape[1]).index_add(
            0, c.col_cls, c.cols
        )
        positive_sum = (c.anchors * (class_sum[c.anchor_cls] - c.anchors)).sum(dim=1) / t  # (A,)
        lse = row_logsumexp(c.anchors, c.cols, scale=1.0 / t, self_offset=c.offset, tile=c.tile)  # (A,)
        mean_log_prob_pos = positive_sum[has_pos] / c.n_pos[has_pos] - lse[has_pos]
        return -factor * mean_log_prob_pos.mean()


def focal_supcon(
    features: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = SUPCON_TEMPERATURE,
    gamma: float = 2.0,
    normalize: bool = True,
    chunk_size: ChunkSize = "auto",
    gather_distributed: bool = False,
) -> Tensor:
    """Focal supervised contrastive loss: SupCon with each positive weighted by (1 - p)^γ.

    With p_ij = softmax over j != i of s_ij/τ (as in SupCon), the focal weighting of Lin et al., "Focal Loss
    for Dense Object Detection", ICCV 2017, is applied per positive pair:

        loss_i = (1/|P(i)|) Σ_{p∈P(i)} -(1 - p_ip)^γ · log p_ip,

    averaged over anchors that have a positive. Easy positives (p near 1) are down-weighted, so hard pairs
    dominate. ``gamma=0`` is exactly :func:`supcon`.

    Args:
        features: V views of N samples, or (N, D) embeddings with ``labels``.
        labels: Integer class of each sample; None makes each sample its own class.
        temperature: τ > 0.
        gamma: Focusing parameter γ >= 0.
        normalize: L2-normalise rows first.
        chunk_size: Tile side for the streaming computation (None: dense; "auto": by size).
        gather_distributed: As in :func:`supcon`.

    Shape:
        - features: (N, V, D) or (N, D).
        - labels: (N,).
        - Returns: scalar.

    Returns:
        Mean loss over anchors with a positive; a connected zero if no anchor has one.

    Raises:
        TypeError: non-float features or non-integer labels.
        ValueError: bad shapes, temperature <= 0, gamma < 0, or one view without labels.

    Example:
        >>> views = torch.eye(2).unsqueeze(1).repeat(1, 2, 1)
        >>> p = torch.e / (torch.e + 2)  # the positive's probability
        >>> expected = -((1 - p) ** 2) * torch.log(torch.tensor(p))
        >>> bool(torch.isclose(focal_supcon(views, temperature=1.0, gamma=2.0), expected))
        True
    """
    t = check_positive("temperature", temperature)
    g = check_positive("gamma", gamma, allow_zero=True)
    with full_precision(features):
        c = _contrast(
            features,
            labels,
            normalize=normalize,
            contrast_mode="all",
            chunk_size=chunk_size,
            gather_distributed=gather_distributed,
        )
        has_pos = c.n_pos > 0
        if not bool(has_pos.any()):
            return connected_zero(c.anchors)
        lse = row_logsumexp(c.anchors, c.cols, scale=1.0 / t, self_offset=c.offset, tile=c.tile)  # (A,)
        weight = torch.where(has_pos, 1.0 / c.n_pos.clamp_min(1).to(lse.dtype), 0.0)  # (A,)
        total = focal_positive_sum(
            c.anchors,
            c.cols,
            lse,
            weight,
            c.anchor_cls,
            c.col_cls,
            scale=1.0 / t,
            gamma=g,
            self_offset=c.offset,
            tile=c.tile,
        )
        return total / has_pos.sum()


def margin_contrastive(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float = 0.2,
    normalize: bool = True,
) -> Tensor:
    """Pairwise margin contrastive loss over every (positive, negative) pair of each anchor.

    With cosine similarities s (dot products when ``normalize=False``), positives P(i) (same label, not i)
    and negatives Q(i) (other label):

        loss_i = (1 / (|P(i)|·|Q(i)|)) Σ_{p∈P(i)} Σ_{n∈Q(i)} max(0, margin + s_in - s_ip),

    averaged over anchors that have both. This is the triplet margin loss of Schroff et al., "FaceNet",
    CVPR 2015, on similarities, averaged over all triplets rather than mined ones.

    The sum over N² pairs per anchor is computed without an N x N x N tensor: each anchor's negative
    similarities are sorted once, and for every positive threshold ``s_ip - margin`` the hinge sum is a
    suffix sum found by binary search. Memory O(N²), time O(N² log N).

    Args:
        embeddings: One embedding per sample, or V views per sample (flattened, labels repeated).
        labels: Integer class of each sample.
        margin: Required gap between a positive and a negative similarity, >= 0.
        normalize: L2-normalise rows first (cosine similarity).

    Shape:
        - embeddings: (N, D) or (N, V, D).
        - labels: (N,).
        - Returns: scalar.

    Returns:
        Mean loss over anchors with both a positive and a negative; a connected zero if there are none.

    Raises:
        TypeError: non-float embeddings or non-integer labels.
        ValueError: bad shapes or margin < 0.

    Example:
        Two classes on orthogonal axes: s_ip = 1 and s_in = 0, so every hinge is max(0, 0.2 - 1) = 0.

        >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> margin_contrastive(z, torch.tensor([0, 0, 1, 1])).item()
        0.0
    """
    m = check_positive("margin", margin, allow_zero=True)
    if labels is None:
        raise ValueError("margin_contrastive needs labels of shape (N,); got None")
    with full_precision(embeddings):
        flat, flat_labels = flatten_views(embeddings, labels, name="embeddings")
        z = prepare(flat, normalize=normalize)  # (M, D)
        sim = z @ z.T  # (M, M)
        rows = sim.shape[0]
        same = flat_labels[:, None] == flat_labels[None, :]
        is_self = torch.eye(rows, dtype=torch.bool, device=z.device)
        positives = same & ~is_self
        negatives = ~same
        n_pos = positives.sum(dim=1)
        n_neg = negatives.sum(dim=1)
        valid = (n_pos > 0) & (n_neg > 0)
        if not bool(valid.any()):
            return connected_zero(z)

        # Each row's negative similarities in ascending order; non-negatives sort first as -inf.
        neg_sorted, _ = sim.masked_fill(~negatives, float("-inf")).sort(dim=1)  # (M, M)
        neg_values = neg_sorted.masked_fill(torch.isinf(neg_sorted), 0.0)
        # suffix[i, j] = Σ_{k >= j} neg_values[i, k]; one extra zero column for "nothing above".
        suffix = neg_values.flip(1).cumsum(1).flip(1)  # (M, M)
        suffix = torch.cat([suffix, suffix.new_zeros(rows, 1)], dim=1)  # (M, M + 1)
        # For positive column p the hinge is active for negatives with s_in > s_ip - margin.
        threshold = sim - m  # (M, M)
        first_above = torch.searchsorted(neg_sorted.detach(), threshold.detach().contiguous(), right=True)
        count_above = (rows - first_above).to(sim.dtype)
        hinge_sum = suffix.gather(1, first_above) - count_above * threshold  # (M, M)
        per_anchor = (hinge_sum * positives).sum(dim=1)[valid] / (n_pos * n_neg)[valid]
        return per_anchor.mean()


class SupConLoss(nn.Module):
    """Module form of :func:`supcon`; validates its hyperparameters once at construction.

    Example:
        >>> loss_fn = SupConLoss(temperature=0.1)
        >>> loss_fn(torch.randn(8, 2, 16), torch.randint(0, 3, (8,))).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = SUPCON_TEMPERATURE,
        base_temperature: float | None = None,
        contrast_mode: ContrastMode = "all",
        normalize: bool = True,
        chunk_size: ChunkSize = "auto",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.base_temperature = (
            None if base_temperature is None else check_positive("base_temperature", base_temperature)
        )
        self.contrast_mode = _check_contrast_mode(contrast_mode)
        self.normalize = normalize
        self.chunk_size = check_chunk_size(chunk_size)
        self.gather_distributed = gather_distributed

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        return supcon(
            features,
            labels,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
            contrast_mode=self.contrast_mode,
            normalize=self.normalize,
            chunk_size=self.chunk_size,
            gather_distributed=self.gather_distributed,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"contrast_mode={self.contrast_mode!r}, normalize={self.normalize}, "
            f"chunk_size={self.chunk_size!r}"
        )


class FocalSupConLoss(nn.Module):
    """Module form of :func:`focal_supcon`.

    Example:
        >>> FocalSupConLoss(gamma=1.0)(torch.randn(8, 2, 16)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = SUPCON_TEMPERATURE,
        gamma: float = 2.0,
        normalize: bool = True,
        chunk_size: ChunkSize = "auto",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.gamma = check_positive("gamma", gamma, allow_zero=True)
        self.normalize = normalize
        self.chunk_size = check_chunk_size(chunk_size)
        self.gather_distributed = gather_distributed

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        return focal_supcon(
            features,
            labels,
            temperature=self.temperature,
            gamma=self.gamma,
            normalize=self.normalize,
            chunk_size=self.chunk_size,
            gather_distributed=self.gather_distributed,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, gamma={self.gamma}, normalize={self.normalize}, "
            f"chunk_size={self.chunk_size!r}"
        )


class MarginContrastiveLoss(nn.Module):
    """Module form of :func:`margin_contrastive`.

    Example:
        >>> MarginContrastiveLoss(margin=0.3)(torch.randn(8, 16), torch.randint(0, 2, (8,))).shape
        torch.Size([])
    """

    def __init__(self, *, margin: float = 0.2, normalize: bool = True) -> None:
        super().__init__()
        self.margin = check_positive("margin", margin, allow_zero=True)
        self.normalize = normalize

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return margin_contrastive(embeddings, labels, margin=self.margin, normalize=self.normalize)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, normalize={self.normalize}"
