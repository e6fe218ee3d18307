from __future__ import annotations

import pytest
import torch

from contrastlab.data import ClassBalancedBatchSampler, RandomBatchSampler, batch_statistics, stratified_split


def test_class_balanced_sampler__every_present_class_has_m_samples():
    labels = torch.arange(103) % 7
    sampler = ClassBalancedBatchSampler(labels, batch_size=16, m_per_class=4, seed=0)
    batches = list(sampler)
    assert len(batches) == 103 // 16
    for batch in batches:
        assert len(batch) == 16 and len(set(batch)) == 16
        _, counts = labels[torch.tensor(batch)].unique(return_counts=True)
        assert int(counts.min()) >= 4


def test_samplers__deterministic_per_epoch_and_different_across_epochs():
    labels = torch.arange(60) % 3
    makers = (
        lambda: ClassBalancedBatchSampler(labels, 12, 2, seed=5),
        lambda: RandomBatchSampler(60, 12, seed=5),
    )
    for make in makers:
        a, b = make(), make()
        a.set_epoch(3)
        b.set_epoch(3)
        assert list(a) == list(b)
        b.set_epoch(4)
        assert list(a) != list(b)


def test_class_balanced_sampler__rejects_small_classes():
    with pytest.raises(ValueError, match=r"these \(class, count\) pairs have fewer: \[\(2, 1\)\]"):
        ClassBalancedBatchSampler(torch.tensor([0, 0, 1, 1, 2]), 4, 2, seed=0)


def test_batch_statistics__positives_and_duplicates():
    stats = batch_statistics(torch.tensor([0, 0, 1, 2]), torch.tensor([5, 6, 7, 7]), views=1)
    assert stats["positives_per_anchor"] == pytest.approx(0.5)
    assert stats["no_positive_share"] == pytest.approx(0.5)
    assert stats["duplicate_share"] == pytest.approx(0.5)


def test_stratified_split__deterministic_disjoint_and_stratified():
    y = torch.arange(100) % 4
    a = stratified_split(y, val_fraction=0.2, test_fraction=0.2, seed=1)
    b = stratified_split(y, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    everything = torch.cat([a["train"], a["val"], a["test"]]).sort().values
    assert torch.equal(everything, torch.arange(100))
    assert y[a["val"]].bincount().tolist() == [5, 5, 5, 5]
