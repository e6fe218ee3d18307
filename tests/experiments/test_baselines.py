"""The fingerprint random forest: the recipe's split, sklearn's own predictions, and compare reads it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from sklearn.ensemble import RandomForestRegressor

from contrastlab.cli import main as cli_main
from contrastlab.data import get_dataset
from contrastlab.experiments.baselines import fingerprint_forest
from contrastlab.experiments.compare import compare_runs
from contrastlab.train import validate_config


def _csv(tmp_path, rows, header):
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return str(path)


def test_regression_forest_matches_a_direct_sklearn_fit_on_the_same_split(tmp_path):
    sol = get_dataset("solubility")
    path = _csv(tmp_path, [[sol.strings[i], float(sol.targets[i])] for i in range(0, 1280, 8)], ["smiles", "y"])
    config = validate_config({"data": {"name": "molecule_csv", "options": {"path": path, "smiles_column": "smiles",
                                                                            "target_column": "y"}}})  # fmt: skip
    metrics = fingerprint_forest(config, tmp_path / "rf", n_estimators=50, seed=3)
    split = json.loads((tmp_path / "rf" / "split.json").read_text())
    with open(path) as f:
        records = list(csv.reader(f))[1:]
    smiles, y = [r[0] for r in records], np.array([float(r[1]) for r in records])
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    X = np.stack([gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles])
    ref = RandomForestRegressor(n_estimators=50, n_jobs=-1, random_state=3).fit(X[split["train"]], y[split["train"]])
    pred = ref.predict(X[split["test"]])
    assert metrics["test"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - y[split["test"]]) ** 2))), rel=1e-9)
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 160

    table = compare_runs([tmp_path / "rf"])
    assert table["runs"][0]["test"]["rmse"] == metrics["test"]["rmse"] and table["runs"][0]["epochs"] == 0


def test_peptide_classification_forest_and_the_cli(tmp_path, capsys):
    amp = get_dataset("amp_uniprot")
    rows = [[amp.strings[i], int(amp.targets[i])] for i in list(range(0, 60)) + list(range(5140, 5200))]
    path = _csv(tmp_path, rows, ["sequence", "label"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: pep\ndata: {{name: molecule_csv, options: {{path: {path}, sequence_column: sequence, "
                      "target_column: label, task: classification}}\n")  # fmt: skip
    assert cli_main(["baseline", str(recipe), "--seeds", "2", "--trees", "30", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pep_fingerprint_rf_seed1: test accuracy=" in out and "mean ± sd over seeds: accuracy=" in out
    metrics = json.loads((tmp_path / "pep_fingerprint_rf_seed0" / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy", "macro_f1", "auroc", "auprc"} and metrics["test"]["auroc"] > 0.6


def test_a_tensor_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"data.name='blobs' has no molecules to fingerprint"):
        fingerprint_forest(validate_config({}), tmp_path / "rf")
