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
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from contrastlab.cli import main as cli_main
from contrastlab.data import get_dataset
from contrastlab.data.peptides import peptide_features
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
    rows = [[sol.strings[i], float(sol.targets[i]), int(i % 3 == 0)] for i in range(0, 1280, 8)]
    path = _csv(tmp_path, rows, ["smiles", "y", "cliff"])
    config = validate_config({"data": {"name": "molecule_csv", "options": {
        "path": path, "smiles_column": "smiles", "target_column": "y", "subset_columns": {"cliff": "cliff"}}}})  # fmt: skip
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
    cliff = np.array([r[2] == "1" for r in records])[split["test"]]  # a named subset is scored on its own
    assert 0 < cliff.sum() < len(cliff)
    expected = float(np.sqrt(np.mean((pred[cliff] - y[split["test"]][cliff]) ** 2)))
    assert metrics["test"]["rmse_cliff"] == pytest.approx(expected, rel=1e-9)
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 160

    table = compare_runs([tmp_path / "rf"])
    assert table.runs[0].test["rmse"] == metrics["test"]["rmse"] and table.runs[0].epochs == 0


def test_descriptor_forest_matches_a_direct_sklearn_fit_on_rdkits_descriptors(tmp_path, capsys):
    from rdkit.Chem import Descriptors

    from contrastlab.experiments.baselines import descriptor_forest

    sol = get_dataset("solubility")
    rows = [[sol.strings[i], float(sol.targets[i])] for i in range(0, 1280, 8)]
    path = _csv(tmp_path, rows, ["smiles", "y"])
    config = validate_config({"name": "sol", "data": {"name": "molecule_csv", "options": {
        "path": path, "smiles_column": "smiles", "target_column": "y"}}})  # fmt: skip
    metrics = descriptor_forest(config, tmp_path / "rf", n_estimators=50, seed=3)
    split = json.loads((tmp_path / "rf" / "split.json").read_text())
    names = [name for name, _ in Descriptors._descList]
    computed = [Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(r[0])) for r in rows]
    raw = np.array([[values[n] for n in names] for values in computed])
    X = np.nan_to_num(np.sign(raw) * np.log1p(np.abs(raw)), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    y = np.array([r[1] for r in rows])
    ref = RandomForestRegressor(n_estimators=50, n_jobs=-1, random_state=3).fit(X[split["train"]], y[split["train"]])
    pred = ref.predict(X[split["test"]])
    assert metrics["test"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - y[split["test"]]) ** 2))), rel=1e-9)
    # molecules get both forests by default; peptides fingerprints and their composition (test below)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: sol\ndata: {{name: molecule_csv, options: {{path: {path}, smiles_column: smiles, "
                      "target_column: y}}\n")  # fmt: skip
    assert cli_main(["baseline", str(recipe), "--trees", "20", "--runs-dir", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "sol_fingerprint_rf: test mae=" in out and "sol_descriptor_rf: test mae=" in out


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
    assert "pep_peptide_rf_seed1: test accuracy=" in out
    metrics = json.loads((tmp_path / "pep_fingerprint_rf_seed0" / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy", "macro_f1", "auroc", "auprc"} and metrics["test"]["auroc"] > 0.6
    assert not (tmp_path / "pep_descriptor_rf_seed0").exists()
    assert cli_main(["baseline", str(recipe), "--kind", "descriptor_rf", "--runs-dir", str(tmp_path)]) == 2
    assert "not computed for peptide sequences" in capsys.readouterr().err

    # the composition forest is sklearn's own forest on features counted here by hand, on the same split
    metrics = json.loads((tmp_path / "pep_peptide_rf_seed0" / "metrics.json").read_text())
    split = json.loads((tmp_path / "pep_peptide_rf_seed0" / "split.json").read_text())
    sequences, y = [r[0] for r in rows], np.array([r[1] for r in rows])
    alphabet = "ACDEFGHIKLMNPQRSTVWY"
    columns = [[s.count(a) / len(s) for a in alphabet] for s in sequences]
    X, _ = peptide_features(sequences)
    assert np.allclose(X[:, :20], columns)
    ref = RandomForestClassifier(n_estimators=30, n_jobs=-1, random_state=0).fit(X[split["train"]], y[split["train"]])
    accuracy = float((ref.predict(X[split["test"]]) == y[split["test"]]).mean())
    assert metrics["test"]["accuracy"] == pytest.approx(accuracy, rel=1e-6)  # stored as float32
    assert cli_main(["baseline", "recipes/solubility_scratch.yaml", "--kind", "peptide_rf",
                     "--runs-dir", str(tmp_path)]) == 2  # fmt: skip
    assert "holds no peptide sequences" in capsys.readouterr().err


def test_a_tensor_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"data.name='blobs' has no molecules to fingerprint"):
        fingerprint_forest(validate_config({}), tmp_path / "rf")


def _text_regression_csv(tmp_path) -> str:
    rows = [[f"{'great ' * (i % 5)}film number {i}", float(i % 5) + 0.1 * (i % 3)] for i in range(120)]
    return _csv(tmp_path, rows, ["text", "score"])


def test_every_task_gets_regression_baselines_when_its_target_is_continuous(tmp_path, capsys):
    path = _text_regression_csv(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: reviews\ndata: {{name: text_csv, options: {{path: {path}, text_column: text, "
                      "label_column: score, task: regression}}\nmodel: {name: transformer, options: "
                      "{max_length: 16}}\n")  # fmt: skip
    assert cli_main(["baseline", str(recipe), "--runs-dir", str(tmp_path)]) == 0  # tfidf and frozen, ridge
    out = capsys.readouterr().out
    assert "reviews_tfidf_lr: test mae=" in out and "reviews_frozen_lr: test mae=" in out
    tfidf = json.loads((tmp_path / "reviews_tfidf_lr" / "metrics.json").read_text())
    assert tfidf["baseline"]["model"] == "ridge" and tfidf["baseline"]["alpha"] in (0.01, 0.1, 1.0, 10.0, 100.0)
    assert tfidf["test"]["rmse"] < 1.0  # the number of "great"s gives the score away


def test_ridge_on_tfidf_matches_a_direct_sklearn_fit_on_the_same_split(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    from contrastlab.experiments.baselines import tfidf_logistic

    path = _text_regression_csv(tmp_path)
    config = validate_config({"data": {"name": "text_csv", "options": {"path": path, "text_column": "text",
                                       "label_column": "score", "task": "regression"}}})  # fmt: skip
    metrics = tfidf_logistic(config, tmp_path / "t")
    split = json.loads((tmp_path / "t" / "split.json").read_text())
    with open(path) as f:
        records = list(csv.reader(f))[1:]
    texts, y = [r[0] for r in records], np.array([float(r[1]) for r in records])
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    vectorizer.fit([texts[i] for i in split["train"]])
    X = vectorizer.transform(texts)
    ridge = Ridge(alpha=metrics["baseline"]["alpha"]).fit(X[split["train"]], y[split["train"]])
    pred = ridge.predict(X[split["test"]])
    assert metrics["test"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - y[split["test"]]) ** 2))), rel=1e-6)


def test_mp_gap_gets_a_composition_forest_on_the_recipe_split(tmp_path, capsys):
    pytest.importorskip("crabnet")
    recipe = "recipes/fusion/mp_gap_fusion.yaml"
    args = ["baseline", recipe, "data.options.subsample=400", "--trees", "50", "--runs-dir", str(tmp_path),
            "--name", "gap"]  # fmt: skip
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "gap_composition_rf: test mae=" in out and "gap_tfidf_lr: test mae=" in out
    metrics = json.loads((tmp_path / "gap_composition_rf" / "metrics.json").read_text())
    assert metrics["baseline"]["features"] > 100  # element fractions and Magpie statistics
    data = get_dataset("mp_gap", subsample=400)
    split = json.loads((tmp_path / "gap_composition_rf" / "split.json").read_text())
    test_y = data.targets[split["test"]].numpy()
    mean_guess = float(np.mean(np.abs(test_y - data.targets[split["train"]].numpy().mean())))
    assert metrics["test"]["mae"] < mean_guess  # better than predicting the training mean


def test_the_composition_forest_reads_the_recipes_element_table(tmp_path, capsys):
    # The graph tower reads mat2vec's vectors (recipes/fusion/mp_gap_graph.yaml); its forest compared it with
    # Magpie's statistics only, so a win could have been the table's and not the network's.
    from contrastlab.experiments.baselines import composition_features

    compositions = [{"Fe": 2.0, "O": 3.0}, {"Na": 1.0, "Cl": 1.0}]
    for table, width in (("magpie", 22), ("mat2vec", 200)):
        features, names = composition_features(compositions, table)
        assert features.shape == (2, 4 + 5 * width) and len(names) == features.shape[1]
        assert names[4] == f"mean:{table}0"
    magpie, _ = composition_features(compositions)
    assert np.allclose(magpie[0, :4], [0.0, 0.4, 0.0, 0.6])  # Cl, Fe, Na, O: fractions first
    args = ["baseline", "recipes/fusion/mp_gap_graph.yaml", "data.options.subsample=300", "--trees", "20",
            "--kind", "composition_rf", "--runs-dir", str(tmp_path), "--name", "gap"]  # fmt: skip
    assert cli_main(args) == 0
    settings = json.loads((tmp_path / "gap_composition_rf" / "metrics.json").read_text())["baseline"]
    assert settings["elements"] == "mat2vec" and settings["features"] > 5 * 200


def test_numeric_features_get_a_linear_baseline(tmp_path, capsys):
    recipe = tmp_path / "b.yaml"
    recipe.write_text("name: blobs\ndata: {name: blobs}\n")
    assert cli_main(["baseline", str(recipe), "--runs-dir", str(tmp_path)]) == 0
    assert "blobs_features_lr: test accuracy=" in capsys.readouterr().out
