"""Every collective contrastlab uses, in one place; all are safe without a process group.

Losses with ``gather_distributed=True`` compute their *local* anchors against the columns of *every* rank
(local rows x gathered columns, positives at an offset of ``rank · local_batch``) and return the mean over
the local anchors. The gather's backward sums the gradient each rank's loss sends to a slice, so that under
DDP, which averages gradients over ranks, every parameter receives exactly the gradient of the
single-process loss on the concatenated batch. ``contrastlab.testing.assert_distributed_equivalence``
checks that contract.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_gather", "all_gather_with_grad", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank, 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes, 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def _check_equal_batches(x: Tensor) -> None:
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    counts = [int(s) for s in sizes]
    if len(set(counts)) != 1:
        raise ValueError(
            f"gather_distributed needs the same batch size on every rank, got {counts} "
            "(use drop_last=True in the DistributedSampler / DataLoader)"
        )


def all_gather(x: Tensor) -> Tensor:
    """Concatenates ``x`` from every rank along dim 0, without gradient (e.g. labels).

    Shape:
        - x: (n, ...); returns (W·n, ...), rank r's rows at [r·n, (r+1)·n).
    """
    if world_size() == 1:
        return x
    _check_equal_batches(x)
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.n = x.shape[0]
        return torch.cat(parts)  # (W·n, ...)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        # Every rank's loss sent gradient to every rank's rows: sum them, keep ours.
        grad = grad.contiguous()
        if dist.get_backend() == dist.Backend.NCCL:
            out = torch.empty((ctx.n, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(out, grad, op=dist.ReduceOp.SUM)
            return out
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # gloo has no reduce_scatter
        start = rank() * ctx.n
        return grad[start : start + ctx.n]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenates ``x`` from every rank along dim 0; gradients flow back to each rank's own rows.

    Without a process group (or with one process) it returns ``x`` itself.

    Shape:
        - x: (n, ...); returns (W·n, ...), rank r's rows at [r·n, (r+1)·n).

    Raises:
        ValueError: ranks hold different batch sizes.
    """
    if world_size() == 1:
        return x
    _check_equal_batches(x)
    out: Tensor = _AllGatherWithGrad.apply(x)  # type: ignore[no-untyped-call]
    return out
