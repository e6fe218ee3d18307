"""torchrun with 2 gloo processes on CPU trains exactly like one process on the whole batch."""

from __future__ import annotations

import subprocess
import sys

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
