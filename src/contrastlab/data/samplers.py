"""Batch samplers whose order is a pure function of (seed, epoch), so a resumed run sees the same batches.

``ClassBalancedBatchSampler`` guarantees what SupCon needs: every class present in a batch has at least
``m_per_class`` samples, so every anchor has a positive.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["ClassBalancedBatchSampler", "RandomBatchSampler", "batch_statistics"]


class _EpochSampler:
    """``n // batch_size`` batches per epoch, drawn from a generator seeded by (seed, epoch) alone, so the
    batches of any epoch can be replayed after a resume without replaying the epochs before it."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)


class RandomBatchSampler(_EpochSampler):
    """Shuffled batches of ``batch_size`` indices; the last partial batch is dropped (contrastive losses
    and ``gather_distributed`` want equal batches). Shuffled anew per epoch from ``seed`` and the epoch."""

    def __init__(self, n: int, batch_size: int, *, seed: int) -> None:
        if batch_size < 1 or n < batch_size:
            raise ValueError(f"batch_size must be in [1, {n}] for {n} samples, got {batch_size}")
        super().__init__(n, batch_size, seed)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self._generator())
        for b in range(len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class ClassBalancedBatchSampler(_EpochSampler):
    """Batches in which every class present has at least ``m_per_class`` samples.

    Each batch draws ``min(num_classes, batch_size // m_per_class)`` classes and splits the batch evenly
    among them; within a class, samples come from a per-epoch shuffled cycle, so every sample is seen before
    any repeats. An epoch has ``len(labels) // batch_size`` batches.

    Raises:
        ValueError: batch_size < m_per_class, or a class with fewer than m_per_class samples.
    """

    def __init__(self, labels: Tensor, batch_size: int, m_per_class: int, *, seed: int) -> None:
        if m_per_class < 1 or batch_size < m_per_class:
            raise ValueError(f"batch_size ({batch_size}) must be >= m_per_class ({m_per_class}) >= 1")
        self.classes, counts = torch.unique(labels, return_counts=True)
        small = [(int(c), int(k)) for c, k in zip(self.classes, counts, strict=True) if k < m_per_class]
        if small:
            raise ValueError(
                f"class_balanced sampling with m_per_class={m_per_class} needs that many samples per class; "
                f"these (class, count) pairs have fewer: {small}"
            )
        self.members = [torch.nonzero(labels == c).flatten() for c in self.classes]
        self.m = m_per_class
        super().__init__(labels.shape[0], batch_size, seed)

    def __iter__(self) -> Iterator[list[int]]:
        g = self._generator()
        pools = [m[torch.randperm(m.shape[0], generator=g)] for m in self.members]
        cursors = [0] * len(pools)
        k = min(len(pools), self.batch_size // self.m)
        for _ in range(len(self)):
            chosen = torch.randperm(len(pools), generator=g)[:k].tolist()
            sizes = [self.batch_size // k + (1 if i < self.batch_size % k else 0) for i in range(k)]
            batch: list[int] = []
            for c, size in zip(chosen, sizes, strict=True):
                pool = pools[c]
                for _ in range(size):  # cycle through the class, reshuffling when it runs out
                    if cursors[c] == pool.shape[0]:
                        pools[c] = pool = pool[torch.randperm(pool.shape[0], generator=g)]
                        cursors[c] = 0
                    batch.append(int(pool[cursors[c]]))
                    cursors[c] += 1
            yield batch


def batch_statistics(labels: Tensor, indices: Tensor, views: int) -> dict[str, float]:
    """What a SupCon batch offers its anchors.

    Returns:
        positives_per_anchor: mean number of positives (same label, other row or other view);
        no_positive_share: share of anchors with none; duplicate_share: share of rows whose dataset index
        appears more than once in the batch (repeated inputs make trivial positives).
    """
    same = labels[:, None] == labels[None, :]  # (B, B)
    positives = same.sum(dim=1) * views - 1  # every row of the same class in every view, minus itself
    duplicates = (indices[:, None] == indices[None, :]).sum(dim=1) > 1
    return {
        "positives_per_anchor": float(positives.float().mean()),
        "no_positive_share": float((positives == 0).float().mean()),
        "duplicate_share": float(duplicates.float().mean()),
    }
