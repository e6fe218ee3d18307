"""The registry of built-in datasets, and the in-memory dataset type the trainer consumes."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from contrastlab.errors import UnknownNameError

__all__ = ["ArrayDataset", "DatasetInfo", "check_options", "get_dataset", "list_datasets", "register_dataset"]

Task = Literal["classification", "regression"]


@dataclass
class ArrayDataset(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    """Features and targets held in memory.

    Shape:
        - features: (N, F) float.
        - targets: (N,) long for classification, (N,) float for regression.
    """

    name: str
    features: Tensor
    targets: Tensor
    task: Task
    #: The dataset's own train / val / test rows (``data.split=dataset``), when it comes with them.
    predefined_split: dict[str, Tensor] | None = None

    def __post_init__(self) -> None:
        if self.features.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"dataset {self.name!r}: {self.features.shape[0]} feature rows but "
                f"{self.targets.shape[0]} targets"
            )

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.features[index], self.targets[index]

    @property
    def num_classes(self) -> int:
        return int(self.targets.max()) + 1 if self.task == "classification" else 0

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])


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


_REGISTRY: dict[str, tuple[DatasetInfo, Callable[..., Any]]] = {}


def register_dataset(
    info: DatasetInfo | str,
    loader: Callable[..., Any],
    *,
    task: Task = "classification",
    description: str = "",
) -> None:
    """Makes ``data.name=<name>`` load your data (from recipes, the CLI with ``--plugin``, and Python).

    ``info`` is a :class:`DatasetInfo` or just the name (then ``task`` and ``description`` describe it).
    The loader takes the ``data.options`` as keyword arguments (checked against its signature) and returns
    an :class:`ArrayDataset`, or a dataset with the same attributes plus ``take(idx)`` that builds the
    model input for rows ``idx`` (e.g. :class:`~contrastlab.data.molecules.GraphDataset`). Registering a
    name again replaces it, with a warning (a notebook re-running its cell).
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


def get_dataset(name: str, **options: Any) -> Any:
    """Loads a registered dataset.

    Raises:
        KeyError: unknown name (with the closest registered names).
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownNameError(f"no dataset named {name!r}{hint} (registered: {known})")
    _, loader = _REGISTRY[name]
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


def _blobs(
    n_samples: int = 800,
    n_features: int = 16,
    n_classes: int = 4,
    informative: int = 4,
    noise: float = 1.0,
    seed: int = 0,
) -> ArrayDataset:
    """Gaussian class clusters in ``informative`` dimensions, with the rest pure noise, then mixed by a
    random rotation so no single input feature reveals the class. Deterministic in ``seed``."""
    if n_classes < 2 or n_samples < 2 * n_classes or informative > n_features:
        raise ValueError(
            "blobs needs n_classes >= 2, n_samples >= 2 * n_classes and informative <= n_features, got "
            f"n_samples={n_samples}, n_features={n_features}, n_classes={n_classes}, "
            f"informative={informative}"
        )
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, informative, generator=g) * 2.0
    labels = torch.arange(n_samples) % n_classes
    labels = labels[torch.randperm(n_samples, generator=g)]
    x = torch.randn(n_samples, n_features, generator=g) * noise
    x[:, :informative] += centers[labels]
    rotation, _ = torch.linalg.qr(torch.randn(n_features, n_features, generator=g))
    return ArrayDataset("blobs", x @ rotation, labels, "classification")


register_dataset(
    DatasetInfo(
        "blobs",
        "classification",
        "synthetic Gaussian clusters mixed by a random rotation (options: n_samples, n_features, "
        "n_classes, informative, noise, seed)",
        "800 x 16, 4 classes (configurable)",
        None,
    ),
    _blobs,
)

