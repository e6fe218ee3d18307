from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastlab.losses import MemoryQueue, info_nce, momentum_copy, momentum_update
from tests.losses import oracles


def _rows(start: int, count: int, dim: int = 2) -> torch.Tensor:
    return torch.arange(start, start + count, dtype=torch.float32)[:, None].repeat(1, dim)


def test_memory_queue__fifo_with_wraparound():
    queue = MemoryQueue(size=5, dim=2)
    assert len(queue) == 0 and queue.keys.shape == (0, 2) and queue.labels is None
    queue.enqueue(_rows(0, 3))
    assert queue.keys[:, 0].tolist() == [0, 1, 2]
    queue.enqueue(_rows(3, 4))  # 7 keys into 5 slots: 0 and 1 leave
    assert queue.keys[:, 0].tolist() == [2, 3, 4, 5, 6]
    queue.enqueue(_rows(7, 1))
    assert queue.keys[:, 0].tolist() == [3, 4, 5, 6, 7]


def test_memory_queue__batch_larger_than_queue_keeps_newest():
    queue = MemoryQueue(size=3, dim=2)
    queue.enqueue(_rows(0, 2), labels=torch.tensor([0, 1]))
    queue.enqueue(_rows(10, 7), labels=torch.arange(10, 17))
    assert queue.keys[:, 0].tolist() == [14, 15, 16]
    assert queue.labels is not None and queue.labels.tolist() == [14, 15, 16]


def test_memory_queue__stores_detached_keys():
    queue = MemoryQueue(size=4, dim=2)
    keys = torch.randn(2, 2, requires_grad=True)
    queue.enqueue(keys * 2)
    assert not queue.keys.requires_grad


def test_memory_queue__adopts_dtype_of_first_keys_and_round_trips_state_dict():
    queue = MemoryQueue(size=4, dim=3)
    queue.enqueue(torch.randn(3, 3, dtype=torch.float64), labels=torch.tensor([1, 2, 3]))
    assert queue.keys.dtype == torch.float64
    restored = MemoryQueue(size=4, dim=3).to(torch.float64)
    restored.load_state_dict(queue.state_dict())
    torch.testing.assert_close(restored.keys, queue.keys)
    assert restored.labels is not None and restored.labels.tolist() == [1, 2, 3]
    restored.enqueue(torch.randn(2, 3, dtype=torch.float64), labels=torch.tensor([4, 5]))
    assert restored.labels.tolist() == [2, 3, 4, 5]


def test_memory_queue__errors_name_the_problem():
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        MemoryQueue(size=0, dim=2)
    queue = MemoryQueue(size=4, dim=2)
    with pytest.raises(ValueError, match=r"keys must have shape \(B, 2\), got \(3, 5\)"):
        queue.enqueue(torch.randn(3, 5))
    queue.enqueue(torch.randn(2, 2), labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="holds keys with labels"):
        queue.enqueue(torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        queue.enqueue(torch.randn(2, 2), labels=torch.tensor([0, 1, 2]))


def test_memory_queue__loss_first_then_enqueue():
    # The documented order: this step's keys are its positives and must not be among its negatives.
    g = torch.Generator().manual_seed(0)
    queue = MemoryQueue(size=8, dim=4)
    history: list[torch.Tensor] = []
    for _ in range(3):
        q, k = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
        previous = torch.cat(history).double() if history else None
        expected = oracles.info_nce(q.double(), k.double(), previous, 0.1)
        loss = info_nce(q, k, negatives=queue.keys, temperature=0.1)
        torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
        queue.enqueue(k)
        history.append(k)


def test_memory_queue__reset():
    queue = MemoryQueue(size=4, dim=2)
    queue.enqueue(torch.randn(3, 2), labels=torch.tensor([0, 1, 2]))
    queue.reset()
    assert len(queue) == 0
    queue.enqueue(torch.randn(1, 2))  # labels may change after a reset
    assert queue.labels is None


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)


def test_momentum_update__is_an_ema_of_parameters_and_float_buffers():
    torch.manual_seed(0)
    online, target = _Net(), _Net()
    online.norm.running_mean.fill_(1.0)
    online.norm.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    momentum_update(target, online, momentum=0.9)
    for name, value in target.state_dict().items():
        if value.is_floating_point():
            expected = 0.9 * before[name] + 0.1 * online.state_dict()[name]
            torch.testing.assert_close(value, expected)
    assert int(target.norm.num_batches_tracked) == 7


def test_momentum_update__bounds_and_mismatch():
    online, target = _Net(), _Net()
    snapshot = [p.clone() for p in target.parameters()]
    momentum_update(target, online, momentum=1.0)
    assert all(torch.equal(a, b) for a, b in zip(snapshot, target.parameters(), strict=True))
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\], got 1.5"):
        momentum_update(target, online, momentum=1.5)
    with pytest.raises(ValueError, match="differ in their parameters"):
        momentum_update(nn.Linear(3, 2), _Net(), momentum=0.5)
    with pytest.raises(ValueError, match=r"has shape \(2, 3\) in target but \(4, 3\) in online"):
        momentum_update(nn.Linear(3, 2), nn.Linear(3, 4), momentum=0.5)


def test_momentum_copy__is_frozen_and_independent():
    online = _Net()
    target = momentum_copy(online)
    assert not any(p.requires_grad for p in target.parameters())
    with torch.no_grad():
        online.linear.weight.add_(1.0)
    assert not torch.equal(online.linear.weight, target.linear.weight)
