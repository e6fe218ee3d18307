"""trainer.threads and trainer.device=auto."""

from __future__ import annotations

import pytest


def test_trainer_threads_and_device_auto(tmp_path):
    import torch

    from contrastlab.train import train, validate_config
    from contrastlab.train.trainer import resolve_device
    from tests.train.test_trainer import TINY

    before = torch.get_num_threads()
    try:
        raw = {**TINY, "trainer": {**TINY["trainer"], "epochs": 1, "threads": 1, "device": "auto"}}
        result = train(validate_config(raw), tmp_path / "r", progress=False, quiet=True)
        assert torch.get_num_threads() == 1 and result.history
    finally:
        torch.set_num_threads(before)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device("cpu").type == "cpu"
    with pytest.raises(Exception, match=r"trainer.threads"):
        validate_config({"trainer": {"threads": 0}})
