"""TrainState: what a checkpoint holds; resume restores every field of it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from contrastlab.train import train, validate_config
from contrastlab.train.checkpoint import CheckpointError, TrainState, load_checkpoint, save_checkpoint
from tests.train.test_trainer import TINY


def test_a_checkpoint_is_a_train_state_and_every_field_is_filled(tmp_path):
    raw = {**TINY, "objective": {"moco": {"weight": 0.5, "queue_size": 64}},
           "trainer": {**TINY["trainer"], "epochs": 2}}  # fmt: skip
    train(validate_config(raw), tmp_path / "r", progress=False, quiet=True)
    state = TrainState.load(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state.epoch == 1 and len(state.history) == 2 and state.global_step > 0
    assert state.model and state.optimizer and state.rng and state.lrs  # (the scaler's is {} without fp16)
    assert state.weights == {"moco": 0.5} and state.momentum is not None and state.queue is not None
    assert state.reference is None  # no term asked for one
    stored = set(load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")) - {"format"}
    assert stored == {f.name for f in dataclasses.fields(TrainState)}


def test_a_checkpoint_of_the_earlier_layout_still_loads(tmp_path):
    weights = {"w": torch.ones(2)}
    old = {"config": {}, "model": weights, "optimizer": {}, "epoch": 3, "global_step": 7, "bad_epochs": 0,
           "history": [], "best": {}, "overrides_log": [], "rng": {}, "lrs": [0.1], "scheduler": {},
           "scaler": {}, "stopped_early": False,
           "objective": {"weights": {"moco": 0.2}, "key_model": weights,
                         "queue": {"_count": torch.tensor(5)}}}  # fmt: skip
    save_checkpoint(old, tmp_path / "old.pt")
    state = TrainState.load(tmp_path / "old.pt")
    assert state.epoch == 3 and state.weights == {"moco": 0.2}
    assert state.momentum is not None and torch.equal(state.momentum["w"], weights["w"])
    assert state.queue is not None and int(state.queue["_count"]) == 5 and state.reference is None


def test_a_checkpoint_without_training_state_is_refused_by_name(tmp_path):
    save_checkpoint({"model": {}}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match=r"not a training checkpoint: it lacks \['config', 'epoch', 'o"):
        TrainState.load(tmp_path / "weights.pt")
