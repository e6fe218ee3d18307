"""Molecules and peptides as graph datasets: featurization (:mod:`contrastlab.data.mol_graphs` turns one
molecule into a graph), whole-molecule descriptors, on-disk caching, and the graph dataset type.

Peptide sequences (one-letter code) go through RDKit's ``MolFromSequence`` to the same graphs, or with
``graph="residue"`` become graphs of their residues (:mod:`contrastlab.data.peptides`). Nothing is
dropped silently: a string RDKit cannot read raises :class:`InvalidRecordError` naming its row, or with
``on_error="skip"`` it is left out and listed in the dataset's ``skipped`` record.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rdkit import Chem, rdBase
from torch import Tensor
from torch_geometric.data import Batch, Data

from contrastlab._io import cache_root, load_cache, save_cache
from contrastlab.data.catalog import Task
from contrastlab.data.mol_graphs import (
    ATOM_FEATURES,
    BOND_FEATURES,
    FEATURIZER_VERSION,
    InvalidRecordError,
    _parse,
    mol_to_graph,
    sequence_to_graph,
    smiles_to_graph,
)
from contrastlab.data.splits import predefined_split

__all__ = [
    "ATOM_FEATURES",
    "BOND_FEATURES",
    "DESCRIPTOR_KINDS",
    "GraphDataset",
    "InvalidRecordError",
    "descriptor_kinds",
    "featurize",
    "molecule_descriptors",
    "morgan_fingerprints",
    "rdkit_descriptors",
    "sequence_to_graph",
    "smiles_to_graph",
]

#: Bumped whenever the descriptor set or its transform changes.
DESCRIPTOR_VERSION = 1
#: The whole-molecule descriptors a graph model can read beside the graph (``model.options.descriptors``,
#: one of them or a list): RDKit's 2D descriptors, Morgan (ECFP4-like, radius 2, 2,048) bits, or the
#: same fingerprint's counts squashed by log1p (Chemprop's ``rdkit_2d``, ``morgan`` and ``morgan_count``)
#: for small molecules; for peptides, their residue composition and scales
#: (:func:`~contrastlab.data.peptides.peptide_features`: ``peptide``).
DESCRIPTOR_KINDS = ("rdkit", "morgan", "morgan_count", "peptide")
#: Which strings each descriptor kind is computed from.
_DESCRIBES = {"rdkit": "smiles", "morgan": "smiles", "morgan_count": "smiles", "peptide": "sequence"}


# --- datasets --------------------------------------------------------------------------------------------


@dataclass
class SkippedRecord:
    row: int
    text: str
    reason: str


@dataclass
class GraphDataset(torch.utils.data.Dataset[tuple[Data, Tensor]]):
    """Graphs and their targets, held in memory; ``take`` batches them for a model.

    Shape:
        - targets: (N,) long for classification, (N,) float for regression.
    """

    name: str
    graphs: list[Data]
    targets: Tensor
    task: Task
    strings: list[str] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)
    #: The dataset's own split (indices into the kept records), when its source defines one.
    predefined_split: dict[str, Tensor] | None = None
    #: What ``strings`` hold: "smiles" or "sequence" (peptides).
    kind: Literal["smiles", "sequence"] = "smiles"
    #: Named subsets of the records, each a (N,) bool mask (e.g. MoleculeACE's activity cliffs: "cliff").
    #: A regression is also scored on each: ``rmse_<name>`` and ``mae_<name>`` over the part's rows in it.
    subsets: dict[str, Tensor] = field(default_factory=dict)
    #: (N, D) whole-molecule descriptors (:func:`molecule_descriptors`) that ``take`` puts beside the graphs
    #: as ``batch.descriptors``; None until :meth:`add_descriptors` (``model.options.descriptors``).
    descriptors: Tensor | None = None
    #: The kinds ``descriptors`` holds, in their column order.
    descriptor_kinds: tuple[str, ...] = ()
    #: What a node is: an atom (RDKit's graph of the molecule) or, for peptides, a residue
    #: (:func:`~contrastlab.data.peptides.residue_graph`).
    graph: Literal["atom", "residue"] = "atom"

    def add_descriptors(self, kinds: str | Sequence[str] = "rdkit") -> int:
        """Computes (RDKit's from the cache where it can) every record's descriptors of ``kinds``
        (:data:`DESCRIPTOR_KINDS`), side by side in that order; returns their width.

        Raises:
            ValueError: :func:`descriptor_kinds`' refusals, naming this dataset.
        """
        checked = descriptor_kinds(kinds, strings=self.kind, where=f"descriptors of dataset {self.name!r}")
        if self.descriptors is None or self.descriptor_kinds != checked:
            self.descriptors = molecule_descriptors(self.strings, checked, strings=self.kind)
            self.descriptor_kinds = checked
        return int(self.descriptors.shape[1])

    def scaffolds(self) -> list[str]:
        """Each molecule's Bemis-Murcko scaffold as SMILES (without chirality; "" for an acyclic one)."""
        from rdkit.Chem.Scaffolds import MurckoScaffold

        scaffold = MurckoScaffold.MurckoScaffoldSmiles
        return [scaffold(mol=m, includeChirality=False) for m in self.molecules()]  # type: ignore[no-untyped-call]

    def molecules(self) -> list[Chem.Mol]:
        """The RDKit molecules of the kept records (for fingerprints and other classic features)."""
        mols = [_parse(text, self.kind) for text in self.strings]
        assert not any(isinstance(m, str) for m in mols), "strings were validated when featurized"
        return mols  # type: ignore[return-value]

    def __post_init__(self) -> None:
        if len(self.graphs) != self.targets.shape[0]:
            raise ValueError(
                f"dataset {self.name!r}: {len(self.graphs)} graphs but {self.targets.shape[0]} targets"
            )

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> tuple[Data, Tensor]:
        return self.graphs[index], self.targets[index]

    @property
    def num_classes(self) -> int:
        return int(self.targets.max()) + 1 if self.task == "classification" else 0

    @property
    def num_features(self) -> int:
        if self.graph == "residue":
            from contrastlab.data.peptides import RESIDUE_FEATURES

            return RESIDUE_FEATURES
        return ATOM_FEATURES

    @property
    def num_edge_features(self) -> int:
        if self.graph == "residue":
            from contrastlab.data.peptides import RESIDUE_EDGE_FEATURES

            return RESIDUE_EDGE_FEATURES
        return BOND_FEATURES

    def take(
        self,
        idx: Tensor,
        transform: Callable[[Data, torch.Generator], Data] | None = None,
        generator: torch.Generator | None = None,
    ) -> Batch:
        """The graphs at ``idx`` as one batch, each passed through ``transform`` (an augmentation) first."""
        graphs = [self.graphs[i] for i in idx.tolist()]
        if transform is not None:
            g = generator if generator is not None else torch.Generator().manual_seed(0)
            graphs = [transform(graph, g) for graph in graphs]
        batch = Batch.from_data_list(graphs)
        if self.descriptors is not None:
            batch.descriptors = self.descriptors[idx]
        return batch


def cache_dir() -> Path:
    """Where featurized molecules are cached: ``$CONTRASTLAB_CACHE/graphs`` (see :func:`cache_root`)."""
    return cache_root() / "graphs"


def featurize(
    strings: Sequence[str],
    *,
    kind: Literal["smiles", "sequence"] = "smiles",
    on_error: Literal["raise", "skip"] = "raise",
    source: str = "",
    cache: bool = True,
    graph: Literal["atom", "residue"] = "atom",
) -> tuple[list[Data], list[int], list[SkippedRecord]]:
    """Graphs for ``strings``, with the positions kept and the records skipped.

    Atom graphs are cached on disk under a key made of the featurizer version, ``kind`` and the strings
    themselves, so a changed file is featurized again and an unchanged one is read back. Residue graphs
    (``graph="residue"``, peptides only) take milliseconds and are not cached.

    Raises:
        InvalidRecordError: with ``on_error="raise"``, the first string RDKit cannot read, or with
            ``graph="residue"`` the first that is not a peptide of the 20 standard amino acids (its 1-based
            row).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'skip'")
    if graph not in ("atom", "residue"):
        raise ValueError(f"graph={graph!r}; expected 'atom' or 'residue'")
    if graph == "residue":
        return _residue_graphs(strings, kind, on_error, source)
    digest = hashlib.sha256(f"v{FEATURIZER_VERSION}|{kind}|".encode())
    for s in strings:
        digest.update(str(s).encode())
        digest.update(b"\x00")
    path = cache_dir() / f"{digest.hexdigest()[:32]}.pt"
    cached = load_cache(path, _parse_cache) if cache else None
    if cached is not None:
        graphs, kept, skipped = cached
        if on_error == "raise" and skipped:
            first = skipped[0]
            raise InvalidRecordError(first.row, first.text, first.reason, source)
        return graphs, kept, skipped

    def atoms(text: str) -> Data | str:
        mol = _parse(text, kind)
        return mol if isinstance(mol, str) else mol_to_graph(mol)

    graphs, kept, skipped = _graphs_of(strings, atoms, on_error, source)
    if cache:
        _write_cache(path, graphs, kept, skipped)
    return graphs, kept, skipped


def _graphs_of(
    strings: Sequence[str], make: Callable[[str], Data | str], on_error: str, source: str
) -> tuple[list[Data], list[int], list[SkippedRecord]]:
    """Each string's graph (``make`` returns it, or why there is none), the positions kept and the
    records skipped; with ``on_error="raise"`` the first bad record raises, naming its row."""
    graphs, kept, skipped = [], [], []
    for i, text in enumerate(strings):
        graph = make(text)
        if isinstance(graph, str):
            if on_error == "raise":
                raise InvalidRecordError(i + 1, str(text), graph, source)
            skipped.append(SkippedRecord(i + 1, str(text), graph))
            continue
        graphs.append(graph)
        kept.append(i)
    return graphs, kept, skipped


def _residue_graphs(
    strings: Sequence[str], kind: str, on_error: str, source: str
) -> tuple[list[Data], list[int], list[SkippedRecord]]:
    from contrastlab.data.peptides import residue_graph, residue_problem

    if kind != "sequence":
        raise ValueError(f"graph='residue' is for peptide sequences; these strings are {kind}")
    return _graphs_of(strings, lambda text: residue_problem(text) or residue_graph(text), on_error, source)


def descriptor_kinds(value: Any, *, strings: Literal["smiles", "sequence"] = "smiles",
                     where: str = "descriptors") -> tuple[str, ...]:  # fmt: skip
    """``value`` (a kind of :data:`DESCRIPTOR_KINDS` or a list of distinct ones) as a tuple of kinds, each
    one computed from ``strings`` (SMILES of small molecules, or peptide sequences).

    Raises:
        ValueError: naming ``where`` and the value: not a kind or a list of distinct known kinds, or a
            kind for the other sort of strings (``peptide`` on SMILES, RDKit's or Morgan's on peptides).
    """
    kinds = [value] if isinstance(value, str) else value
    if (not isinstance(kinds, (list, tuple)) or not kinds or len(set(map(str, kinds))) != len(kinds)
            or any(k not in DESCRIPTOR_KINDS for k in kinds)):  # fmt: skip
        raise ValueError(f"{where}={value!r}; expected one of {list(DESCRIPTOR_KINDS)} (RDKit's 2D "
                         "descriptors, Morgan bits, Morgan counts; residue composition for peptides) or a "
                         "list of distinct ones")  # fmt: skip
    wrong = [k for k in kinds if _DESCRIBES[k] != strings]
    if wrong:
        holds = "peptide sequences" if strings == "sequence" else "small molecules (SMILES)"
        fits = [k for k in DESCRIPTOR_KINDS if _DESCRIBES[k] == strings]
        raise ValueError(f"{where}={value!r}: {wrong} are not computed for {holds}; for these use {fits}")
    return tuple(kinds)


def molecule_descriptors(smiles: Sequence[str], kinds: Sequence[str], *,
                         strings: Literal["smiles", "sequence"] = "smiles") -> Tensor:  # fmt: skip
    """The descriptors of each kind in ``kinds`` (:data:`DESCRIPTOR_KINDS`), side by side in that order, of
    small molecules (``smiles``) or, with ``strings="sequence"``, of peptides.

    Shape:
        - output: (N, D) float32, rows in the order of ``smiles``; D: 217 for ``rdkit``, 2,048 per Morgan
          kind, 426 for ``peptide``.

    Raises:
        ValueError: :func:`descriptor_kinds`' refusals; a sequence that is not a peptide (its row).
        InvalidRecordError: a string RDKit cannot read (its 1-based row).
    """
    kinds = descriptor_kinds(kinds, strings=strings)
    if kinds == ("peptide",):
        from contrastlab.data.peptides import peptide_features

        return torch.from_numpy(peptide_features(smiles)[0].astype(np.float32))
    mols: list[Chem.Mol] = []  # parsed once, for the Morgan kinds
    if set(kinds) - {"rdkit"}:
        for i, text in enumerate(smiles):
            mol = _parse(text, "smiles")
            if isinstance(mol, str):
                raise InvalidRecordError(i + 1, str(text), mol)
            mols.append(mol)
    columns = []
    for kind in kinds:
        if kind == "rdkit":
            columns.append(rdkit_descriptors(smiles))
            continue
        counts = morgan_fingerprints(mols, counts=kind == "morgan_count").astype(np.float32)
        columns.append(torch.from_numpy(np.log1p(counts) if kind == "morgan_count" else counts))
    return torch.cat(columns, dim=1)


def morgan_fingerprints(mols: Sequence[Chem.Mol], *, radius: int = 2, n_bits: int = 2048,
                        counts: bool = False) -> np.ndarray[Any, Any]:  # fmt: skip
    """(N, n_bits) uint8 Morgan fingerprints (radius 2, 2,048 bits: ECFP4-like) of RDKit molecules: each
    folded environment's presence, or with ``counts`` how often it occurs (saturating at 255)."""
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    get = generator.GetCountFingerprintAsNumPy if counts else generator.GetFingerprintAsNumPy
    return np.stack([np.minimum(get(m), 255) for m in mols]).astype(np.uint8)


def rdkit_descriptors(smiles: Sequence[str], *, cache: bool = True) -> Tensor:
    """RDKit's 2D descriptors of each molecule: every entry of ``rdkit.Chem.Descriptors._descList`` (217 in
    RDKit 2026.09: weights, logP and refractivity, TPSA, counts of atoms, rings and fragments, topological
    and charge indices), the whole-molecule features Chemprop adds to its graph network
    (``rdkit_2d``). Each value is squashed by sign(x)·log1p(|x|), since they span orders of magnitude (Ipc
    reaches 1e30); a value RDKit cannot compute (NaN, ±inf) becomes 0. Cached on disk like the graphs.

    Shape:
        - output: (N, D) float32, rows in the order of ``smiles``.

    Raises:
        InvalidRecordError: a string RDKit cannot read (its 1-based row).
    """
    from rdkit.Chem import Descriptors

    names = [name for name, _ in Descriptors._descList]
    digest = hashlib.sha256(f"descriptors v{DESCRIPTOR_VERSION}|{','.join(names)}|".encode())
    for text in smiles:
        digest.update(str(text).encode())
        digest.update(b"\x00")
    path = cache_root() / "descriptors" / f"{digest.hexdigest()[:32]}.pt"
    cached = load_cache(path, lambda state: state["descriptors"]) if cache else None
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    rows = np.zeros((len(smiles), len(names)), dtype=np.float64)
    with rdBase.BlockLogs():  # RDKit's per-molecule warnings
        for i, text in enumerate(smiles):
            mol = _parse(text, "smiles")
            if isinstance(mol, str):
                raise InvalidRecordError(i + 1, str(text), mol)
            values = Descriptors.CalcMolDescriptors(mol, missingVal=float("nan"))  # type: ignore[no-untyped-call]
            rows[i] = [values[name] for name in names]
    with np.errstate(over="ignore", invalid="ignore"):
        squashed = np.sign(rows) * np.log1p(np.abs(rows))
    squashed[~np.isfinite(squashed)] = 0.0
    out = torch.from_numpy(squashed.astype(np.float32))
    if cache:
        save_cache(path, {"descriptors": out})
    return out


def _write_cache(path: Path, graphs: list[Data], kept: list[int], skipped: list[SkippedRecord]) -> None:
    """Graphs as flat tensors plus offsets (loadable with weights_only), written atomically."""
    nodes = torch.tensor([0] + [g.num_nodes for g in graphs]).cumsum(0)
    edges = torch.tensor([0] + [g.edge_index.shape[1] for g in graphs]).cumsum(0)
    state = {
        "x": torch.cat([g.x for g in graphs]) if graphs else torch.zeros(0, ATOM_FEATURES),
        "edge_index": torch.cat([g.edge_index for g in graphs], 1) if graphs else torch.zeros(2, 0),
        "edge_attr": torch.cat([g.edge_attr for g in graphs]) if graphs else torch.zeros(0, BOND_FEATURES),
        "nodes": nodes,
        "edges": edges,
        "kept": torch.tensor(kept, dtype=torch.long),
        "skipped": [(s.row, s.text, s.reason) for s in skipped],
    }
    save_cache(path, state)


def _parse_cache(state: dict[str, Any]) -> tuple[list[Data], list[int], list[SkippedRecord]]:
    nodes, edges = state["nodes"].tolist(), state["edges"].tolist()
    graphs = [
        Data(
            x=state["x"][nodes[i] : nodes[i + 1]],
            edge_index=state["edge_index"][:, edges[i] : edges[i + 1]],
            edge_attr=state["edge_attr"][edges[i] : edges[i + 1]],
            num_nodes=nodes[i + 1] - nodes[i],
        )
        for i in range(len(nodes) - 1)
    ]
    skipped = [SkippedRecord(int(r), str(t), str(why)) for r, t, why in state["skipped"]]
    return graphs, state["kept"].tolist(), skipped


def graph_dataset(
    name: str,
    strings: Sequence[str],
    targets: Sequence[float] | np.ndarray[Any, Any],
    task: Task,
    *,
    kind: Literal["smiles", "sequence"] = "smiles",
    on_error: Literal["raise", "skip"] = "raise",
    source: str = "",
    split_labels: Sequence[str] | None = None,
    subsets: Mapping[str, Sequence[bool]] | None = None,
    graph: Literal["atom", "residue"] = "atom",
) -> GraphDataset:
    """Featurizes ``strings`` into a :class:`GraphDataset` with their targets (rows aligned): graphs of
    atoms, or of residues for peptides with ``graph="residue"``.

    ``split_labels`` ("train"/"test" per record) becomes the dataset's ``predefined_split``; ``subsets``
    (a name and one flag per record) its ``subsets``. Skipped rows (``on_error="skip"``) are reported in a
    warning and kept in ``dataset.skipped``.
    """
    if len(strings) != len(targets):
        raise ValueError(f"dataset {name!r}: {len(strings)} records but {len(targets)} targets")
    for subset, flags in (subsets or {}).items():
        if len(flags) != len(strings):
            raise ValueError(
                f"dataset {name!r}: subset {subset!r} has {len(flags)} flags for {len(strings)} records"
            )
    graphs, kept, skipped = featurize(strings, kind=kind, on_error=on_error, source=source or name,
                                      graph=graph)  # fmt: skip
    if skipped:
        shown = ", ".join(f"row {s.row} ({s.text!r}: {s.reason})" for s in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(
            f"dataset {name!r}: skipped {len(skipped)} of {len(strings)} records: {shown}{more}",
            stacklevel=2,
        )
    dtype = torch.long if task == "classification" else torch.float32
    y = torch.as_tensor(np.asarray(targets, dtype=np.float64)[kept]).to(dtype)
    predefined = None
    if split_labels is not None:
        predefined = predefined_split([split_labels[i] for i in kept], source=source or name)
    named = (subsets or {}).items()
    masks = {s: torch.tensor([bool(f[i]) for i in kept], dtype=torch.bool) for s, f in named}
    return GraphDataset(
        name, graphs, y, task, strings=[strings[i] for i in kept], skipped=skipped,
        predefined_split=predefined, kind=kind, subsets=masks, graph=graph,
    )  # fmt: skip
