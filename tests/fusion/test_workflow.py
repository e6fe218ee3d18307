"""The fusion recipes end to end on a small slice of mp_gap: both arms from the CLI, stage CKA between
them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from contrastlab.cli import main as cli_main
from contrastlab.data import get_dataset
from contrastlab.train import load_config, train
from contrastlab.train.build import make_model
from contrastlab.train.checkpoint import read_history

if importlib.util.find_spec("crabnet") is None or importlib.util.find_spec("elementembeddings") is None:
    pytest.skip("crabnet / elementembeddings are not installed (scripts/test.sh installs them)",
                allow_module_level=True)  # fmt: skip

RECIPES = Path(__file__).parents[2] / "recipes" / "fusion"
SMALL = [
    "data.options.subsample=96",
    "trainer.epochs=2",
    "trainer.batch_size=16",
    "model.hidden_dims=[16,16,16,16]",
    "model.embedding_dim=16",
    "model.options.middle_fusion_hidden_dim=16",
]


def test_both_arms_run_from_the_cli_and_diagnose_prints_the_stage_cka(tmp_path, capsys):
    for recipe in ("mp_gap_fusion", "mp_gap_clip"):
        assert cli_main(["train", str(RECIPES / f"{recipe}.yaml"), *SMALL, "--runs-dir", str(tmp_path)]) == 0
        metrics = json.loads((tmp_path / recipe / "metrics.json").read_text())
        assert {"mae", "rmse", "r2"} <= set(metrics["test"])
    base, clip = (read_history(tmp_path / r / "history.csv") for r in ("mp_gap_fusion", "mp_gap_clip"))
    assert base[0]["weight/clip"] == 0.0 and clip[0]["weight/clip"] == pytest.approx(0.2)
    assert base[0]["train/clip"] > 0  # the baseline logs the term it does not optimise
    assert base[0]["train/loss"] == pytest.approx(base[0]["train/task"])
    assert clip[0]["train/loss"] > clip[0]["train/task"]
    capsys.readouterr()
    args = ["diagnose", str(tmp_path / "mp_gap_clip"), "--against", str(tmp_path / "mp_gap_fusion")]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert all(stage in printed for stage in ("text_fine", "text_final", "fused"))
    diag = json.loads((tmp_path / "mp_gap_clip" / "diagnostics.json").read_text())
    stage_cka = diag["comparison"]["stage_cka"]
    assert list(stage_cka) == ["graph", "text_fine", "text_final", "fused", "head", "projection"]
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in stage_cka.values())


def test_the_graph_tower_alone_runs_beside_the_fusion_model_and_shares_its_stages(tmp_path, capsys):
    """The verdict "does the text add anything": the fusion recipe with text_tower=false, same split."""
    recipe = str(RECIPES / "mp_gap_fusion.yaml")
    assert cli_main(["train", recipe, *SMALL, "--runs-dir", str(tmp_path), "--name", "fusion"]) == 0
    alone = ["model.options.text_tower=false", "objective.clip=null"]
    assert cli_main(["train", recipe, *SMALL, *alone, "--runs-dir", str(tmp_path), "--name", "alone"]) == 0
    split = [json.loads((tmp_path / arm / "split.json").read_text()) for arm in ("fusion", "alone")]
    assert split[0] == split[1]
    history = read_history(tmp_path / "alone" / "history.csv")
    assert "train/clip" not in history[0] and history[0]["train/loss"] == history[0]["train/task"]
    capsys.readouterr()
    for run, other in (("alone", "fusion"), ("fusion", "alone")):  # either way round
        assert cli_main(["diagnose", str(tmp_path / run), "--against", str(tmp_path / other)]) == 0
        diag = json.loads((tmp_path / run / "diagnostics.json").read_text())
        assert list(diag["comparison"]["stage_cka"]) == ["graph", "fused", "head", "projection"]


def test_a_resumed_fusion_run_equals_an_uninterrupted_one(tmp_path):
    recipe = RECIPES / "mp_gap_clip.yaml"
    config, raw = load_config(recipe, SMALL)
    reference = train(config, tmp_path / "ref", raw_config=raw, quiet=True)
    first, _ = load_config(recipe, [*SMALL, "trainer.epochs=1"])
    train(first, tmp_path / "split", quiet=True)
    resumed = train(config, tmp_path / "split", resume=True, override_note=["trainer.epochs=2"], quiet=True)
    assert resumed.test == pytest.approx(reference.test, rel=1e-6, abs=1e-7)


def test_fusion_models_and_paired_data_go_together(tmp_path):
    config, _ = load_config(RECIPES / "mp_gap_fusion.yaml", ["data.options.subsample=8", "model.name=gine"])
    with pytest.raises(ValueError, match="paired graph\\+text datasets a two-tower model"):
        make_model(config, get_dataset("mp_gap", subsample=8))
    config, _ = load_config(RECIPES / "mp_gap_fusion.yaml", ["data.name=blobs", "data.options={}"])
    with pytest.raises(ValueError, match=r"model\.name='fusion' do not fit"):
        make_model(config, get_dataset("blobs"))
    augmented = ["data.options.subsample=8", "trainer.views.augment=[{name: node_mask, p: 0.1}]"]
    config, _ = load_config(RECIPES / "mp_gap_fusion.yaml", augmented)
    with pytest.raises(ValueError, match=r"objective\.clip"):
        train(config, tmp_path / "augmented", quiet=True)
    assert torch.is_tensor(get_dataset("mp_gap", subsample=8).targets)
