"""Residue graphs and classic peptide features against slow oracles written from their definitions."""

from __future__ import annotations

import cmath
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from contrastlab.data.peptides import (
    AMINO_ACIDS,
    RESIDUE_EDGE_FEATURES,
    RESIDUE_FEATURES,
    peptide_features,
    residue_graph,
    residue_problem,
)

# Written out independently of the implementation: Eisenberg consensus hydrophobicity and charge at pH 7.
EISENBERG = {"A": 0.62, "R": -2.53, "N": -0.78, "D": -0.90, "C": 0.29, "Q": -0.85, "E": -0.74, "G": 0.48,
             "H": -0.40, "I": 1.38, "L": 1.06, "K": -1.50, "M": 0.64, "F": 1.19, "P": 0.12, "S": -0.18,
             "T": -0.05, "W": 0.81, "Y": 0.26, "V": 1.08}  # fmt: skip
KYTE_DOOLITTLE = {"A": 1.8, "R": -4.5, "N": -3.5, "D": -3.5, "C": 2.5, "Q": -3.5, "E": -3.5, "G": -0.4,
                  "H": -3.2, "I": 4.5, "L": 3.8, "K": -3.9, "M": 1.9, "F": 2.8, "P": -1.6, "S": -0.8,
                  "T": -0.7, "W": -0.9, "Y": -1.3, "V": 4.2}  # fmt: skip
CHARGE = {"K": 1.0, "R": 1.0, "H": 0.1, "D": -1.0, "E": -1.0}
# Column offsets of the node features (module docstring): one-hot 0-19, then the scales and positions.
KD, EIS, CHG, MASS, POS, NTERM, CTERM, COS, SIN = range(20, 29)


def _random_peptides(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AMINO_ACIDS) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def test_residue_graph__nodes_carry_each_residues_identity_scales_and_place():
    g = residue_graph("gLfKd")  # lower case is read as upper case
    assert g.x.shape == (5, RESIDUE_FEATURES) and g.num_nodes == 5
    assert [AMINO_ACIDS[i] for i in g.x[:, :20].argmax(1).tolist()] == list("GLFKD")
    assert torch.equal(g.x[:, :20].sum(1), torch.ones(5))
    for i, a in enumerate("GLFKD"):
        assert g.x[i, KD].item() == pytest.approx(KYTE_DOOLITTLE[a] / 4.5)
        assert g.x[i, EIS].item() == pytest.approx(EISENBERG[a])
        assert g.x[i, CHG].item() == pytest.approx(CHARGE.get(a, 0.0))
        assert g.x[i, POS].item() == pytest.approx(i / 4)
        angle = math.radians(100 * i)
        wheel = (math.cos(angle), math.sin(angle))
        assert (g.x[i, COS].item(), g.x[i, SIN].item()) == pytest.approx(wheel, abs=1e-6)
    assert g.x[:, NTERM].tolist() == [1, 0, 0, 0, 0] and g.x[:, CTERM].tolist() == [0, 0, 0, 0, 1]
    assert g.x[1, MASS].item() == pytest.approx(113.16 / 200)  # leucine residue


@pytest.mark.parametrize("sequence", _random_peptides(30))
def test_residue_graph__edges_join_exactly_the_residues_one_to_four_apart(sequence):
    g = residue_graph(sequence)
    n = len(sequence)
    expected = Counter((i, j) for i in range(n) for j in range(n) if 1 <= abs(i - j) <= 4)
    seen = Counter(map(tuple, g.edge_index.t().tolist()))
    assert seen == expected  # every pair in both directions, once each
    assert g.edge_attr.shape == (g.edge_index.shape[1], RESIDUE_EDGE_FEATURES)
    assert torch.equal(g.edge_attr.sum(1), torch.ones(g.edge_index.shape[1]))
    gap = (g.edge_index[0] - g.edge_index[1]).abs()
    assert torch.equal(g.edge_attr.argmax(1) + 1, gap)
    # the augmentations' layout: the first direction of every pair, then the same pairs reversed
    half = g.edge_index.shape[1] // 2
    assert torch.equal(g.edge_index[:, :half], g.edge_index[[1, 0], half:])
    assert torch.equal(g.edge_attr[:half], g.edge_attr[half:])


@pytest.mark.parametrize(
    ("text", "words"), [("GLXK", "'X'"), ("", "empty"), ("GL K", "' '"), (None, "not a string")]
)
def test_residue_problem__names_what_is_wrong(text, words):
    problem = residue_problem(text)
    assert problem is not None and words in problem
    with pytest.raises(ValueError, match="sequence="):
        residue_graph(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("sequence", _random_peptides(20, seed=1))
def test_peptide_features__match_counts_and_the_hydrophobic_moment_by_hand(sequence):
    (row,), names = peptide_features([sequence])
    values = dict(zip(names, row, strict=True))
    n = len(sequence)
    for a in AMINO_ACIDS:
        assert values[f"aa:{a}"] == pytest.approx(sequence.count(a) / n)
    pairs = Counter(sequence[i : i + 2] for i in range(n - 1))
    for a in AMINO_ACIDS:
        for b in AMINO_ACIDS:
            assert values[f"dipeptide:{a}{b}"] == pytest.approx(pairs[a + b] / (n - 1) if n > 1 else 0.0)
    assert values["length"] == n
    assert values["mean:charge"] == pytest.approx(sum(CHARGE.get(a, 0.0) for a in sequence) / n)
    assert values["mean:eisenberg"] == pytest.approx(sum(EISENBERG[a] for a in sequence) / n, abs=1e-6)
    wheel = [cmath.exp(1j * math.radians(100 * i)) for i in range(n)]
    moment = abs(sum(EISENBERG[a] * w for a, w in zip(sequence, wheel, strict=True))) / n
    assert values["hydrophobic_moment"] == pytest.approx(moment, abs=1e-6)


def test_peptide_features__a_bad_sequence_is_named_with_its_row():
    with pytest.raises(ValueError, match=r"row 2: sequence='GLB'.*'B'"):
        peptide_features(["GLK", "GLB"])


def test_featurize__residue_graphs_name_a_bad_row_skip_it_on_request_and_refuse_smiles():
    pytest.importorskip("rdkit")
    from contrastlab.data.molecules import InvalidRecordError, featurize, graph_dataset

    with pytest.raises(InvalidRecordError, match=r"row 2 of pep.*'Z'"):
        featurize(["GLK", "GZK"], kind="sequence", graph="residue", source="pep")
    graphs, kept, skipped = featurize(["GLK", "GZK", "KK"], kind="sequence", graph="residue", on_error="skip")
    assert kept == [0, 2] and [s.row for s in skipped] == [1 + 1] and len(graphs) == 2
    with pytest.raises(ValueError, match="graph='residue' is for peptide sequences"):
        featurize(["CCO"], kind="smiles", graph="residue")
    with pytest.raises(ValueError, match="graph='ring'"):
        featurize(["GLK"], kind="sequence", graph="ring")  # type: ignore[arg-type]
    data = graph_dataset("pep", ["GLKK", "KWKL"], [0, 1], "classification", kind="sequence", graph="residue")
    assert (data.num_features, data.num_edge_features) == (RESIDUE_FEATURES, RESIDUE_EDGE_FEATURES)
    batch = data.take(torch.tensor([0, 1]))
    assert batch.x.shape == (8, RESIDUE_FEATURES)
    assert len(data.molecules()) == 2  # the atom view stays available (fingerprint forests)


def test_residue_graphs_survive_every_augmentation_with_their_layout():
    from contrastlab.views.graph import _bond_ids, build_augmentation

    g = residue_graph("GLFKKLLKKLLKKL")
    _, pairs = _bond_ids(g.edge_index)
    assert pairs == g.edge_index.shape[1] // 2  # the fast layout path, not the fallback
    aug = build_augmentation([{"name": "node_mask", "p": 0.3}, {"name": "edge_drop", "p": 0.3}])
    out = aug(g, torch.Generator().manual_seed(0))
    assert out.x.shape[1] == RESIDUE_FEATURES and out.edge_attr.shape[1] == RESIDUE_EDGE_FEATURES
    assert np.isfinite(out.x.numpy()).all()
