"""Pretrain then fine-tune from the CLI on every built-in molecule dataset (one short epoch each; slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from contrastlab.cli import main as cli_main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SMALL = ["model.hidden_dims=[16, 16]", "model.embedding_dim=16", "model.projection_dim=8", "trainer.epochs=1"]
CASES = [
    ("solubility", "solubility", []),
    ("freesolv", "solubility", ["data.split=random"]),
    ("moleculeace", "solubility", ["data.options={target: CHEMBL2835_Ki}"]),
    ("freewilson", "solubility", ["data.split=random"]),
    ("amp_uniprot", "amp", []),
]


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "family", "extra"), CASES, ids=[c[0] for c in CASES])
def test_pretrain_and_fine_tune_from_the_cli(tmp_path, dataset, family, extra):
    runs = ["--runs-dir", str(tmp_path)]
    common = [f"data.name={dataset}", *extra, *SMALL]
    assert cli_main(["train", str(RECIPES / f"{family}_simclr.yaml"), *common, *runs, "--name", "pre"]) == 0
    init = f"model.init_from={tmp_path / 'pre'}"
    finetune = str(RECIPES / f"{family}_finetune.yaml")
    assert cli_main(["train", finetune, *common, init, *runs, "--name", "ft"]) == 0
    test = json.loads((tmp_path / "ft" / "metrics.json").read_text())["test"]
    assert test and all(v == v for v in test.values())  # present and not NaN
