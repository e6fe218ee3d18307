"""`hf_dataset`: a Hugging Face dataset on disk (save_to_disk, or CSV/JSON/Parquet files), no network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from contrastlab.cli import main as cli_main
from contrastlab.data import get_dataset

datasets = pytest.importorskip("datasets")  # the hf extra; CI installs it (tests/_no_skips.py)


def _reviews(n: int) -> dict:
    words = ["a wonderful, moving film", "dull and far too long", "an average evening"]
    return {"text": [f"{words[i % 3]} #{i}" for i in range(n)], "label": [i % 3 for i in range(n)]}


def _saved_dict(path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["pos", "neg", "mixed"])})  # fmt: skip
    parts = {name: datasets.Dataset.from_dict(_reviews(n), features=features)
             for name, n in (("train", 30), ("validation", 9), ("test", 12))}  # fmt: skip
    datasets.DatasetDict(parts).save_to_disk(str(path))


def test_a_saved_dataset_dict_keeps_its_class_names_and_its_splits(tmp_path, no_network):
    _saved_dict(tmp_path / "reviews")
    data = get_dataset("hf_dataset", path=str(tmp_path / "reviews"), text_column="text")
    assert data.task == "classification" and data.class_names == ["pos", "neg", "mixed"]  # ClassLabel order
    assert len(data) == 51 and data.targets[:4].tolist() == [0, 1, 2, 0]
    split = data.predefined_split
    assert {k: v.tolist() for k, v in split.items()} == {
        "train": list(range(30)), "val": list(range(30, 39)), "test": list(range(39, 51))}
    assert data.texts[30].endswith("#0")  # the validation split's first row follows train's
    only = get_dataset("hf_dataset", path=str(tmp_path / "reviews"), text_column="text", split="test")
    assert len(only) == 12 and only.predefined_split is None


def test_local_files_are_read_without_the_network(tmp_path, no_network):
    rows = [{"review": t, "score": 0.5 * i} for i, t in enumerate(_reviews(20)["text"])]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = get_dataset("hf_dataset", path=str(tmp_path / "r.jsonl"), text_column="review",
                       label_column="score")
    assert data.task == "regression" and data.targets.dtype.is_floating_point
    np.testing.assert_allclose(data.targets.numpy(), [0.5 * i for i in range(20)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    frame = {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": (np.arange(40) % 2).tolist()}
    datasets.Dataset.from_dict(frame).to_parquet(str(tmp_path / "t.parquet"))
    table = get_dataset("hf_dataset", path=str(tmp_path / "t.parquet"), label_column="y")
    assert table.task == "classification" and table.features.shape == (40, 3)
    np.testing.assert_allclose(table.features.numpy(), x, rtol=1e-6)


def test_bad_records_and_columns_are_named(tmp_path, no_network):
    (tmp_path / "bad.csv").write_text("text,score\nfine,1.0\n,2.0\nalso fine,abc\nfine too,3.0\n")
    with pytest.raises(ValueError, match=r"row 2 of .*bad.csv: empty text"):
        get_dataset("hf_dataset", path=str(tmp_path / "bad.csv"), text_column="text", label_column="score",
                    task="regression")  # fmt: skip
    with pytest.warns(UserWarning, match=r"skipped 2 records: row 2 \(empty text\), row 3 \(target 'abc'"):
        kept = get_dataset("hf_dataset", path=str(tmp_path / "bad.csv"), text_column="text",
                           label_column="score", task="regression", on_error="skip")  # fmt: skip
    assert kept.texts == ["fine", "fine too"] and kept.targets.tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match=r"no column\(s\) \['label'\]; its columns are \['text', 'score'\]"):
        get_dataset("hf_dataset", path=str(tmp_path / "bad.csv"), text_column="text")
    with pytest.raises(ValueError, match=r"expected a save_to_disk directory or a file .* ending in"):
        get_dataset("hf_dataset", path=str(tmp_path / "bad.txt"))
    datasets.Dataset.from_dict({"name": ["a", "b"], "y": [0, 1]}).to_parquet(str(tmp_path / "words.parquet"))
    with pytest.raises(ValueError, match=r"column 'name' is not numeric .* or give text_column"):
        get_dataset("hf_dataset", path=str(tmp_path / "words.parquet"), label_column="y")
    with pytest.raises(FileNotFoundError, match="no such file"):
        get_dataset("hf_dataset", path=str(tmp_path / "absent.csv"))


def test_a_saved_dataset_trains_from_the_cli_on_its_own_split(tmp_path, no_network):
    rng = np.random.default_rng(2)
    y = np.arange(120) % 3
    x = rng.normal(size=(120, 4)) + 2.0 * y[:, None]
    parts = {name: datasets.Dataset.from_dict({**{f"f{j}": x[rows, j] for j in range(4)}, "label": y[rows]})
             for name, rows in (("train", slice(0, 80)), ("validation", slice(80, 100)),
                                ("test", slice(100, 120)))}  # fmt: skip
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "blobs"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "hf", "data": {"name": "hf_dataset", "split": "dataset",
                                      "options": {"path": str(tmp_path / "blobs")}},
                                      "trainer": {"epochs": 2, "batch_size": 16, "lr": 0.02}}))  # fmt: skip
    assert cli_main(["train", str(recipe), "--runs-dir", str(tmp_path)]) == 0
    split = json.loads((tmp_path / "hf" / "split.json").read_text())
    assert split == {"train": list(range(80)), "val": list(range(80, 100)), "test": list(range(100, 120))}
    assert json.loads((tmp_path / "hf" / "metrics.json").read_text())["test"]["accuracy"] > 0.5
