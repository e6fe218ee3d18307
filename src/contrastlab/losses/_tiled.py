"""Log-sum-exp over the rows (and columns) of ``scale · rows @ colsᵀ`` without ever storing that matrix.

Every InfoNCE-family loss is ``mean(lse_i - positive_i)``: the positive term is an O(N·D) dot product, and
only the log-sum-exp needs the N x M similarity matrix. This module computes it in tiles (the Inf-CL idea,
Cheng et al. 2024, generalised to both directions and to self-exclusion) and recomputes tiles in backward,
so memory is O((N + M)·D + tile²).

Speed on CPU (see shared/PERFORMANCE-NOTES.md): one ``exp2`` per element with log2(e)·scale folded into
one multiplier, and one shift shared by rows and columns: for any logit, ``s_ij <= bound = scale·max|r|·
max|c|``, so ``exp2(s - bound)`` never overflows and the row *and* column sums come from the same tile.
If a row or column lies so far below the bound that its sum loses precision (small τ with all
similarities low), the forward pass detects it and recomputes with exact per-row and per-column maxima.
The backward pass needs no shift: p_ij = exp(s_ij - lse_i) <= 1.

Whatever the input dtype, tiles are computed in float32 (float64 for float64 inputs): rounding a
half-precision product at τ = 0.01 would move logits by ~0.4.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_chunk_size",
    "focal_positive_sum",
    "pair_logsumexp",
    "resolve_chunk_size",
    "row_logsumexp",
]

LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)
#: A row sum of exp2(s - bound) below this has lost bits to underflow: recompute with exact maxima.
_MIN_SAFE_SUM = 2.0**-100
#: "auto" switches to tiles once the similarity matrix would have more entries than this. Measured with
#: bench/losses.py. On 2 CPU cores dense wins at N = 128 (autograd through one small matrix is cheap) and
#: tiles already win at N = 512 (one exp2 per entry, no N x N autograd buffers). On an H100 dense is a few
#: milliseconds faster up to N ~ 8192 but costs gigabytes; tiles take over from 4096 x 4096 logits.
AUTO_DENSE_MAX_ENTRIES = 256 * 256
AUTO_DENSE_MAX_ENTRIES_ACCELERATOR = 4096 * 4096
_DEFAULT_TILE = {"cpu": 1024}
_DEFAULT_TILE_ACCELERATOR = 4096

ChunkSize = int | str | None


def check_chunk_size(chunk_size: object) -> ChunkSize:
    """Raises ValueError unless ``chunk_size`` is None, "auto" or a positive integer."""
    if chunk_size is None or chunk_size == "auto":
        return chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be None, 'auto' or a positive integer, got {chunk_size!r}")
    return chunk_size


def resolve_chunk_size(chunk_size: ChunkSize, n_rows: int, n_cols: int, device: torch.device) -> int | None:
    """Turns the user's ``chunk_size`` into a tile side, or None for the dense path.

    Raises:
        ValueError: anything but None, "auto" or a positive integer.
    """
    chunk_size = check_chunk_size(chunk_size)
    if chunk_size != "auto":
        return chunk_size  # type: ignore[return-value]
    limit = AUTO_DENSE_MAX_ENTRIES if device.type == "cpu" else AUTO_DENSE_MAX_ENTRIES_ACCELERATOR
    if n_rows * n_cols <= limit:
        return None
    return _DEFAULT_TILE.get(device.type, _DEFAULT_TILE_ACCELERATOR)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _self_positions(
    i0: int, i1: int, j0: int, j1: int, offset: int | None, device: torch.device
) -> tuple[Tensor, Tensor] | None:
    """Tile-local (row, col) indices of the excluded self pairs (row i, column i + offset) in a tile."""
    if offset is None:
        return None
    lo, hi = max(i0, j0 - offset), min(i1, j1 - offset)
    if lo >= hi:
        return None
    rows = torch.arange(lo, hi, device=device)
    return rows - i0, rows + offset - j0


class _TiledLogSumExp(torch.autograd.Function):
    """(lse_rows, lse_cols) of S = scale · R @ Cᵀ with entries (i, i + offset) excluded."""

    @staticmethod
    def forward(
        ctx: Any,
        rows: Tensor,
        cols: Tensor,
        scale: Tensor,
        self_offset: int | None,
        want_cols: bool,
        tile: int,
    ) -> tuple[Tensor, Tensor]:
        k2 = float(scale) * LOG2E  # s·log2(e) = k2 · (r·c): base-2 logits straight from the product
        n_rows, n_cols = rows.shape[0], cols.shape[0]
        dtype, device = rows.dtype, rows.device
        bound2 = k2 * float(rows.norm(dim=1).max()) * float(cols.norm(dim=1).max())
        row_sum = torch.zeros(n_rows, dtype=dtype, device=device)
        col_sum = torch.zeros(n_cols if want_cols else 0, dtype=dtype, device=device)
        buffer = torch.empty(min(tile, n_rows) * min(tile, n_cols), dtype=dtype, device=device)
        for i0, i1 in _blocks(n_rows, tile):
            for j0, j1 in _blocks(n_cols, tile):
                t = buffer[: (i1 - i0) * (j1 - j0)].view(i1 - i0, j1 - j0)
                torch.mm(rows[i0:i1], cols[j0:j1].T, out=t)  # (bi, bj)
                t.mul_(k2).sub_(bound2).exp2_()
                hit = _self_positions(i0, i1, j0, j1, self_offset, device)
                if hit is not None:
                    t[hit] = 0.0
                row_sum[i0:i1] += t.sum(dim=1)
                if want_cols:
                    col_sum[j0:j1] += t.sum(dim=0)

        allowed = _allowed_counts(n_rows, n_cols, self_offset, device)
        unsafe = bool(((row_sum < _MIN_SAFE_SUM) & (allowed > 0)).any())
        if want_cols:
            col_offset = None if self_offset is None else -self_offset
            allowed_cols = _allowed_counts(n_cols, n_rows, col_offset, device)
            unsafe = unsafe or bool(((col_sum < _MIN_SAFE_SUM) & (allowed_cols > 0)).any())
        if unsafe:
            lse2_rows, lse2_cols = _exact_forward(rows, cols, k2, self_offset, want_cols, tile)
        else:
            lse2_rows = bound2 + torch.log2(row_sum)
            lse2_cols = bound2 + torch.log2(col_sum)
        ctx.save_for_backward(rows, cols, lse2_rows, lse2_cols)
        ctx.same = rows is cols  # NT-Xent and SupCon contrast a tensor with itself
        ctx.bound2 = None if unsafe else bound2
        ctx.scale = float(scale)
        ctx.self_offset, ctx.want_cols, ctx.tile = self_offset, want_cols, tile
        return lse2_rows * LN2, lse2_cols * LN2

    @staticmethod
    def backward(ctx: Any, g_rows: Tensor, g_cols: Tensor) -> tuple[Tensor | None, ...]:
        rows, cols, lse2_rows, lse2_cols = ctx.saved_tensors
        k, tile, offset, bound2 = ctx.scale, ctx.tile, ctx.self_offset, ctx.bound2
        k2 = k * LOG2E
        need_rows, need_cols, need_scale = ctx.needs_input_grad[:3]
        grad_rows = torch.zeros_like(rows)
        # Same tensor on both sides: accumulate both roles into one buffer rather than two that autograd
        # would then add (saves two (N, D) buffers at large N).
        same = ctx.same and need_rows and need_cols
        grad_cols = grad_rows if same else torch.zeros_like(cols)
        grad_scale = torch.zeros((), dtype=rows.dtype, device=rows.device)
        g_rows = g_rows.to(rows.dtype)
        if ctx.want_cols and bound2 is not None:
            # One exp per element: w_ij = 2^(s2_ij - bound2) · (u_i + v_j), u_i = g_i · 2^(bound2 - lse2_i);
            # the forward pass checked that every 2^(bound2 - lse2) is finite.
            u = g_rows * torch.exp2(bound2 - lse2_rows)
            v = g_cols.to(rows.dtype) * torch.exp2(bound2 - lse2_cols)
        tile_area = min(tile, rows.shape[0]) * min(tile, cols.shape[0])
        buffers = torch.empty(3, tile_area, dtype=rows.dtype, device=rows.device)
        for i0, i1 in _blocks(rows.shape[0], tile):
            for j0, j1 in _blocks(cols.shape[0], tile):
                dot, w, extra = (b[: (i1 - i0) * (j1 - j0)].view(i1 - i0, j1 - j0) for b in buffers)
                torch.mm(rows[i0:i1], cols[j0:j1].T, out=dot)  # (bi, bj) unscaled similarities
                torch.mul(dot, k2, out=w)  # base-2 logits
                # w_ij = d loss / d s_ij = g_i · p_ij (+ g_j · q_ij for columns), p_ij = 2^(s2_ij - lse2_i)
                if not ctx.want_cols:
                    w.sub_(lse2_rows[i0:i1, None]).exp2_().mul_(g_rows[i0:i1, None])
                elif bound2 is not None:
                    w.sub_(bound2).exp2_()
                    torch.mul(w, v[None, j0:j1], out=extra)
                    w.mul_(u[i0:i1, None]).add_(extra)
                else:  # exact-forward fallback: separate shifts for rows and columns
                    torch.sub(w, lse2_cols[None, j0:j1], out=extra).exp2_().mul_(g_cols[None, j0:j1])
                    w.sub_(lse2_rows[i0:i1, None]).exp2_().mul_(g_rows[i0:i1, None]).add_(extra)
                hit = _self_positions(i0, i1, j0, j1, offset, rows.device)
                if hit is not None:
                    w[hit] = 0.0
                if need_scale:
                    grad_scale += torch.dot(w.reshape(-1), dot.reshape(-1))  # d lse / d scale = Σ p·dot
                if need_rows:
                    grad_rows[i0:i1].addmm_(w, cols[j0:j1], alpha=k)  # (bi, D)
                if need_cols:
                    grad_cols[j0:j1].addmm_(w.T, rows[i0:i1], alpha=k)  # (bj, D)
        return (
            grad_rows if need_rows else None,
            grad_cols if need_cols and not same else None,
            grad_scale if need_scale else None,
            None,
            None,
            None,
        )


def _allowed_counts(n_rows: int, n_cols: int, offset: int | None, device: torch.device) -> Tensor:
    """How many columns each row may use (self pair excluded)."""
    counts = torch.full((n_rows,), n_cols, device=device)
    if offset is not None:
        idx = torch.arange(n_rows, device=device) + offset
        counts -= ((idx >= 0) & (idx < n_cols)).long()
    return counts


def _exact_forward(
    rows: Tensor, cols: Tensor, k2: float, offset: int | None, want_cols: bool, tile: int
) -> tuple[Tensor, Tensor]:
    """The slow, always-safe forward: a max pass, then sums shifted by each row's and column's own max."""
    n_rows, n_cols = rows.shape[0], cols.shape[0]
    device, dtype = rows.device, rows.dtype
    row_max = torch.full((n_rows,), -math.inf, dtype=dtype, device=device)
    col_max = torch.full((n_cols if want_cols else 0,), -math.inf, dtype=dtype, device=device)

    def tile_logits(i0: int, i1: int, j0: int, j1: int) -> Tensor:
        s2 = (rows[i0:i1] @ cols[j0:j1].T).mul_(k2)  # (bi, bj)
        hit = _self_positions(i0, i1, j0, j1, offset, device)
        if hit is not None:
            s2[hit] = -math.inf
        return s2

    for i0, i1 in _blocks(n_rows, tile):
        for j0, j1 in _blocks(n_cols, tile):
            s2 = tile_logits(i0, i1, j0, j1)
            row_max[i0:i1] = torch.maximum(row_max[i0:i1], s2.max(dim=1).values)
            if want_cols:
                col_max[j0:j1] = torch.maximum(col_max[j0:j1], s2.max(dim=0).values)
    row_shift = torch.where(torch.isinf(row_max), 0.0, row_max)
    col_shift = torch.where(torch.isinf(col_max), 0.0, col_max)
    row_sum = torch.zeros_like(row_max)
    col_sum = torch.zeros_like(col_max)
    for i0, i1 in _blocks(n_rows, tile):
        for j0, j1 in _blocks(n_cols, tile):
            s2 = tile_logits(i0, i1, j0, j1)
            row_sum[i0:i1] += (s2 - row_shift[i0:i1, None]).exp2().sum(dim=1)
            if want_cols:
                col_sum[j0:j1] += (s2 - col_shift[None, j0:j1]).exp2().sum(dim=0)
    return row_shift + torch.log2(row_sum), col_shift + torch.log2(col_sum)


def _dense_logits(rows: Tensor, cols: Tensor, scale: Tensor | float, self_offset: int | None) -> Tensor:
    logits = scale * (rows @ cols.T)  # (N, M)
    if self_offset is not None:
        idx = torch.arange(rows.shape[0], device=rows.device)
        keep = (idx + self_offset >= 0) & (idx + self_offset < cols.shape[0])
        minus_inf = torch.tensor(-math.inf, device=rows.device, dtype=logits.dtype)
        logits = logits.index_put((idx[keep], idx[keep] + self_offset), minus_inf)
    return logits


def _as_scale(scale: Tensor | float, like: Tensor) -> Tensor:
    if isinstance(scale, Tensor):
        return scale.to(like.dtype).reshape(())
    return torch.tensor(scale, dtype=like.dtype, device=like.device)


def row_logsumexp(
    rows: Tensor,
    cols: Tensor,
    *,
    scale: Tensor | float,
    self_offset: int | None = None,
    tile: int | None = None,
) -> Tensor:
    """``logsumexp_j scale · rows_i · cols_j`` over j != i + self_offset; dense when ``tile`` is None.

    Shape:
        - rows: (N, D); cols: (M, D); returns (N,).
    """
    if tile is None:
        return torch.logsumexp(_dense_logits(rows, cols, scale, self_offset), dim=1)
    lse_rows: Tensor
    lse_rows, _ = _TiledLogSumExp.apply(  # type: ignore[no-untyped-call]
        rows, cols, _as_scale(scale, rows), self_offset, False, tile
    )
    return lse_rows


def pair_logsumexp(
    rows: Tensor, cols: Tensor, *, scale: Tensor | float, tile: int | None = None
) -> tuple[Tensor, Tensor]:
    """Row and column log-sum-exps of ``scale · rows @ colsᵀ`` from one pass over the tiles.

    Shape:
        - rows: (N, D); cols: (M, D); returns ((N,), (M,)).
    """
    if tile is None:
        logits = _dense_logits(rows, cols, scale, None)
        return torch.logsumexp(logits, dim=1), torch.logsumexp(logits, dim=0)
    lse_rows, lse_cols = _TiledLogSumExp.apply(  # type: ignore[no-untyped-call]
        rows, cols, _as_scale(scale, rows), None, True, tile
    )
    return lse_rows, lse_cols


def _focal_terms(x: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """f(x) = -(1 - e^x)^γ · x and f'(x) for log-probabilities x <= 0.

    1 - e^x is computed as -expm1(x) for precision near p = 1; its floor keeps (1 - p)^(γ - 1) finite for
    γ < 1 when p rounds to exactly 1.
    """
    if gamma == 0.0:
        return -x, torch.full_like(x, -1.0)
    q = (-torch.expm1(x)).clamp_min(torch.finfo(x.dtype).tiny)  # 1 - p
    q_gamma = q**gamma
    f = -q_gamma * x
    df = gamma * q_gamma / q * torch.exp(x) * x - q_gamma
    return f, df


class _TiledFocalPositives(torch.autograd.Function):
    """Σ_i w_i Σ_{j ∈ P(i)} f(s_ij - lse_i), positives P(i) = same class, not (i, i + offset)."""

    @staticmethod
    def forward(
        ctx: Any,
        anchors: Tensor,
        cols: Tensor,
        lse: Tensor,
        weight: Tensor,
        anchor_cls: Tensor,
        col_cls: Tensor,
        scale: float,
        gamma: float,
        self_offset: int | None,
        tile: int,
    ) -> Tensor:
        total = _focal_sum(anchors, cols, lse, weight, anchor_cls, col_cls, scale, gamma, self_offset, tile)
        ctx.save_for_backward(anchors, cols, lse, weight, anchor_cls, col_cls)
        ctx.args = (scale, gamma, self_offset, tile)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        anchors, cols, lse, weight, anchor_cls, col_cls = ctx.saved_tensors
        scale, gamma, offset, tile = ctx.args
        grad_anchors, grad_cols, grad_lse = (
            torch.zeros_like(anchors),
            torch.zeros_like(cols),
            torch.zeros_like(lse),
        )
        for i0, i1, j0, j1, x, positive in _focal_tiles(
            anchors, cols, lse, anchor_cls, col_cls, scale, offset, tile
        ):
            _, df = _focal_terms(x, gamma)
            w = (df * positive).mul_(weight[i0:i1, None] * grad)  # d total / d s_ij
            grad_lse[i0:i1] -= w.sum(dim=1)
            grad_anchors[i0:i1].addmm_(w, cols[j0:j1], alpha=scale)  # (bi, D)
            grad_cols[j0:j1].addmm_(w.T, anchors[i0:i1], alpha=scale)  # (bj, D)
        return grad_anchors, grad_cols, grad_lse, None, None, None, None, None, None, None


def _focal_sum(
    anchors: Tensor,
    cols: Tensor,
    lse: Tensor,
    weight: Tensor,
    anchor_cls: Tensor,
    col_cls: Tensor,
    scale: float,
    gamma: float,
    offset: int | None,
    tile: int,
) -> Tensor:
    total = anchors.new_zeros(())
    for i0, i1, _, _, x, positive in _focal_tiles(
        anchors, cols, lse, anchor_cls, col_cls, scale, offset, tile
    ):
        f, _ = _focal_terms(x, gamma)
        total = total + ((f * positive).sum(dim=1) * weight[i0:i1]).sum()
    return total


def _focal_tiles(
    anchors: Tensor,
    cols: Tensor,
    lse: Tensor,
    anchor_cls: Tensor,
    col_cls: Tensor,
    scale: float,
    offset: int | None,
    tile: int,
) -> Iterator[tuple[int, int, int, int, Tensor, Tensor]]:
    """Yields each tile's log-probabilities x = s - lse and its positive mask."""
    for i0, i1 in _blocks(anchors.shape[0], tile):
        for j0, j1 in _blocks(cols.shape[0], tile):
            positive = anchor_cls[i0:i1, None] == col_cls[None, j0:j1]  # (bi, bj)
            hit = _self_positions(i0, i1, j0, j1, offset, anchors.device)
            if hit is not None:
                positive[hit] = False
            if not bool(positive.any()):
                continue
            x = (anchors[i0:i1] @ cols[j0:j1].T).mul_(scale).sub_(lse[i0:i1, None])  # (bi, bj)
            x = x.masked_fill_(~positive, 0.0)  # p = 1 off the positives keeps f finite there
            yield i0, i1, j0, j1, x, positive


def focal_positive_sum(
    anchors: Tensor,
    cols: Tensor,
    lse: Tensor,
    weight: Tensor,
    anchor_cls: Tensor,
    col_cls: Tensor,
    *,
    scale: float,
    gamma: float,
    self_offset: int | None,
    tile: int | None,
) -> Tensor:
    """``Σ_i weight_i Σ_{p ∈ P(i)} -(1 - p_ip)^γ log p_ip`` with ``log p_ip = scale·a_i·c_p - lse_i``.

    Dense when ``tile`` is None, else streamed over tiles (the focal SupCon numerator).

    Shape:
        - anchors: (A, D); cols: (M, D); lse, weight, anchor_cls: (A,); col_cls: (M,); returns scalar.
    """
    if tile is not None:
        out: Tensor = _TiledFocalPositives.apply(  # type: ignore[no-untyped-call]
            anchors, cols, lse, weight, anchor_cls, col_cls, scale, gamma, self_offset, tile
        )
        return out
    # Dense: the same sum in one tile, differentiated by autograd.
    whole = max(anchors.shape[0], cols.shape[0])
    return _focal_sum(anchors, cols, lse, weight, anchor_cls, col_cls, scale, gamma, self_offset, whole)
