"""Every shipped recipe trains from the CLI (one short epoch on a few rows of its real dataset), and every
built-in dataset loads. A recipe no test loads is a recipe that breaks unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from contrastlab.cli import main as cli_main
from contrastlab.data import get_dataset, list_datasets

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL = sorted(p.relative_to(RECIPES).as_posix() for p in RECIPES.rglob("*.yaml"))
#: Recipes that start from another recipe's run (model.init_from), and the recipe that makes it.
PRETRAINED_BY = {
    "amp_finetune.yaml": "amp_simclr.yaml",
    "solubility_finetune.yaml": "solubility_simclr.yaml",
    "identity_finetune.yaml": "identity_pretrain.yaml",
    "identity_pose.yaml": "identity_pretrain.yaml",
}
SMALL = ["trainer.epochs=1", "data.max_rows_per_split=48", "trainer.batch_size=16",
         "trainer.sampler.m_per_class=2"]
#: Recipes whose dataset takes minutes to build in full: their smoke run reads a small part of it.
SMALL_DATA = {
    # Featurizing MoleculeACE's 48,714 records takes minutes; the corpus itself is tested in tests/data.
    "molecule_corpus_simclr.yaml": ["data.options.sources=[freewilson, moleculeace/CHEMBL2835_Ki]",
                                    "data.options.exclude_test_of=[solubility, moleculeace/CHEMBL2835_Ki]"],
}


def _train(recipe: str, runs: Path, name: str, extra: list[str]) -> dict:
    args = ["train", str(RECIPES / recipe), *SMALL, *extra, "--runs-dir", str(runs), "--name", name]
    assert cli_main(args) == 0, recipe
    return json.loads((runs / name / "metrics.json").read_text())


@pytest.mark.parametrize("recipe", ALL)
def test_every_recipe_trains_from_the_cli(tmp_path, recipe, no_network):
    extra = []
    if recipe in PRETRAINED_BY:
        source = PRETRAINED_BY[recipe]
        pose = ["data.options.pose_degrees=30", "objective.auxiliary={weight: 0.0}"]
        pose = pose if "pose" in recipe else []
        _train(source, tmp_path, "pretrained", pose)
        extra.append(f"model.init_from={tmp_path / 'pretrained'}")
    metrics = _train(recipe, tmp_path, "run", extra + SMALL_DATA.get(recipe, []))
    assert metrics["epochs_run"] == 1 and metrics["final"]["skipped_steps"] == 0
    assert metrics["final"]["train/loss"] == metrics["final"]["train/loss"]  # trained: a finite loss
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["config"]
    if recorded["objective"]["task"] != "none":  # pretraining recipes have no task metrics
        assert metrics["test"] and all(v == v for v in metrics["test"].values())  # present, not NaN


DATASET_OPTIONS = {
    "moleculeace": {"target": "CHEMBL2835_Ki"},
    "molecule_csv": None,  # the user's own file: tests/data covers it
    "table": None,  # likewise (tests/data/test_tables.py)
    "text_csv": None,  # likewise
    "hf_dataset": None,  # likewise (tests/data/test_hf.py)
    "rotten_tomatoes": {"subsample": 200},
    "tweets_sentiment": {"subsample": 200},
    "parliament": {"min_speeches": 50},
    "mp_gap": {"subsample": 200},
    "molecules_text": {"dataset": "solubility"},
    "molecule_corpus": {"sources": ["freewilson", "moleculeace/CHEMBL2835_Ki"],
                        "exclude_test_of": ["solubility"]},
    "fashion_mnist": {"train_per_class": 20, "test_per_class": 10},
}


@pytest.mark.parametrize("info", list_datasets(), ids=lambda info: info.name)
def test_every_built_in_dataset_loads(info, no_network):
    options = DATASET_OPTIONS.get(info.name, {})
    if options is None:
        return
    assert info.installed(), f"{info.name}: {info.requires}"
    data = get_dataset(info.name, **options)
    assert len(data.targets) > 0 and data.task == info.task
    if info.task == "classification":
        assert data.num_classes >= 2
