"""torchrun with 2 gloo processes on CPU trains exactly like one process on the whole batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from contrastlab.train import load_checkpoint, train, validate_config

ONE_STEP = {
    "name": "ddp",
    # 60 samples, 3 classes: the stratified split leaves 36 for training, i.e. exactly one batch.
    "data": {"name": "blobs", "options": {"n_samples": 60, "n_features": 8, "n_classes": 3}},
    "model": {"hidden_dims": [16], "embedding_dim": 8, "projection_dim": 8, "dropout": 0.0},
    "objective": {"supcon": {"weight": 0.5, "temperature": 0.2}, "nt_xent": {"weight": 0.1}},
    "trainer": {
        "epochs": 2,
        "batch_size": 36,
        "lr": 0.01,
        "views": {"count": 2, "mode": "one_stage"},
        "term_grad_norm_every": 0,
    },
}


def test_torchrun_two_processes__same_parameters_as_one_process(tmp_path):
    single = train(validate_config(ONE_STEP), tmp_path / "single", progress=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(ONE_STEP))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = ["-m", "contrastlab", "train", str(recipe), "--runs-dir", str(tmp_path), "--name", "ddp"]
    proc = subprocess.run(
        torchrun + command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")["model"]
    got = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["model"]
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    ddp_history = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["history"]
    for ours, ref in zip(ddp_history, single.history, strict=True):
        for key in ("train/task", "train/supcon", "train/nt_xent", "val/accuracy", "val/loss"):
            assert abs(ours[key] - ref[key]) < 1e-5, key


GINE = {
    "name": "ddp_gine",
    "data": {"name": "solubility", "split": "dataset", "val_fraction": 0.2, "max_rows_per_split": 64},
    "model": {"name": "gine", "hidden_dims": [16, 16], "embedding_dim": 16, "projection_dim": 8,
              "dropout": 0.0},
    "objective": {"task": "mse"},
    "trainer": {
        "epochs": 4, "batch_size": 16, "lr": 0.01, "term_grad_norm_every": 0,
        "early_stopping": {"monitor": "val/rmse", "patience": 2},
        "scheduler": {"name": "plateau", "monitor": "val/rmse", "patience": 0, "factor": 0.5},
    },
}  # fmt: skip


def test_torchrun_two_processes__gine_with_batchnorm_equals_one_process_and_ranks_agree(tmp_path):
    # Seen failing before the fix: each rank normalised its half batch and kept its own BatchNorm buffers,
    # so the ranks' models (and their validation numbers, hence their decisions) differed.
    single = train(validate_config(GINE), tmp_path / "single", progress=False)
    script = Path(__file__).with_name("_ddp_run.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run([*torchrun, str(script), json.dumps(GINE), str(tmp_path / "ddp"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, tensor in rank0.items():  # parameters and BatchNorm buffers alike
        assert torch.equal(rank1[name], tensor), name
    expected = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")["model"]
    for name, tensor in expected.items():
        torch.testing.assert_close(rank0[name].float(), tensor.float(), rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")  # fmt: skip
    history = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["history"]
    assert len(history) == len(single.history)  # the same early-stopping decision
    for ours, ref in zip(history, single.history, strict=True):
        assert ours["lr"] == ref["lr"]  # the same plateau decisions
        for key in ("train/task", "val/rmse", "val/loss"):
            assert ours[key] == pytest.approx(ref[key], rel=1e-4), key
