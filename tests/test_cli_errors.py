"""Bad input a user types ends in one paragraph naming the argument, the value and what was expected (exit
code 2), with nothing written; a bug keeps its traceback. Each case was a raw traceback before."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import yaml

from contrastlab.cli import main as cli_main
from tests.train.test_trainer import TINY


def _run(tmp_path, capsys, *args):
    code = cli_main(list(args))
    err = capsys.readouterr().err
    return code, err


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**TINY, "trainer": {**TINY["trainer"], "epochs": 1}}))
    return str(path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.options.n_sampels=100", "unknown option 'n_sampels'; did you mean 'n_samples'?"),
        ("data.options.n_samples=abc", "n_samples='abc' is not a valid int"),
        ("trainer.device=banana", "'banana' is not a device"),
        ("trainer.epochs=[1", "is not valid YAML"),
        ("trainer.epochs=!!python/object/apply:os.system [echo]", "is not valid YAML"),
        ("trainer.early_stopping={monitor: val/spearman}", "has no known direction"),
    ],
)
def test_bad_overrides(tmp_path, capsys, recipe, override, expected):
    code, err = _run(tmp_path, capsys, "train", recipe, override, "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()  # nothing written


def _embeddings_files(tmp_path):
    random_pt = tmp_path / "random.pt"
    random_pt.write_bytes(np.random.default_rng(0).bytes(4096))
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"embedding": np.zeros((3, 2))}))
    good = tmp_path / "good.npz"
    np.savez(good, embedding=np.zeros((30, 4)), labels=np.arange(30) % 2)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    not_zip = tmp_path / "text.npz"
    not_zip.write_text("embedding,label\n1,2\n")
    code_object = tmp_path / "code.pt"
    torch.save({"embedding": torch.zeros(3, 2), "f": np.zeros}, code_object)  # needs unpickling code
    return [random_pt, pickled, truncated, not_zip, code_object]


def test_diagnose__unreadable_embeddings_files(tmp_path, capsys):
    for path in _embeddings_files(tmp_path):
        code, err = _run(tmp_path, capsys, "diagnose", "--embeddings", str(path))
        assert code == 2 and "is not a readable embeddings file" in err, (path, err)
        assert "Traceback" not in err
        assert not path.with_name(path.name + ".diagnostics.json").exists()


def _csv_recipe(tmp_path, csv_text: bytes, **options):
    path = tmp_path / "data.csv"
    path.write_bytes(csv_text)
    raw = {**TINY, "data": {"name": "molecule_csv",
                            "options": {"path": str(path), "smiles_column": "smiles", "target_column": "y",
                                        **options}},
           "model": {"name": "gine", "hidden_dims": [8], "embedding_dim": 8, "projection_dim": 8},
           "objective": {"task": "mse"}, "trainer": {"epochs": 1, "batch_size": 2}}  # fmt: skip
    recipe = tmp_path / "csv.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    return str(recipe)


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        (b"smiles,y\n", {}, "has a header but no rows"),
        ("smiles,y,note\nCCO,1.0,caf\xe9\nCCC,2.0,na\xefve\n".encode("latin-1"), {},
         "is not utf-8 text"),
        (b"smiles,y\nCCO,0.5\nCCC,1.5\nCCN,0.5\n", {"task": "classification"}, "cannot be classes"),
        (b"smiles,y\nCCO,0.5\nnot_a_molecule,1.5\n", {}, "on_error: skip"),
        (b"smiles,y,split\nCCO,0.5,train\nCCC,1.5,holdout\nCCN,0.5,test\n", {"split_column": "split"},
         "{'holdout': 1}"),
    ],
)  # fmt: skip
def test_bad_csv_files(tmp_path, capsys, content, options, expected):
    recipe = _csv_recipe(tmp_path, content, **options)
    code, err = _run(tmp_path, capsys, "train", recipe, "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and expected in err and "Traceback" not in err, err
    if "latin-1" in expected or "utf-8" in expected:
        assert "data.options.encoding=latin-1" in err and "data.csv" in err


def test_a_split_the_dataset_lacks_says_how_to_ask_for_a_random_one(tmp_path, capsys, recipe):
    code, err = _run(tmp_path, capsys, "train", recipe, "data.split=dataset", "--runs-dir", str(tmp_path))
    assert code == 2 and "data: {split: random" in err


def test_a_bug_keeps_its_traceback(tmp_path, recipe, monkeypatch):
    import contrastlab.train.build as build

    def broken(*args, **kwargs):
        raise KeyError("an internal key")  # a bug, not the user's doing

    monkeypatch.setattr(build, "make_split", broken)
    with pytest.raises(KeyError, match="an internal key"):
        cli_main(["train", recipe, "--runs-dir", str(tmp_path)])
