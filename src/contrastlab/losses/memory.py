"""State for MoCo-style training: a FIFO queue of negative keys and the momentum (EMA) update.

These are the only stateful pieces of the loss library and they are deliberately separate from the losses:
the caller composes them. The order per step is **loss first, then enqueue**: the current batch's keys are
positives for this step and must not also appear among its negatives.

    >>> queue = MemoryQueue(size=4, dim=2)
    >>> q, k = torch.randn(3, 2), torch.randn(3, 2)
    >>> from contrastlab.losses import info_nce
    >>> loss = info_nce(q, k, negatives=queue.keys)  # 1. loss against the keys of earlier steps
    >>> queue.enqueue(k)                             # 2. then this step's keys join the queue
    >>> len(queue)
    3
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from contrastlab.losses._common import check_embeddings, check_labels

__all__ = ["MemoryQueue", "momentum_copy", "momentum_update"]


class MemoryQueue(nn.Module):
    """A first-in-first-out queue of detached keys (and optionally their labels), MoCo's dictionary.

    He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020, Sec. 3.2.
    Keys are stored detached; when the queue is full the oldest keys leave first. It is an ``nn.Module`` so
    that its contents travel in ``state_dict()`` checkpoints and move with ``.to(device)``. Until the first
    enqueue it adopts the device and dtype of the first keys it receives.

    Args:
        size: Capacity K, the number of keys kept.
        dim: Embedding dimension D.

    Shape:
        - keys: (K', D) with K' = min(number enqueued, K), oldest first.
        - labels: (K',) or None if keys were enqueued without labels.

    Raises:
        ValueError: size or dim < 1; keys of the wrong shape; labels given on some calls but not others.

    Example:
        >>> queue = MemoryQueue(size=3, dim=2)
        >>> queue.enqueue(torch.tensor([[1.0, 0.0], [2.0, 0.0]]), labels=torch.tensor([0, 1]))
        >>> queue.enqueue(torch.tensor([[3.0, 0.0], [4.0, 0.0]]), labels=torch.tensor([2, 3]))
        >>> queue.keys[:, 0].tolist()  # the oldest key (1.0) has left
        [2.0, 3.0, 4.0]
        >>> queue.labels.tolist()
        [1, 2, 3]
    """

    _keys: Tensor
    _labels: Tensor
    _ptr: Tensor
    _count: Tensor
    _has_labels: Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        for name, value in (("size", size), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.size = size
        self.dim = dim
        self.register_buffer("_keys", torch.zeros(size, dim))
        self.register_buffer("_labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("_ptr", torch.zeros((), dtype=torch.long))  # next slot to write
        self.register_buffer("_count", torch.zeros((), dtype=torch.long))  # slots filled
        self.register_buffer("_has_labels", torch.zeros((), dtype=torch.bool))

    def __len__(self) -> int:
        return int(self._count)

    @property
    def keys(self) -> Tensor:
        """The stored keys, oldest first, detached. Shape (K', D)."""
        return self._ordered(self._keys)

    @property
    def labels(self) -> Tensor | None:
        """The stored keys' labels, oldest first, or None if keys were enqueued without labels."""
        if len(self) == 0 or not bool(self._has_labels):
            return None
        return self._ordered(self._labels)

    def _ordered(self, buffer: Tensor) -> Tensor:
        count, ptr = int(self._count), int(self._ptr)
        if count < self.size:
            return buffer[:count]
        return torch.cat([buffer[ptr:], buffer[:ptr]])  # full ring: oldest entry sits at ptr

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor | None = None) -> None:
        """Appends ``keys`` (detached); the oldest keys leave once the queue is full.

        Call it after computing the step's loss. When more than ``size`` keys arrive at once only the
        newest ``size`` are kept.

        Shape:
            - keys: (B, D).
            - labels: (B,) integer, or None.
        """
        check_embeddings("keys", keys)
        if keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (B, {self.dim}), got {tuple(keys.shape)}")
        if labels is not None:
            labels = check_labels(labels, keys.shape[0])
        if len(self) > 0 and bool(self._has_labels) != (labels is not None):
            state = "with" if bool(self._has_labels) else "without"
            raise ValueError(
                f"this queue holds keys {state} labels; enqueue every batch {state} labels "
                "(mixing would leave keys with unknown classes)"
            )
        if len(self) == 0:
            self._adopt(keys)
            self._has_labels.fill_(labels is not None)
        elif keys.device != self._keys.device:
            raise ValueError(f"keys are on {keys.device} but the queue lives on {self._keys.device}")

        keys = keys.detach().to(self._keys.dtype)
        if keys.shape[0] > self.size:
            keys = keys[-self.size :]
            labels = None if labels is None else labels[-self.size :]
        b, ptr = keys.shape[0], int(self._ptr)
        slots = (torch.arange(b, device=keys.device) + ptr) % self.size
        self._keys[slots] = keys
        if labels is not None:
            self._labels[slots] = labels.to(self._labels.device, torch.long)
        self._ptr.fill_((ptr + b) % self.size)
        self._count.fill_(min(self.size, int(self._count) + b))

    def _adopt(self, keys: Tensor) -> None:
        if self._keys.device != keys.device or self._keys.dtype != keys.dtype:
            self._keys = torch.zeros(self.size, self.dim, device=keys.device, dtype=keys.dtype)
            self._labels = self._labels.to(keys.device)

    def reset(self) -> None:
        """Empties the queue."""
        self._ptr.zero_()
        self._count.zero_()
        self._has_labels.fill_(False)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, filled={len(self)}"


@torch.no_grad()
def momentum_update(target: nn.Module, online: nn.Module, *, momentum: float) -> None:
    """Moves ``target`` toward ``online`` by an exponential moving average, in place.

    ``target = momentum · target + (1 - momentum) · online`` for every parameter and floating buffer
    (BatchNorm running statistics); integer buffers (``num_batches_tracked``) are copied. MoCo, Eq. 2.

    Args:
        target: The momentum (key) encoder; its parameters should not require grad.
        online: The online (query) encoder, of the same architecture.
        momentum: m in [0, 1]; 0 copies ``online``, 1 leaves ``target`` unchanged. MoCo uses 0.999.

    Raises:
        ValueError: momentum outside [0, 1], or modules whose parameter or buffer names or shapes differ.

    Example:
        >>> online, target = nn.Linear(2, 1), nn.Linear(2, 1)
        >>> momentum_update(target, online, momentum=0.0)
        >>> bool(torch.equal(target.weight, online.weight))
        True
    """
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
    for kind, t_items, o_items in (
        ("parameter", dict(target.named_parameters()), dict(online.named_parameters())),
        ("buffer", dict(target.named_buffers()), dict(online.named_buffers())),
    ):
        if t_items.keys() != o_items.keys():
            missing = sorted(set(t_items) ^ set(o_items))
            raise ValueError(f"target and online differ in their {kind}s: {missing}")
        for name, t in t_items.items():
            o = o_items[name]
            if t.shape != o.shape:
                raise ValueError(
                    f"{kind} {name!r} has shape {tuple(t.shape)} in target but {tuple(o.shape)} in online"
                )
            if t.is_floating_point():
                t.mul_(momentum).add_(o.detach().to(t.dtype), alpha=1.0 - momentum)
            else:
                t.copy_(o)


def momentum_copy(online: nn.Module) -> nn.Module:
    """A frozen deep copy of ``online`` to serve as the momentum encoder (no parameter requires grad).

    Example:
        >>> target = momentum_copy(nn.Linear(2, 1))
        >>> any(p.requires_grad for p in target.parameters())
        False
    """
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target
