"""Your own files from the command line: `table` (numeric features) and `text_csv` (texts and labels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from contrastlab.cli import main as cli_main
from contrastlab.data import get_dataset

TRAIN = {"trainer": {"epochs": 2, "batch_size": 16, "lr": 0.02}}


def _blobs_csv(path, n=90, header="f0,f1,f2,label"):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 3)) + 2.0 * y[:, None]
    names = np.array(["cat", "dog", "eel"])[y]
    lines = [f"{a:.4f},{b:.4f},{c:.4f},{t}" for (a, b, c), t in zip(x, names, strict=True)]
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return x, y


def test_table__a_csv_of_features_trains_from_the_cli(tmp_path):
    _blobs_csv(tmp_path / "mine.csv")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", **TRAIN, "data": {
        "name": "table", "options": {"path": str(tmp_path / "mine.csv"), "target_column": "label"}}}))
    assert cli_main(["train", str(recipe), "--runs-dir", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.5  # three separated classes


def test_table__npz_and_regression_targets(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    np.savez(tmp_path / "t.npz", features=x, y=x @ np.arange(4.0) + 0.5)
    data = get_dataset("table", path=str(tmp_path / "t.npz"), target_column="y")
    assert data.task == "regression" and data.features.shape == (50, 4)
    np.testing.assert_allclose(data.targets.numpy(), x @ np.arange(4.0) + 0.5, rtol=1e-5)


def test_table__a_bad_cell_names_its_row_and_column(tmp_path):
    (tmp_path / "bad.csv").write_text("f0,f1,label\n1.0,2.0,a\n3.0,n/a,b\n")
    with pytest.raises(ValueError, match=r"row 2 of .*bad.csv: column 'f1' holds 'n/a', not a number"):
        get_dataset("table", path=str(tmp_path / "bad.csv"), target_column="label")
    with pytest.raises(ValueError, match=r"has no column\(s\) \['y'\]"):
        get_dataset("table", path=str(tmp_path / "bad.csv"), target_column="y")


def test_text_csv__your_texts_train_from_the_cli(tmp_path, no_network):
    rows = [("a wonderful, moving film", "pos"), ("dull and far too long", "neg")] * 30
    lines = [f'"{t}",{label}' for t, label in rows]
    (tmp_path / "reviews.csv").write_text("review,label\n" + "\n".join(lines) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "txt", **TRAIN, "model": {"name": "transformer",
                                      "options": {"max_length": 16}},
                                      "trainer": {**TRAIN["trainer"], "freeze_all_but_last": 1},
                                      "data": {"name": "text_csv", "options": {
                                          "path": str(tmp_path / "reviews.csv"), "text_column": "review",
                                          "label_column": "label"}}}))  # fmt: skip
    assert cli_main(["train", str(recipe), "--runs-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "txt" / "metrics.json").read_text())["test"]["accuracy"] >= 0.5


def test_text_csv__numeric_targets_train_a_text_regressor(tmp_path, no_network):
    kinds = [("short", 1.5), ("a much longer and wordier sentence", 4.0)]  # the target follows the text
    rows = [(f"{kinds[i % 2][0]} sample {i}", kinds[i % 2][1] + 0.01 * i) for i in range(60)]
    lines = [f'"{t}",{s:.3f}' for t, s in rows]
    (tmp_path / "scores.csv").write_text("text,score\n" + "\n".join(lines) + "\n")
    data = get_dataset("text_csv", path=str(tmp_path / "scores.csv"), text_column="text",
                       label_column="score", task="regression")  # fmt: skip
    assert data.task == "regression" and data.num_classes == 0
    np.testing.assert_allclose(data.targets.numpy(), [s for _, s in rows], rtol=1e-5)
    with pytest.raises(ValueError, match=r"non-integer numbers .* data.options.task=regression"):
        get_dataset("text_csv", path=str(tmp_path / "scores.csv"), text_column="text", label_column="score")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "reg", **TRAIN, "model": {"name": "transformer",
                                      "options": {"max_length": 16}}, "objective": {"task": "mse"},
                                      "trainer": {**TRAIN["trainer"], "freeze_all_but_last": 1,
                                                  "early_stopping": {"monitor": "val/rmse"}},
                                      "data": {"name": "text_csv", "options": {
                                          "path": str(tmp_path / "scores.csv"), "text_column": "text",
                                          "label_column": "score", "task": "regression"}}}))  # fmt: skip
    assert cli_main(["train", str(recipe), "--runs-dir", str(tmp_path)]) == 0
    test = json.loads((tmp_path / "reg" / "metrics.json").read_text())["test"]
    assert set(test) >= {"rmse", "mae"} and all(np.isfinite(v) for v in test.values())


def test_text_csv__a_bad_target_names_its_row(tmp_path):
    (tmp_path / "s.csv").write_text("text,score\nfine,1.0\nalso fine,high\n")
    with pytest.raises(ValueError, match=r"row 2 of .*s.csv: target 'high' is not a number"):
        get_dataset("text_csv", path=str(tmp_path / "s.csv"), text_column="text", label_column="score",
                    task="regression")  # fmt: skip
