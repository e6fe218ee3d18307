"""Helpers users can call from their own tests.

``assert_distributed_equivalence`` answers the question multi-GPU users rarely check: does my loss, run on
W processes that each hold 1/W of the batch, train exactly like one process on the whole batch?
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

__all__ = ["assert_distributed_equivalence"]

LossFn = Callable[..., Tensor]


def _worker(
    rank: int, world: int, store: str, out_dir: str, loss_fn: LossFn, inputs: Sequence[Tensor]
) -> None:
    torch.set_num_threads(1)  # W processes share the machine's cores
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        shards = [x.chunk(world)[rank].clone() for x in inputs]
        for s in shards:
            if s.is_floating_point():
                s.requires_grad_()
        loss = loss_fn(*shards)
        loss.backward()  # type: ignore[no-untyped-call]
        grads = [s.grad if s.is_floating_point() else None for s in shards]
        torch.save({"loss": loss.detach(), "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _prefixed(prefix: str) -> Callable[[str], str]:
    return lambda message: f"{prefix}: {message}"


def assert_distributed_equivalence(
    loss_fn: LossFn,
    *inputs: Tensor,
    world_size: int = 2,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """Checks that ``loss_fn`` on ``world_size`` gloo processes equals one process on the whole batch.

    Every positional input is split into ``world_size`` equal shards along dim 0 (rank r takes the r-th),
    so features and their labels travel together. ``loss_fn`` must be picklable (a module-level function or
    a ``functools.partial`` of one) and should enable gathering itself, e.g.
    ``partial(supcon, temperature=0.1, gather_distributed=True)``; without a process group the same
    function computes the single-process reference.

    The contract checked is the one DDP needs: the mean of the ranks' losses equals the single-process
    loss, and each rank's input gradient, divided by ``world_size`` as DDP's gradient averaging divides it,
    equals the single-process gradient of that rank's shard.

    Args:
        loss_fn: Maps input tensors to a scalar loss.
        *inputs: Full-batch inputs; floating ones get gradients compared, integer ones (labels) do not.
        world_size: Number of CPU processes to spawn.
        rtol: Relative tolerance of the comparisons.
        atol: Absolute tolerance of the comparisons.

    Raises:
        ValueError: an input's first dimension is not divisible by ``world_size``.
        AssertionError: loss or gradients differ; the message names which and by how much.

    Example:
        >>> from functools import partial
        >>> from contrastlab.losses import nt_xent
        >>> z = torch.randn(8, 2, 16)
        >>> assert_distributed_equivalence(
        ...     partial(nt_xent, temperature=0.5, gather_distributed=True), z[:, 0], z[:, 1]
        ... )  # doctest: +SKIP
    """
    for i, x in enumerate(inputs):
        if x.shape[0] % world_size:
            raise ValueError(
                f"inputs[{i}] has {x.shape[0]} rows, which world_size={world_size} does not divide evenly"
            )
    full = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    reference = loss_fn(*full)
    reference.backward()  # type: ignore[no-untyped-call]

    with tempfile.TemporaryDirectory(prefix="contrastlab-dist-") as tmp:
        store = os.path.join(tmp, "store")
        mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
            _worker,
            args=(world_size, store, tmp, loss_fn, [x.detach() for x in inputs]),
            nprocs=world_size,
            join=True,
            start_method="spawn",
        )
        results = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]

    mean_loss = torch.stack([r["loss"] for r in results]).mean()
    torch.testing.assert_close(
        mean_loss,
        reference.detach(),
        rtol=rtol,
        atol=atol,
        msg=lambda m: f"mean of the ranks' losses differs from the single-process loss: {m}",
    )
    for i, x in enumerate(full):
        if x.grad is None:
            continue
        expected = x.grad.chunk(world_size)
        for r, result in enumerate(results):
            got = result["grads"][i] / world_size
            where = f"gradient of inputs[{i}] on rank {r} (divided by W) differs"
            torch.testing.assert_close(got, expected[r], rtol=rtol, atol=atol, msg=_prefixed(where))
