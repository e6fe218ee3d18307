"""data.split=scaffold: MoleculeNet's scaffold split, checked against deepchem's documented example and by
its invariants on a real dataset, and used by runs and baselines alike."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from contrastlab.data.splits import scaffold_split

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")


def _scaffolds(smiles):
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    scaffold = MurckoScaffold.MurckoScaffoldSmiles
    return [scaffold(mol=Chem.MolFromSmiles(s), includeChirality=False) for s in smiles]


def test_deepchems_documented_example():
    # deepchem's ScaffoldSplitter docstring: train_test_split (0.8 / 0.2) keeps these five in train
    smiles = ["CC(C)Cl", "CCC(C)CO", "CCCCCCCO", "CCCCCCCC(=O)OC", "c3ccc2nc1ccccc1cc2c3",
              "Nc2cccc3nc1ccccc1cc23", "C1CCCCCC1"]  # fmt: skip
    # deepchem's train_test_split is split(frac_train=0.8, frac_valid=0, frac_test=0.2); val must be > 0
    # here, and a tiny val changes nothing at seven molecules: every group lands as it does there
    parts = scaffold_split(_scaffolds(smiles), val_fraction=1e-9, test_fraction=0.2)
    assert [smiles[i] for i in parts["train"]] == ["CC(C)Cl", "CCC(C)CO", "CCCCCCCO", "CCCCCCCC(=O)OC",
                                                   "C1CCCCCC1"]  # fmt: skip
    assert parts["val"].numel() == 0


@pytest.mark.parametrize("fractions", [(0.1, 0.1), (0.15, 0.15), (0.2, 0.0)])
def test_invariants_on_freesolv(fractions):
    from contrastlab.data import get_dataset

    data = get_dataset("freesolv")
    scaffolds = data.scaffolds()
    val_fraction, test_fraction = fractions
    parts = scaffold_split(scaffolds, val_fraction=val_fraction, test_fraction=test_fraction)
    rows = sorted(i for p in parts.values() for i in p.tolist())
    assert rows == list(range(len(data)))  # every molecule once
    owner = {}
    for name, part in parts.items():
        for i in part.tolist():
            assert owner.setdefault(scaffolds[i], name) == name, "a scaffold in two parts"
    n = len(data)
    assert len(parts["train"]) <= (1 - val_fraction - test_fraction) * n
    assert len(parts["val"]) <= (1 - test_fraction) * n  # (train may take small groups after val, as in
    # deepchem, so train + val is not bounded by the cut at the end)
    # the greedy fill stops short of its cut by less than the largest group (else that group would fit)
    largest = max(Counter(scaffolds).values())
    assert len(parts["train"]) > (1 - val_fraction - test_fraction) * n - largest

def test_runs_and_baselines_use_the_same_scaffold_split(tmp_path):
    from contrastlab.experiments.baselines import fingerprint_forest
    from contrastlab.train import train, validate_config

    raw = {"name": "s", "data": {"name": "freesolv", "split": "scaffold", "val_fraction": 0.1,
                                 "test_fraction": 0.1, "max_rows_per_split": None},
           "model": {"name": "gine", "hidden_dims": [16], "embedding_dim": 16, "projection_dim": 8},
           "objective": {"task": "mse"}, "trainer": {"epochs": 1, "batch_size": 64}}  # fmt: skip
    config = validate_config(raw)
    train(config, tmp_path / "run", progress=False, quiet=True)
    fingerprint_forest(config, tmp_path / "rf", n_estimators=10)
    run_split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert run_split == json.loads((tmp_path / "rf" / "split.json").read_text())
    from contrastlab.data import get_dataset

    expected = scaffold_split(get_dataset("freesolv").scaffolds(), val_fraction=0.1, test_fraction=0.1)
    assert run_split == {k: v.tolist() for k, v in expected.items()}


def test_a_dataset_without_molecules_is_refused(tmp_path):
    from contrastlab.train import train, validate_config

    with pytest.raises(ValueError, match=r"data.split=scaffold needs molecules; dataset 'blobs' has none"):
        train(validate_config({"data": {"split": "scaffold"}}), tmp_path / "r", progress=False, quiet=True)
