"""Featurization checked by hand on small molecules, errors with row numbers, the cache, and CSV input."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from rdkit import Chem

import contrastlab.data.molecules as molecules
from contrastlab.data.molecules import (
    ATOM_FEATURES,
    BOND_FEATURES,
    InvalidRecordError,
    featurize,
    graph_dataset,
    sequence_to_graph,
    smiles_to_graph,
)
from contrastlab.data.sources import read_molecule_csv

# Column of each feature, written out independently of the implementation's offsets.
ELEMENT = {"C": 0, "N": 1, "O": 2, "S": 3, "F": 4, "Cl": 5, "Br": 6, "I": 7, "P": 8, "B": 9, "Si": 10, "other": 11}
DEGREE = 12  # + degree (0..4, 5 = 5+)
CHARGE = 18  # + charge + 2 for charge in -2..2
CHIRAL = {"none": 23, "cw": 24, "ccw": 25, "other": 26}
HYDROGENS = 27  # + min(H, 3)
HYBRID = {"sp": 31, "sp2": 32, "sp3": 33, "sp3d": 34, "other": 35}
AROMATIC, MASS = 36, 37
BOND = {"single": 0, "double": 1, "triple": 2, "aromatic": 3, "other": 4}
CONJUGATED, RING = 5, 6
STEREO = {"none": 7, "any": 8, "z": 9, "e": 10, "cis": 11, "trans": 12, "atrop": 13}


def onehot_atom(element, degree, charge, chiral, hs, hybrid, aromatic, mass):
    v = torch.zeros(ATOM_FEATURES)
    for col in (ELEMENT[element], DEGREE + degree, CHARGE + charge + 2, CHIRAL[chiral], HYDROGENS + hs, HYBRID[hybrid]):
        v[col] = 1.0
    v[AROMATIC] = float(aromatic)
    v[MASS] = mass / 100
    return v


def onehot_bond(kind, conjugated, ring, stereo="none"):
    v = torch.zeros(BOND_FEATURES)
    v[BOND[kind]] = 1.0
    v[CONJUGATED], v[RING] = float(conjugated), float(ring)
    v[STEREO[stereo]] = 1.0
    return v


def test_benzene__six_aromatic_carbons_and_twelve_directed_aromatic_bonds():
    g = smiles_to_graph("c1ccccc1")
    assert g.x.shape == (6, 38) and g.edge_index.shape == (2, 12) and g.edge_attr.shape == (12, 14)
    expected = onehot_atom("C", 2, 0, "none", 1, "sp2", True, 12.011)
    torch.testing.assert_close(g.x, expected.expand(6, -1))
    torch.testing.assert_close(g.edge_attr, onehot_bond("aromatic", True, True).expand(12, -1))
    # every bond appears in both directions
    pairs = {tuple(e) for e in g.edge_index.t().tolist()}
    assert all((b, a) in pairs for a, b in pairs)


def test_ethanol__carbons_and_the_hydroxyl_oxygen():
    g = smiles_to_graph("CCO")
    torch.testing.assert_close(g.x[0], onehot_atom("C", 1, 0, "none", 3, "sp3", False, 12.011))
    torch.testing.assert_close(g.x[1], onehot_atom("C", 2, 0, "none", 2, "sp3", False, 12.011))
    torch.testing.assert_close(g.x[2], onehot_atom("O", 1, 0, "none", 1, "sp3", False, 15.999))
    torch.testing.assert_close(g.edge_attr, onehot_bond("single", False, False).expand(4, -1))


def test_charged_atoms__ammonium_and_carboxylate():
    ammonium = smiles_to_graph("C[N+](C)(C)C")
    torch.testing.assert_close(ammonium.x[1], onehot_atom("N", 4, 1, "none", 0, "sp3", False, 14.007))
    acetate = smiles_to_graph("CC(=O)[O-]")
    assert acetate.x[3, CHARGE + 1] == 1.0 and acetate.x[3, ELEMENT["O"]] == 1.0
    # charges beyond ±1 share the outer columns
    assert smiles_to_graph("[O-2]").x[0, CHARGE] == 1.0


def test_chirality_and_double_bond_stereo():
    cw = smiles_to_graph("N[C@@H](C)C(=O)O").x[1]
    ccw = smiles_to_graph("N[C@H](C)C(=O)O").x[1]
    assert Chem.MolFromSmiles("N[C@@H](C)C(=O)O").GetAtomWithIdx(1).GetChiralTag() == Chem.ChiralType.CHI_TETRAHEDRAL_CW
    assert cw[CHIRAL["cw"]] == 1.0 and ccw[CHIRAL["ccw"]] == 1.0
    assert cw[CHIRAL["none"]] == 0.0
    trans = smiles_to_graph("F/C=C/F")
    double = [i for i in range(trans.edge_attr.shape[0]) if trans.edge_attr[i, BOND["double"]] == 1.0]
    assert len(double) == 2
    assert all(trans.edge_attr[i, STEREO["e"]] == 1.0 for i in double)


def test_rare_elements_and_hypervalent_atoms_use_other_columns():
    g = smiles_to_graph("[Se]=C=[Se]")
    assert g.x[0, ELEMENT["other"]] == 1.0
    sf6 = smiles_to_graph("FS(F)(F)(F)(F)F")
    assert sf6.x[1, DEGREE + 5] == 1.0 and sf6.x[1, HYBRID["sp3d"]] == 1.0


def test_peptide__dipeptide_has_the_heavy_atoms_of_glycyl_alanine():
    g = sequence_to_graph("GA")  # C5H10N2O3: 10 heavy atoms, 9 bonds
    assert g.num_nodes == 10 and g.edge_index.shape[1] == 18
    assert int(g.x[:, ELEMENT["N"]].sum()) == 2 and int(g.x[:, ELEMENT["O"]].sum()) == 3


@pytest.mark.parametrize(("fn", "text"), [(smiles_to_graph, "C1CC"), (smiles_to_graph, ""), (sequence_to_graph, "GXB")])
def test_invalid_strings_raise_naming_the_string(fn, text):
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        fn(text)


def test_featurize__raise_names_the_row_and_skip_reports_every_skipped_row():
    strings = ["CCO", "not-a-smiles", "c1ccccc1", "C1CC"]
    with pytest.raises(InvalidRecordError, match=r"row 2 of demo: cannot read 'not-a-smiles'"):
        featurize(strings, source="demo", cache=False)
    graphs, kept, skipped = featurize(strings, on_error="skip", cache=False)
    assert kept == [0, 2] and len(graphs) == 2
    assert [(s.row, s.text) for s in skipped] == [(2, "not-a-smiles"), (4, "C1CC")]
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 records: row 2 \('not-a-smiles'"):
        data = graph_dataset("demo", strings, [1.0, 2.0, 3.0, 4.0], "regression", on_error="skip")
    assert data.targets.tolist() == [1.0, 3.0] and data.strings == ["CCO", "c1ccccc1"]


def test_featurize__cache_is_read_back_and_keyed_by_content(monkeypatch):
    first, _, _ = featurize(["CCO", "CCN"])
    monkeypatch.setattr(molecules, "mol_to_graph", lambda mol: pytest.fail("featurized again"))
    again, _, _ = featurize(["CCO", "CCN"])
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_attr, b.edge_attr)
    with pytest.raises(pytest.fail.Exception, match="featurized again"):
        featurize(["CCO", "CCC"])  # different content: a new key, featurized afresh


def _squash(value):
    return math.copysign(math.log1p(abs(value)), value)


def test_rdkit_descriptors__each_column_is_rdkits_own_value_squashed_in_the_rows_order():
    from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors

    smiles = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "C[N+](C)(C)CC(=O)[O-]"]
    got = molecules.rdkit_descriptors(smiles)
    names = [name for name, _ in Descriptors._descList]
    assert got.shape == (4, len(names)) and got.dtype == torch.float32 and torch.isfinite(got).all()
    oracle = {"MolLogP": Crippen.MolLogP, "MolWt": Descriptors.MolWt, "TPSA": rdMolDescriptors.CalcTPSA,
              "NumHDonors": Lipinski.NumHDonors, "RingCount": rdMolDescriptors.CalcNumRings}
    for i, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text)
        for name, fn in oracle.items():
            assert got[i, names.index(name)].item() == pytest.approx(_squash(fn(mol)), rel=1e-5, abs=1e-6), name
    assert got[0, names.index("MolLogP")] < 0  # ethanol's logP is negative: the sign is kept
    assert torch.equal(molecules.rdkit_descriptors(smiles[::-1]), got.flip(0))


def test_rdkit_descriptors__uncomputable_values_become_zero_and_a_bad_row_is_named(monkeypatch):
    from rdkit.Chem import Descriptors

    names = [name for name, _ in Descriptors._descList]
    odd = {names[0]: float("nan"), names[1]: float("inf"), names[2]: -float("inf"), names[3]: 1e30}
    monkeypatch.setattr(Descriptors, "CalcMolDescriptors",
                        lambda mol, missingVal=None: {n: odd.get(n, -2.0) for n in names})  # fmt: skip
    row = molecules.rdkit_descriptors(["CC"], cache=False)[0]
    assert row[:3].tolist() == [0.0, 0.0, 0.0]
    assert row[3].item() == pytest.approx(_squash(1e30)) and row[4].item() == pytest.approx(_squash(-2.0))
    with pytest.raises(InvalidRecordError, match="row 2"):
        molecules.rdkit_descriptors(["CC", "C1CC"], cache=False)


def test_rdkit_descriptors__cache_is_read_back_and_keyed_by_content(monkeypatch):
    from rdkit.Chem import Descriptors

    first = molecules.rdkit_descriptors(["CCO", "CCN"])
    monkeypatch.setattr(Descriptors, "CalcMolDescriptors", lambda *a, **k: pytest.fail("computed again"))
    assert torch.equal(molecules.rdkit_descriptors(["CCO", "CCN"]), first)
    with pytest.raises(pytest.fail.Exception, match="computed again"):
        molecules.rdkit_descriptors(["CCO", "CCC"])


def test_molecule_descriptors__each_kind_is_its_own_columns_in_the_order_asked():
    from rdkit.Chem import rdFingerprintGenerator

    smiles = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "CCCCCCCCCC"]
    got = molecules.molecule_descriptors(smiles, ["morgan_count", "rdkit", "morgan"])
    rdkit = molecules.rdkit_descriptors(smiles)
    assert got.shape == (4, 2048 + rdkit.shape[1] + 2048) and got.dtype == torch.float32
    assert torch.equal(got[:, 2048:-2048], rdkit)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)  # RDKit's own, per molecule
    for i, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text)
        bits, counts = generator.GetFingerprintAsNumPy(mol), generator.GetCountFingerprintAsNumPy(mol)
        assert got[i, -2048:].tolist() == bits.astype(float).tolist()
        torch.testing.assert_close(got[i, :2048], torch.log1p(torch.tensor(counts, dtype=torch.float32)))
    assert got[3, :2048].max() > math.log(2)  # decane repeats its CH2 environments: counts, not bits
    assert torch.equal(molecules.molecule_descriptors(smiles[::-1], ["morgan"]), got[:, -2048:].flip(0))


@pytest.mark.parametrize("kinds", [[], ["morgan", "morgan"], ["ecfp"], ["rdkit", "Morgan"], 3])
def test_molecule_descriptors__refuses_kinds_it_does_not_know_or_repeats(kinds):
    with pytest.raises(ValueError, match=r"expected one of \['rdkit', 'morgan', 'morgan_count', 'peptide'\]"):
        molecules.molecule_descriptors(["CCO"], kinds)


def test_molecule_descriptors__each_kind_only_for_its_own_strings():
    with pytest.raises(ValueError, match=r"\['peptide'\] are not computed for small molecules"):
        molecules.molecule_descriptors(["CCO"], ["rdkit", "peptide"])
    with pytest.raises(ValueError, match=r"\['morgan'\] are not computed for peptide sequences.*\['peptide'\]"):
        molecules.molecule_descriptors(["GLK"], ["morgan"], strings="sequence")
    peptides = graph_dataset("pep", ["GLKK", "KWKLF"], [0, 1], "classification", kind="sequence")
    with pytest.raises(ValueError, match="descriptors of dataset 'pep'='rdkit'"):
        peptides.add_descriptors("rdkit")
    from contrastlab.data.peptides import peptide_features

    assert peptides.add_descriptors("peptide") == 426
    assert torch.equal(peptides.descriptors, torch.from_numpy(peptide_features(["GLKK", "KWKLF"])[0]).float())


def test_molecule_descriptors__a_bad_row_is_named():
    with pytest.raises(InvalidRecordError, match="row 3"):
        molecules.molecule_descriptors(["CC", "CCO", "C1CC"], ["morgan"])


def test_featurize__a_cached_bad_row_still_raises():
    featurize(["CC", "C1CC"], on_error="skip")
    with pytest.raises(InvalidRecordError, match="row 2"):
        featurize(["CC", "C1CC"])


def test_read_molecule_csv__targets_splits_and_row_numbered_errors(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("smiles,activity,part\nCCO,1.5,train\nc1ccccc1,2.5,test\nCCN,3.0,train\n")
    data = read_molecule_csv(path, smiles_column="smiles", target_column="activity", split_column="part")
    assert len(data) == 3 and data.targets.tolist() == [1.5, 2.5, 3.0]
    assert data.predefined_split["train"].tolist() == [0, 2] and data.predefined_split["test"].tolist() == [1]
    with pytest.raises(ValueError, match=r"has no column\(s\) \['y'\]; its columns are \['smiles', 'activity', 'part'\]"):
        read_molecule_csv(path, smiles_column="smiles", target_column="y")
    path.write_text("smiles,activity\nCCO,1.5\nCCN,high\n")
    with pytest.raises(ValueError, match=r"row 2 of .*mols.csv: column 'activity' holds 'high', not a number"):
        read_molecule_csv(path, smiles_column="smiles", target_column="activity")
    words = read_molecule_csv(path, smiles_column="smiles", target_column="activity", task="classification")
    assert words.targets.tolist() == [0, 1]  # sorted label words: "1.5" < "high"


def test_read_molecule_csv__subset_columns_follow_the_kept_rows_and_name_a_bad_flag(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("smiles,y,cliff\nCCO,1.5,1\nnot-a-smiles,2.0,1\nCCN,3.0,0\nc1ccccc1,2.5,true\n")
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        data = read_molecule_csv(path, smiles_column="smiles", target_column="y",
                                 subset_columns={"cliff": "cliff"}, on_error="skip")  # fmt: skip
    assert data.strings == ["CCO", "CCN", "c1ccccc1"] and data.subsets["cliff"].tolist() == [True, False, True]
    path.write_text("smiles,y,cliff\nCCO,1.5,1\nCCN,3.0,yes\n")
    with pytest.raises(ValueError, match=r"row 2 of .*mols.csv: column 'cliff' holds 'yes', not a flag"):
        read_molecule_csv(path, smiles_column="smiles", target_column="y", subset_columns={"cliff": "cliff"})


def test_take__batches_graphs_and_applies_a_transform():
    data = graph_dataset("t", ["CCO", "c1ccccc1", "CN"], [0.0, 1.0, 2.0], "regression")
    batch = data.take(torch.tensor([2, 0]))
    assert batch.num_graphs == 2 and batch.x.shape == (5, 38)
    assert batch.batch.tolist() == [0, 0, 1, 1, 1]

    def zero(graph, generator):
        return graph.__class__(x=graph.x * 0, edge_index=graph.edge_index, edge_attr=graph.edge_attr)

    assert float(data.take(torch.tensor([1]), zero).x.abs().sum()) == 0.0


def test_cache__a_truncated_entry_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    # Seen failing before the fix: a truncated cache file broke the dataset for good (an unpickling error).
    monkeypatch.setenv("CONTRASTLAB_CACHE", str(tmp_path))
    smiles = ["CCO", "c1ccccc1O", "CC(=O)N"]
    graphs, kept, _ = molecules.featurize(smiles)
    (entry,) = (tmp_path / "graphs").iterdir()
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match="could not be read"):
        again, kept_again, _ = molecules.featurize(smiles)
    assert kept_again == kept and all(torch.equal(a.x, b.x) for a, b in zip(again, graphs, strict=True))
    assert [p.name for p in (tmp_path / "graphs").iterdir()] == [entry.name]  # rewritten, no leftovers
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        molecules.featurize(smiles)  # readable again: no warning
