"""The in-memory dataset type the trainer consumes, and the synthetic ``blobs``. The registry itself is
:mod:`contrastlab.data.catalog` (re-exported here)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from contrastlab.data.catalog import (
    DatasetInfo,
    Task,
    check_options,
    get_dataset,
    list_datasets,
    register_dataset,
)

__all__ = ["ArrayDataset", "DatasetInfo", "check_options", "get_dataset", "list_datasets", "register_dataset"]


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
    #: (C, H, W) when each feature row is a flattened image: image augmentations can then make the views
    #: (``trainer.views.augment``, contrastlab.views.image).
    image_shape: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.features.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"dataset {self.name!r}: {self.features.shape[0]} feature rows but "
                f"{self.targets.shape[0]} targets"
            )
        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            width = self.features.shape[1] if self.features.dim() == 2 else None
            if len(shape) != 3 or min(shape) < 1 or width != shape[0] * shape[1] * shape[2]:
                raise ValueError(
                    f"dataset {self.name!r}: image_shape={list(self.image_shape)} does not fit feature rows "
                    f"of shape {tuple(self.features.shape)}; expected (C, H, W) with C·H·W = the row width"
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

