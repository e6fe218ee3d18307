"""One molecule as a graph: ``smiles_to_graph`` turns a SMILES string into a ``torch_geometric.data.Data``
with 38 atom features and 14 bond features per directed edge (both directions of every bond), the layout the
peptide study describes:

atom (38)
    element one-hot (C, N, O, S, F, Cl, Br, I, P, B, Si, other) 12 · degree (0-4, 5+) 6 ·
    formal charge (≤-2, -1, 0, +1, ≥+2) 5 · chirality (none, CW, CCW, other) 4 · total H (0, 1, 2, 3+) 4 ·
    hybridization (SP, SP2, SP3, SP3D/SP3D2, other) 5 · aromatic 1 · mass / 100 1
bond (14)
    type (single, double, triple, aromatic, other) 5 · conjugated 1 · in ring 1 ·
    stereo (none, any, Z, E, cis, trans, atropisomer) 7

``sequence_to_graph`` does the same for a peptide (one-letter code) through RDKit's ``MolFromSequence``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from rdkit import Chem, rdBase
from torch_geometric.data import Data

__all__ = ["ATOM_FEATURES", "BOND_FEATURES", "FEATURIZER_VERSION", "InvalidRecordError", "mol_to_graph",
           "sequence_to_graph", "smiles_to_graph"]  # fmt: skip

ATOM_FEATURES = 38
BOND_FEATURES = 14
#: Bumped whenever the features change, so stale caches are never read.
FEATURIZER_VERSION = 1
_ELEMENTS = {s: i for i, s in enumerate(["C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "B", "Si"])}
_HT = Chem.rdchem.HybridizationType
_HYBRIDIZATION = {_HT.SP: 0, _HT.SP2: 1, _HT.SP3: 2, _HT.SP3D: 3, _HT.SP3D2: 3}
_CT = Chem.rdchem.ChiralType
_CHIRALITY = {_CT.CHI_UNSPECIFIED: 0, _CT.CHI_TETRAHEDRAL_CW: 1, _CT.CHI_TETRAHEDRAL_CCW: 2}
_BT = Chem.rdchem.BondType
_BOND_TYPE = {_BT.SINGLE: 0, _BT.DOUBLE: 1, _BT.TRIPLE: 2, _BT.AROMATIC: 3}
_BS = Chem.rdchem.BondStereo
_STEREO = {_BS.STEREONONE: 0, _BS.STEREOANY: 1, _BS.STEREOZ: 2, _BS.STEREOE: 3, _BS.STEREOCIS: 4,
           _BS.STEREOTRANS: 5, _BS.STEREOATROPCW: 6, _BS.STEREOATROPCCW: 6}  # fmt: skip

# Column offsets of each block in the atom vector.
_A_ELEM, _A_DEG, _A_CHG, _A_CHI, _A_H, _A_HYB, _A_AROM, _A_MASS = 0, 12, 18, 23, 27, 31, 36, 37
_B_TYPE, _B_CONJ, _B_RING, _B_STEREO = 0, 5, 6, 7


class InvalidRecordError(ValueError):
    """A record that cannot be featurized; ``row`` is its 1-based position among the data records."""

    def __init__(self, row: int, text: str, reason: str, source: str = "") -> None:
        self.row, self.text, self.reason = row, text, reason
        where = f" of {source}" if source else ""
        super().__init__(
            f"row {row}{where}: cannot read {text!r}: {reason} (to leave such rows out and list them, set "
            "on_error: skip, e.g. data.options.on_error=skip)"
        )


def mol_to_graph(mol: Chem.Mol) -> Data:
    """The featurized graph of an RDKit molecule (hydrogens implicit)."""
    atoms = mol.GetAtoms()
    n = mol.GetNumAtoms()
    # One column index per feature block and atom, then a single scatter of ones.
    cols = np.empty((n, 7), dtype=np.int64)
    mass = np.empty(n, dtype=np.float32)
    for i, a in enumerate(atoms):
        charge = a.GetFormalCharge()
        cols[i, 0] = _A_ELEM + _ELEMENTS.get(a.GetSymbol(), 11)
        cols[i, 1] = _A_DEG + min(a.GetDegree(), 5)
        cols[i, 2] = _A_CHG + min(max(charge, -2), 2) + 2
        cols[i, 3] = _A_CHI + _CHIRALITY.get(a.GetChiralTag(), 3)
        cols[i, 4] = _A_H + min(a.GetTotalNumHs(), 3)
        cols[i, 5] = _A_HYB + _HYBRIDIZATION.get(a.GetHybridization(), 4)
        cols[i, 6] = _A_AROM if a.GetIsAromatic() else -1
        mass[i] = a.GetMass() / 100.0
    x = np.zeros((n, ATOM_FEATURES), dtype=np.float32)
    rows = np.repeat(np.arange(n), 7)
    flat = cols.reshape(-1)
    keep = flat >= 0
    x[rows[keep], flat[keep]] = 1.0
    x[:, _A_MASS] = mass

    m = mol.GetNumBonds()
    bcols = np.empty((m, 4), dtype=np.int64)
    ends = np.empty((m, 2), dtype=np.int64)
    for j, b in enumerate(mol.GetBonds()):
        ends[j] = (b.GetBeginAtomIdx(), b.GetEndAtomIdx())
        bcols[j, 0] = _B_TYPE + _BOND_TYPE.get(b.GetBondType(), 4)
        bcols[j, 1] = _B_CONJ if b.GetIsConjugated() else -1
        bcols[j, 2] = _B_RING if b.IsInRing() else -1
        bcols[j, 3] = _B_STEREO + _STEREO.get(b.GetStereo(), 0)
    e = np.zeros((m, BOND_FEATURES), dtype=np.float32)
    brows = np.repeat(np.arange(m), 4)
    bflat = bcols.reshape(-1)
    bkeep = bflat >= 0
    e[brows[bkeep], bflat[bkeep]] = 1.0
    # Both directions of every bond, each direction carrying the bond's features: (2M,) edges.
    edge_index = np.concatenate([ends.T, ends.T[::-1]], axis=1) if m else np.zeros((2, 0), np.int64)
    edge_attr = np.concatenate([e, e], axis=0)
    return Data(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)),
        edge_attr=torch.from_numpy(edge_attr),
        num_nodes=n,
    )


def smiles_to_graph(smiles: str) -> Data:
    """A SMILES string as a graph (see the module docstring for the features).

    Raises:
        ValueError: RDKit cannot parse ``smiles`` or it has no atoms.

    Example:
        >>> g = smiles_to_graph("CCO")
        >>> tuple(g.x.shape), tuple(g.edge_index.shape), tuple(g.edge_attr.shape)
        ((3, 38), (2, 4), (4, 14))
    """
    mol = _parse(smiles, "smiles")
    if isinstance(mol, str):
        raise ValueError(f"smiles={smiles!r}: {mol}")
    return mol_to_graph(mol)


def sequence_to_graph(sequence: str) -> Data:
    """A peptide (one-letter amino-acid code) as the graph of its atoms.

    Raises:
        ValueError: a letter that is not one of the 20 standard amino acids (RDKit cannot build it).
    """
    mol = _parse(sequence, "sequence")
    if isinstance(mol, str):
        raise ValueError(f"sequence={sequence!r}: {mol}")
    return mol_to_graph(mol)


def _parse(text: str, kind: Literal["smiles", "sequence"]) -> Chem.Mol | str:
    """The molecule, or a string saying why there is none."""
    if not isinstance(text, str) or not text.strip():
        return "empty or not a string"
    with rdBase.BlockLogs():  # the reason is reported with the row; RDKit's own log line would repeat it
        mol = Chem.MolFromSmiles(text) if kind == "smiles" else Chem.MolFromSequence(text.strip().upper())
    if mol is None:
        return "RDKit cannot parse it" if kind == "smiles" else "not a peptide sequence RDKit can build"
    if mol.GetNumAtoms() == 0:
        return "no atoms"
    return mol
