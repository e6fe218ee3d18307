"""data.train_labels: a label budget keeps that many training rows per class (or a share), a seeded draw;
val and test stay as they were, and runs and baselines train on the same rows."""

from __future__ import annotations

import json

import pytest
import torch

from contrastlab.data import get_dataset
from contrastlab.train import validate_config
from contrastlab.train.config import ConfigError
from contrastlab.train.split import make_split


def _split(**data):
    config = validate_config({"data": {"name": "blobs", **data}})
    return make_split(config, get_dataset("blobs"))


@pytest.mark.parametrize("budget", [1, 5, 20])
def test_a_per_class_budget_keeps_that_many_rows_of_each_class_and_leaves_val_and_test(budget):
    full, limited = _split(), _split(train_labels=budget)
    targets = get_dataset("blobs").targets
    counts = torch.bincount(targets[limited["train"]], minlength=4)
    assert counts.tolist() == [budget] * 4
    assert set(limited["train"].tolist()) <= set(full["train"].tolist())
    assert torch.equal(limited["val"], full["val"]) and torch.equal(limited["test"], full["test"])
    assert torch.equal(_split(train_labels=budget)["train"], limited["train"])  # seeded
    other = _split(train_labels=budget, split_seed=1)["train"]
    assert not torch.equal(other, limited["train"])  # another draw (and another split) with another seed


def test_a_share_keeps_that_share_of_each_class():
    full, limited = _split(), _split(train_labels=0.25)
    targets = get_dataset("blobs").targets
    for c in range(4):
        have = int((targets[full["train"]] == c).sum())
        assert int((targets[limited["train"]] == c).sum()) == max(1, round(have * 0.25))


def test_bad_budgets_are_named_errors():
    with pytest.raises(ConfigError, match=r"a share is at most 1\.0"):
        validate_config({"data": {"train_labels": 1.5}})
    with pytest.raises(ConfigError, match="train_labels"):
        validate_config({"data": {"train_labels": 0}})
    with pytest.raises(ValueError, match=r"data.train_labels=1000: class \d has \d+ training rows"):
        _split(train_labels=1000)


def test_runs_and_baselines_train_on_the_same_budget(tmp_path):
    from contrastlab.experiments.baselines import features_linear
    from contrastlab.train import train
    from tests.train.test_trainer import TINY

    # 18 training rows: batches of 9 (TINY's 24 made epochs with no step, refused since)
    raw = {**TINY, "data": {**TINY["data"], "train_labels": 6},
           "trainer": {**TINY["trainer"], "epochs": 1, "batch_size": 9}}
    config = validate_config(raw)
    train(config, tmp_path / "run", progress=False, quiet=True)
    features_linear(config, tmp_path / "lr")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split == json.loads((tmp_path / "lr" / "split.json").read_text())
    assert len(split["train"]) == 6 * 3
