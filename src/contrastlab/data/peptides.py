"""Peptides at the level of their residues: a graph per sequence and whole-sequence features.

An atom graph of a 30-residue peptide has some 250 atoms, and three message-passing layers see a few bonds
around each; what decides antimicrobial activity (net charge, hydrophobicity, their pattern along an
amphipathic helix) lives at the scale of residues. ``residue_graph`` makes one node per residue and joins
residues 1, 2, 3 and 4 apart along the chain (i and i+3 or i+4 face the same side of an α-helix), so a few
layers see a whole turn of the helix.

node (29)
    residue one-hot (the 20 standard amino acids) 20 · Kyte-Doolittle hydropathy / 4.5 1 ·
    Eisenberg consensus hydrophobicity 1 · charge at pH 7 (K, R +1; H +0.1; D, E -1) 1 ·
    residue mass / 200 Da 1 · position along the chain (0 at the N-terminus, 1 at the C-terminus) 1 ·
    N-terminal 1 · C-terminal 1 · helical-wheel angle (100° per residue) as cos, sin 2
edge (4)
    sequence separation (1, 2, 3, 4) one-hot; every pair in both directions, the first direction of all
    pairs listed first (the layout :mod:`contrastlab.views.graph` expects)

``peptide_features`` is the classic featurization of the same sequences for a forest: amino-acid and
dipeptide composition, length, the mean of each scale (the mean charge is the net charge per residue) and
Eisenberg's hydrophobic moment.
Pure Python and NumPy: no RDKit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

__all__ = ["AMINO_ACIDS", "RESIDUE_EDGE_FEATURES", "RESIDUE_FEATURES", "peptide_features", "residue_graph",
           "residue_problem"]  # fmt: skip

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
_INDEX = {a: i for i, a in enumerate(AMINO_ACIDS)}
# Kyte & Doolittle (1982); Eisenberg et al. (1984) consensus; side-chain charge at pH 7; residue masses (Da).
_KYTE_DOOLITTLE = dict(zip(AMINO_ACIDS, (
    1.8, 2.5, -3.5, -3.5, 2.8, -0.4, -3.2, 4.5, -3.9, 3.8,
    1.9, -3.5, -1.6, -3.5, -4.5, -0.8, -0.7, 4.2, -0.9, -1.3,
), strict=True))  # fmt: skip
_EISENBERG = dict(zip(AMINO_ACIDS, (
    0.62, 0.29, -0.90, -0.74, 1.19, 0.48, -0.40, 1.38, -1.50, 1.06,
    0.64, -0.78, 0.12, -0.85, -2.53, -0.18, -0.05, 1.08, 0.81, 0.26,
), strict=True))  # fmt: skip
_CHARGE = {**dict.fromkeys(AMINO_ACIDS, 0.0), "K": 1.0, "R": 1.0, "H": 0.1, "D": -1.0, "E": -1.0}
_MASS = dict(zip(AMINO_ACIDS, (
    71.08, 103.14, 115.09, 129.12, 147.18, 57.05, 137.14, 113.16, 128.17, 113.16,
    131.19, 114.10, 97.12, 128.13, 156.19, 87.08, 101.10, 99.13, 186.21, 163.18,
), strict=True))  # fmt: skip
_SCALES = (("kyte_doolittle", _KYTE_DOOLITTLE, 4.5), ("eisenberg", _EISENBERG, 1.0), ("charge", _CHARGE, 1.0),
           ("mass", _MASS, 200.0))  # fmt: skip
_SCALE_TABLE = np.array([[table[a] / unit for _, table, unit in _SCALES] for a in AMINO_ACIDS], np.float32)
#: The sequence separations joined by an edge.
SEPARATIONS = (1, 2, 3, 4)
RESIDUE_FEATURES = len(AMINO_ACIDS) + len(_SCALES) + 5
RESIDUE_EDGE_FEATURES = len(SEPARATIONS)
_HELIX = math.radians(100.0)  # an α-helix turns 100° per residue


def residue_problem(sequence: Any) -> str | None:
    """Why ``sequence`` is not a peptide of standard amino acids (one-letter code), or None."""
    if not isinstance(sequence, str) or not sequence.strip():
        return "empty or not a string"
    bad = sorted({c for c in sequence.strip().upper() if c not in _INDEX})
    if bad:
        return f"letters {''.join(bad)!r} are not among the 20 standard amino acids {AMINO_ACIDS}"
    return None


def _residues(sequence: str) -> np.ndarray[Any, Any]:
    problem = residue_problem(sequence)
    if problem is not None:
        raise ValueError(f"sequence={sequence!r}: {problem}")
    return np.array([_INDEX[c] for c in sequence.strip().upper()], dtype=np.int64)


def residue_graph(sequence: str) -> Data:
    """A peptide (one-letter code) as the graph of its residues (see the module docstring).

    Raises:
        ValueError: an empty sequence or a letter that is not one of the 20 standard amino acids.

    Example:
        >>> g = residue_graph("GLFKK")
        >>> tuple(g.x.shape), tuple(g.edge_index.shape), tuple(g.edge_attr.shape)
        ((5, 29), (2, 20), (20, 4))
    """
    residues = _residues(sequence)
    n = residues.shape[0]
    x = np.zeros((n, RESIDUE_FEATURES), dtype=np.float32)
    x[np.arange(n), residues] = 1.0
    k = len(AMINO_ACIDS) + len(_SCALES)  # the columns after the one-hot and the scales
    x[:, len(AMINO_ACIDS) : k] = _SCALE_TABLE[residues]
    position = np.arange(n, dtype=np.float32)
    x[:, k] = position / max(n - 1, 1)
    x[0, k + 1] = 1.0
    x[-1, k + 2] = 1.0
    x[:, k + 3] = np.cos(_HELIX * position)
    x[:, k + 4] = np.sin(_HELIX * position)
    pairs, kinds = [], []
    for j, gap in enumerate(SEPARATIONS):
        if gap < n:
            start = np.arange(n - gap)
            pairs.append(np.stack([start, start + gap]))
            kinds.append(np.full(n - gap, j))
    ends = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    kind = np.concatenate(kinds) if kinds else np.zeros(0, np.int64)
    e = np.zeros((kind.shape[0], RESIDUE_EDGE_FEATURES), dtype=np.float32)
    e[np.arange(kind.shape[0]), kind] = 1.0
    return Data(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(np.concatenate([ends, ends[::-1]], axis=1).copy()),
        edge_attr=torch.from_numpy(np.concatenate([e, e], axis=0)),
        num_nodes=n,
    )


def peptide_features(sequences: Sequence[str]) -> tuple[np.ndarray[Any, Any], list[str]]:
    """(N, 426) classic features of peptides and their names: amino-acid composition (20), dipeptide
    composition (400, over the N-1 neighbouring pairs), length, the mean of each residue scale (4), and
    Eisenberg's hydrophobic moment at 100° per residue (the amphipathicity of an ideal α-helix, per residue).

    Raises:
        ValueError: a sequence that is not a peptide of standard amino acids (its 1-based row).
    """
    k = len(AMINO_ACIDS)
    rows = np.zeros((len(sequences), k + k * k + 2 + len(_SCALES)), dtype=np.float64)
    for i, sequence in enumerate(sequences):
        problem = residue_problem(sequence)
        if problem is not None:
            raise ValueError(f"row {i + 1}: sequence={sequence!r}: {problem}")
        residues = _residues(sequence)
        n = residues.shape[0]
        rows[i, :k] = np.bincount(residues, minlength=k) / n
        if n > 1:
            rows[i, k : k + k * k] = np.bincount(residues[:-1] * k + residues[1:], minlength=k * k) / (n - 1)
        rows[i, k + k * k] = n
        rows[i, k + k * k + 1 : k + k * k + 1 + len(_SCALES)] = _SCALE_TABLE[residues].mean(0)
        h = _SCALE_TABLE[residues, 1]  # Eisenberg
        angle = _HELIX * np.arange(n)
        rows[i, -1] = math.hypot(float(h @ np.cos(angle)), float(h @ np.sin(angle))) / n
    names = [f"aa:{a}" for a in AMINO_ACIDS] + [f"dipeptide:{a}{b}" for a in AMINO_ACIDS for b in AMINO_ACIDS]
    names += ["length"] + [f"mean:{name}" for name, _, _ in _SCALES] + ["hydrophobic_moment"]
    return rows, names
