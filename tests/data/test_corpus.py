"""The pretraining corpus: every offline molecule once, test molecules of the named datasets left out."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from rdkit import Chem

from contrastlab.data import get_dataset
from contrastlab.train import TrainConfig, train

SOURCES = ["solubility", "freesolv", "freewilson", "moleculeace/CHEMBL2835_Ki"]
SOURCE_DATASETS = [("solubility", {}), ("freesolv", {}), ("freewilson", {}),
                   ("moleculeace", {"target": "CHEMBL2835_Ki"})]  # fmt: skip


def _canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


@pytest.fixture(scope="module")
def every_source_molecule() -> set[str]:
    return {_canonical(s) for name, options in SOURCE_DATASETS for s in get_dataset(name, **options).strings}


@pytest.fixture(scope="module")
def solubility_test() -> set[str]:
    data = get_dataset("solubility")
    return {_canonical(data.strings[i]) for i in data.predefined_split["test"].tolist()}


def test_corpus__each_source_molecule_exactly_once_and_no_other(every_source_molecule):
    corpus = get_dataset("molecule_corpus", sources=SOURCES)
    assert len(corpus.strings) == len(set(corpus.strings))  # no molecule twice
    assert {_canonical(s) for s in corpus.strings} == every_source_molecule  # none lost, none added
    records = sum(len(get_dataset(name, **options)) for name, options in SOURCE_DATASETS)
    assert len(corpus) == len(every_source_molecule) < records
    # Each graph is its molecule's: one node per heavy atom, two directed edges per bond.
    for graph, smiles in list(zip(corpus.graphs, corpus.strings, strict=True))[::97]:
        mol = Chem.MolFromSmiles(smiles)
        assert graph.num_nodes == mol.GetNumAtoms() and graph.edge_index.shape[1] == 2 * mol.GetNumBonds()
    assert corpus.task == "regression" and bool(torch.isnan(corpus.targets).all())


def test_corpus__leaves_out_the_test_molecules_wherever_they_occur(every_source_molecule, solubility_test):
    corpus = get_dataset("molecule_corpus", sources=SOURCES, exclude_test_of=["solubility"])
    kept = set(corpus.strings)
    assert not kept & solubility_test
    assert kept == every_source_molecule - solubility_test  # only they: training molecules stay
    # Some solubility test molecules are also in FreeSolv: left out there too (the invariant is not vacuous).
    freesolv = {_canonical(s) for s in get_dataset("freesolv").strings}
    assert freesolv & solubility_test


def test_corpus__exclude_leaves_out_a_whole_dataset(every_source_molecule):
    corpus = get_dataset("molecule_corpus", sources=SOURCES, exclude=["freesolv"])
    freesolv = {_canonical(s) for s in get_dataset("freesolv").strings}
    assert set(corpus.strings) == every_source_molecule - freesolv


@pytest.mark.parametrize(
    ("options", "message"),
    [({"sources": ["chembl"]}, r"'chembl' is not a molecule source; choose from \['solubility'"),
     ({"sources": ["freewilson"], "exclude_test_of": ["freesolv"]},
      r"exclude_test_of: 'freesolv' has no test split of its own.*exclude: \[freesolv\]"),
     ({"sources": ["moleculeace/CHEMBL0_Ki"]}, r"target='CHEMBL0_Ki' is not a MoleculeACE target"),
     ({"sources": ["freesolv"], "exclude": ["freesolv"]}, r"no molecule left of sources \['freesolv'\]")],
)  # fmt: skip
def test_corpus__bad_options_say_what_to_change(options, message):
    with pytest.raises(ValueError, match=message):
        get_dataset("molecule_corpus", **options)


def _config(task: str) -> TrainConfig:
    return TrainConfig.model_validate({
        "name": "corpus", "data": {"name": "molecule_corpus", "options": {"sources": ["freewilson"]},
                                   "val_fraction": 0.1, "test_fraction": 0.1, "max_rows_per_split": 64},
        "model": {"name": "gine", "hidden_dims": [16], "embedding_dim": 16, "projection_dim": 8},
        "objective": {"task": task, **({"nt_xent": {"weight": 1.0}} if task == "none" else {})},
        "trainer": {"epochs": 1, "batch_size": 32, "views": {"count": 2, "augment": [{"name": "edge_drop"}]},
                    "early_stopping": {"monitor": "epoch", "mode": "max"}},
    })  # fmt: skip


def test_corpus__pretrains_without_labels_and_refuses_a_supervised_task(tmp_path):
    result = train(_config("none"), tmp_path / "pretrain", quiet=True)
    assert len(result.history) == 1 and bool(torch.isfinite(torch.tensor(result.history[0]["train/loss"])))
    metrics = json.loads((tmp_path / "pretrain" / "metrics.json").read_text())
    assert metrics["target_scale"] == {"mean": 0.0, "sd": 1.0}  # not NaN from the missing labels
    with pytest.raises(ValueError, match=r"objective.task='mse' needs a label on every row, but 1017 of "
                                         r"the 1017 targets of dataset 'molecule_corpus' are NaN or infinite "
                                         r"\(the first in row 1\).*objective.task: none"):
        train(_config("mse"), tmp_path / "supervised", quiet=True)


@pytest.mark.slow  # featurizes MoleculeACE's 48,714 records: minutes
def test_corpus__the_default_holds_every_offline_molecule_once():
    corpus = get_dataset("molecule_corpus", exclude_test_of=["solubility", "moleculeace"])
    assert len(corpus) == len(set(corpus.strings)) > 28_000
    solubility = get_dataset("solubility")
    test = {_canonical(solubility.strings[i]) for i in solubility.predefined_split["test"].tolist()}
    assert not set(corpus.strings) & test
