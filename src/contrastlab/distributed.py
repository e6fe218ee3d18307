"""Every collective contrastlab uses, in one place; all are safe without a process group.

Losses with ``gather_distributed=True`` compute their *local* anchors against the columns of *every* rank
(local rows x gathered columns, positives at an offset of ``rank · local_batch``) and return the mean over
the local anchors. The gather's backward sums the gradient each rank's loss sends to a slice, so that under
DDP, which averages gradients over ranks, every parameter receives exactly the gradient of the
single-process loss on the concatenated batch. ``contrastlab.testing.assert_distributed_equivalence``
checks that contract.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")

__all__ = [
    "GlobalBatchNorm",
    "all_gather",
    "all_gather_with_grad",
    "all_reduce_with_grad",
    "any_rank",
    "average_gradients",
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "convert_batchnorm",
    "init_from_environment",
    "is_distributed",
    "mean_over_ranks",
    "rank",
    "world_size",
]


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


class _AllReduceWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        # Every rank's sum depends on our x: the gradient of x is the sum of every rank's gradient of the sum.
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_with_grad(x: Tensor) -> Tensor:
    """The sum of ``x`` over ranks, differentiable (``x`` itself with one process)."""
    if world_size() == 1:
        return x
    out: Tensor = _AllReduceWithGrad.apply(x)  # type: ignore[no-untyped-call]
    return out


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (picklable data: a history row, a decision)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation over the whole batch of every rank (any backend, CPU and gloo included; torch's
    SyncBatchNorm needs a GPU): training-mode statistics are all-reduced, in two passes (the mean, then the
    squared deviations from it), with gradients through them, so a W-process run normalises exactly as one
    process on the concatenated batch and every rank's running statistics stay equal. Same parameters and
    buffers as the BatchNorm it replaces (checkpoints are interchangeable).

    Shape:
        - input: (N, C) or (N, C, *); ranks may hold different N (graphs have different node counts).
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected (N, C) or (N, C, *) input, got shape {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not self.training or world_size() == 1:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor(float(input.numel() // input.shape[1]), device=input.device)
        dist.all_reduce(count, op=dist.ReduceOp.SUM)  # (), rows over every rank
        x = input.float()
        mean = all_reduce_with_grad(x.sum(dims)) / count  # (C,)
        var = all_reduce_with_grad((x - mean.view(shape)).pow(2).sum(dims)) / count  # (C,) biased
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                assert self.running_mean is not None and self.running_var is not None
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * count / max(float(count) - 1.0, 1.0)
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        return out.to(input.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`GlobalBatchNorm` holding the same
    parameters and buffers (returned; ``module`` itself is changed in place below the top)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)  # fmt: skip
        new.load_state_dict(module.state_dict())
        if module.affine:
            new.weight, new.bias = module.weight, module.bias  # the very parameters, for optimisers
        new.train(module.training)
        return new.to(next(module.buffers(), torch.zeros(0)).device)
    for name, child in module.named_children():
        setattr(module, name, convert_batchnorm(child))
    return module


def broadcast_module(module: nn.Module) -> None:
    """Copies rank 0's parameters and buffers to every rank (the same start everywhere)."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Sequence[Tensor]) -> None:
    """Replaces each parameter's gradient by its mean over ranks, in one collective per call.

    Under torchrun the loss of each rank is the mean over its own share of the batch, so the mean of the
    ranks' gradients is the gradient of the whole batch's loss (the contrastive terms' gathers carry the
    rest; see the top of this module). A parameter no rank's loss reached keeps ``grad=None`` everywhere,
    as in one process (DDP instead requires every output of ``forward`` to reach the loss); one that only
    some ranks reached gets zeros elsewhere.
    """
    if world_size() == 1 or not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=params[0].device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    reached = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    for p in reached:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not reached:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in reached])  # type: ignore[union-attr]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for p in reached:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
        offset += n


def any_rank(flag: bool) -> bool:
    """``flag`` OR-ed over every rank (so that every rank takes the same decision); ``flag`` on one."""
    if world_size() == 1:
        return flag
    t = torch.tensor([float(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(sums: dict[str, float]) -> dict[str, float]:
    """Each value summed over ranks, divided by the number of ranks (every rank passes the same keys)."""
    if world_size() == 1 or not sums:
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t.tolist(), strict=True)}


def init_from_environment(device: torch.device) -> tuple[int, int]:
    """Joins the process group torchrun describes (WORLD_SIZE > 1); returns (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank(), world_size()


def barrier() -> None:
    """Waits for every rank (nothing on one process)."""
    if world_size() > 1:
        dist.barrier()
