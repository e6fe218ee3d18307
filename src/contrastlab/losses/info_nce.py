"""InfoNCE-family losses for paired views: NT-Xent (SimCLR), one-directional InfoNCE (MoCo) and CLIP.

All three are cross-entropies over rows of a similarity matrix whose positive sits at a known column:
``mean(logsumexp_j s_ij - s_i,pos)``. The positive logit is a row-wise dot product, and the log-sum-exp
comes from ``_tiled``, dense (``torch.logsumexp``) or streamed in tiles, always on float32 logits
(STYLE.md, rule 11).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from contrastlab.losses._common import (
    check_embeddings,
    check_positive,
    check_same_shape,
    compute_dtype,
    full_precision,
    gather_columns,
    prepare,
)
from contrastlab.losses._tiled import (
    ChunkSize,
    check_chunk_size,
    pair_logsumexp,
    resolve_chunk_size,
    row_logsumexp,
)

__all__ = ["ClipLoss", "InfoNCELoss", "NTXentLoss", "clip_loss", "info_nce", "nt_xent"]

#: open_clip clamps the learnable scale at 100 (temperature 0.01); so do we.
MAX_LOGIT_SCALE = 100.0


def nt_xent(
    z_a: Tensor,
    z_b: Tensor,
    *,
    temperature: float = 0.5,
    normalize: bool = True,
    chunk_size: ChunkSize = "auto",
    gather_distributed: bool = False,
) -> Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

    Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020, Eq. 1.
    The two views are stacked into 2N embeddings; each is an anchor whose positive is its other view and
    whose negatives are the other 2N - 2 embeddings (itself excluded)::

        l(i, j) = -log( exp(s_ij / τ) / Σ_{k != i} exp(s_ik / τ) ),   loss = mean over the 2N anchors.

    Args:
        z_a: First view of each sample.
        z_b: Second view, row ``i`` paired with row ``i`` of ``z_a``.
        temperature: τ > 0.
        normalize: L2-normalise the rows first, so ``s`` is the cosine similarity.
        chunk_size: Tile side for the exact streaming computation that never stores the 2N x 2N matrix;
            None is dense; "auto" is dense for tiny batches (up to 256 x 256 logits) and tiled above.
        gather_distributed: Contrast the local anchors against every rank's embeddings (see
            ``contrastlab.distributed``); returns the mean over the local anchors.

    Shape:
        - z_a, z_b: (N, D).
        - Returns: scalar.

    Returns:
        The mean loss over the 2N anchors, in float32 (float64 for float64 inputs).

    Raises:
        TypeError: non-tensor or non-float inputs.
        ValueError: shapes that are not (N, D) and equal, or temperature <= 0.

    Example:
        Three orthogonal samples whose views agree: each anchor sees its positive at cosine 1 and four
        negatives at 0, so the loss is log(1 + 4/e).

        >>> z = torch.eye(3)
        >>> round(nt_xent(z, z, temperature=1.0).item(), 4)
        0.9048
    """
    check_embeddings("z_a", z_a)
    check_embeddings("z_b", z_b)
    check_same_shape("z_a", z_a, "z_b", z_b)
    scale = 1.0 / check_positive("temperature", temperature)
    n = z_a.shape[0]
    with full_precision(z_a):
        z = prepare(torch.cat([z_a, z_b]), normalize=normalize)  # (2N, D)
        positive = scale * (z[:n] * z[n:]).sum(dim=1).repeat(2)  # (2N,): row i's positive is its other view
        cols, offset = gather_columns(z, gather_distributed)
        tile = resolve_chunk_size(chunk_size, z.shape[0], cols.shape[0], z.device)
        # An anchor is never its own negative: exclude column (i + offset) of row i.
        lse = row_logsumexp(z, cols, scale=scale, self_offset=offset, tile=tile)  # (2N,)
        return (lse - positive).mean()


def info_nce(
    query: Tensor,
    positive: Tensor,
    *,
    negatives: Tensor | None = None,
    temperature: float = 0.07,
    normalize: bool = True,
    chunk_size: ChunkSize = "auto",
    gather_distributed: bool = False,
) -> Tensor:
    """One-directional InfoNCE: each query against its positive key and every other key.

    van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018, Eq. 4; with a
    queue of negatives it is the MoCo loss (He et al., CVPR 2020, Eq. 1). Row ``i`` of ``query`` has
    positive ``positive[i]``; its negatives are the other rows of ``positive`` (in-batch) and, when given,
    every row of ``negatives``, appended as extra columns::

        loss_i = -log( exp(q_i·k_i / τ) / (Σ_j exp(q_i·k_j / τ) + Σ_m exp(q_i·n_m / τ)) ).

    Args:
        query: Anchors, e.g. the online encoder's output.
        positive: Positive keys, e.g. the momentum encoder's output on the other view.
        negatives: Extra negatives, e.g. ``MemoryQueue.keys`` (K may be 0: the queue is empty at the first
            step). They receive no special treatment: pass a detached queue (the queue stores detached keys).
        temperature: τ > 0.
        normalize: L2-normalise queries, keys and negatives first.
        chunk_size: Tile side for the streaming computation (None: dense; "auto": by size).
        gather_distributed: In-batch keys come from every rank; ``negatives`` are used as given (a MoCo
            queue is already global: enqueue gathered keys).

    Shape:
        - query, positive: (N, D).
        - negatives: (K, D).
        - Returns: scalar.

    Returns:
        The mean loss over the N queries.

    Raises:
        TypeError: non-tensor or non-float inputs.
        ValueError: mismatched shapes, or temperature <= 0.

    Example:
        >>> z = torch.eye(3)
        >>> round(info_nce(z, z, temperature=1.0).item(), 4)  # log(1 + 2/e)
        0.5514
    """
    check_embeddings("query", query)
    check_embeddings("positive", positive)
    check_same_shape("query", query, "positive", positive)
    if negatives is not None:
        check_embeddings("negatives", negatives, allow_empty=True)  # an empty queue at step 0 is fine
        if negatives.shape[1] != query.shape[1]:
            raise ValueError(
                f"negatives must have shape (K, {query.shape[1]}) to match query's D, "
                f"got {tuple(negatives.shape)}"
            )
    scale = 1.0 / check_positive("temperature", temperature)
    with full_precision(query):
        q = prepare(query, normalize=normalize)
        k = prepare(positive, normalize=normalize)
        positive_logit = scale * (q * k).sum(dim=1)  # (N,)
        cols, _ = gather_columns(k, gather_distributed)  # (W·N, D)
        if negatives is not None:
            cols = torch.cat([cols, prepare(negatives, normalize=normalize)])  # (W·N + K, D)
        tile = resolve_chunk_size(chunk_size, q.shape[0], cols.shape[0], q.device)
        lse = row_logsumexp(q, cols, scale=scale, tile=tile)  # (N,)
        return (lse - positive_logit).mean()


def _logit_scale(logit_scale: Tensor | None, temperature: float | None, dtype: torch.dtype) -> Tensor | float:
    if logit_scale is None:
        return 1.0 / check_positive("temperature", 0.07 if temperature is None else temperature)
    if temperature is not None:
        raise ValueError(
            "pass either temperature or logit_scale to clip_loss, not both "
            f"(got temperature={temperature!r} and a logit_scale tensor)"
        )
    if not isinstance(logit_scale, Tensor):
        raise TypeError(
            "logit_scale must be a scalar tensor holding log(1/τ) (the parameter CLIP models learn), "
            f"got {type(logit_scale).__name__} {logit_scale!r}; pass a fixed value as temperature="
        )
    if logit_scale.numel() != 1 or not logit_scale.is_floating_point():
        raise ValueError(
            f"logit_scale must be a floating scalar tensor, got shape {tuple(logit_scale.shape)} "
            f"and dtype {logit_scale.dtype}"
        )
    # Clamp, then exp: the gradient reaches logit_scale until the scale reaches 100 and is 0 beyond. (exp
    # then clamp, as open_clip does, gives 0 · exp(s) = NaN for the scale once exp(s) overflows.)
    return logit_scale.to(dtype).reshape(()).clamp(max=math.log(MAX_LOGIT_SCALE)).exp()


def clip_loss(
    z_a: Tensor,
    z_b: Tensor,
    *,
    temperature: float | None = None,
    logit_scale: Tensor | None = None,
    normalize: bool = True,
    chunk_size: ChunkSize = "auto",
    gather_distributed: bool = False,
) -> Tensor:
    """Symmetric cross-modal InfoNCE of CLIP: a-to-b and b-to-a cross-entropies, averaged.

    Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
    Figure 3. Row ``i`` of ``z_a`` and row ``i`` of ``z_b`` are the same sample seen by two modalities
    (a graph and its text, an image and its caption)::

        logits = scale · a @ bᵀ,   loss = (CE(logits, I) + CE(logitsᵀ, I)) / 2.

    Args:
        z_a: Embeddings from the first tower.
        z_b: Embeddings from the second tower.
        temperature: Fixed τ, so ``scale = 1/τ``; 0.07 when neither this nor ``logit_scale`` is given.
        logit_scale: Learnable scalar tensor holding ``log(1/τ)``, as CLIP models store it; the loss uses
            ``min(exp(logit_scale), 100)`` and the gradient reaches it. The loss owns no parameter: the
            model holds it and passes it in. Mutually exclusive with ``temperature``.
        normalize: L2-normalise both towers' rows first.
        chunk_size: Tile side for the streaming computation (None: dense; "auto": by size). Tiled, both
            directions' statistics come from one pass over the tiles.
        gather_distributed: Local rows of each tower against every rank's rows of the other (open_clip's
            ``local_loss=True, gather_with_grad=True``).

    Shape:
        - z_a, z_b: (N, D).
        - logit_scale: () or (1,).
        - Returns: scalar.

    Returns:
        The mean of the two directions' mean cross-entropies.

    Raises:
        TypeError: non-tensor or non-float inputs, or a non-tensor ``logit_scale``.
        ValueError: mismatched shapes, temperature <= 0, or both temperature and logit_scale.

    Example:
        >>> z = torch.eye(3)
        >>> round(clip_loss(z, z, temperature=1.0).item(), 4)  # log(1 + 2/e)
        0.5514
        >>> scale = torch.tensor(1 / 0.07).log().requires_grad_()
        >>> clip_loss(z, z, logit_scale=scale).backward()
        >>> bool(scale.grad < 0)  # sharper logits lower the loss of aligned pairs
        True
    """
    check_embeddings("z_a", z_a)
    check_embeddings("z_b", z_b)
    check_same_shape("z_a", z_a, "z_b", z_b)
    scale = _logit_scale(logit_scale, temperature, compute_dtype(z_a))
    with full_precision(z_a):
        a = prepare(z_a, normalize=normalize)
        b = prepare(z_b, normalize=normalize)
        positive = scale * (a * b).sum(dim=1)  # (N,)
        cols_b, _ = gather_columns(b, gather_distributed)
        tile = resolve_chunk_size(chunk_size, a.shape[0], cols_b.shape[0], a.device)
        if cols_b is b:  # one process: a-to-b rows and b-to-a columns of the same matrix
            lse_a, lse_b = pair_logsumexp(a, b, scale=scale, tile=tile)  # (N,), (N,)
        else:
            cols_a, _ = gather_columns(a, gather_distributed)
            lse_a = row_logsumexp(a, cols_b, scale=scale, tile=tile)
            lse_b = row_logsumexp(b, cols_a, scale=scale, tile=tile)
        return ((lse_a - positive).mean() + (lse_b - positive).mean()) / 2


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent`; validates its hyperparameters once at construction.

    Example:
        >>> loss_fn = NTXentLoss(temperature=0.5)
        >>> loss_fn(torch.randn(8, 16), torch.randn(8, 16)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        normalize: bool = True,
        chunk_size: ChunkSize = "auto",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.normalize = normalize
        self.chunk_size = check_chunk_size(chunk_size)
        self.gather_distributed = gather_distributed

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        return nt_xent(
            z_a,
            z_b,
            temperature=self.temperature,
            normalize=self.normalize,
            chunk_size=self.chunk_size,
            gather_distributed=self.gather_distributed,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}, chunk_size={self.chunk_size!r}"


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce`; negatives (e.g. a queue's keys) are passed per call.

    Example:
        >>> loss_fn = InfoNCELoss(temperature=0.2)
        >>> loss_fn(torch.randn(4, 8), torch.randn(4, 8), negatives=torch.randn(16, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        normalize: bool = True,
        chunk_size: ChunkSize = "auto",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.normalize = normalize
        self.chunk_size = check_chunk_size(chunk_size)
        self.gather_distributed = gather_distributed

    def forward(self, query: Tensor, positive: Tensor, negatives: Tensor | None = None) -> Tensor:
        return info_nce(
            query,
            positive,
            negatives=negatives,
            temperature=self.temperature,
            normalize=self.normalize,
            chunk_size=self.chunk_size,
            gather_distributed=self.gather_distributed,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}, chunk_size={self.chunk_size!r}"


class ClipLoss(nn.Module):
    """Module form of :func:`clip_loss`.

    With a fixed temperature, set it here; with a learnable one, leave ``temperature`` as None and pass the
    model's ``logit_scale`` to ``forward``.

    Example:
        >>> loss_fn = ClipLoss()
        >>> scale = nn.Parameter(torch.tensor(1 / 0.07).log())
        >>> loss_fn(torch.randn(4, 8), torch.randn(4, 8), logit_scale=scale).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float | None = None,
        normalize: bool = True,
        chunk_size: ChunkSize = "auto",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = None if temperature is None else check_positive("temperature", temperature)
        self.normalize = normalize
        self.chunk_size = check_chunk_size(chunk_size)
        self.gather_distributed = gather_distributed

    def forward(self, z_a: Tensor, z_b: Tensor, logit_scale: Tensor | None = None) -> Tensor:
        return clip_loss(
            z_a,
            z_b,
            temperature=self.temperature,
            logit_scale=logit_scale,
            normalize=self.normalize,
            chunk_size=self.chunk_size,
            gather_distributed=self.gather_distributed,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}, chunk_size={self.chunk_size!r}"

