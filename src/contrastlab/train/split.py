"""A run's rows and its targets' scale, both fixed by the data config alone (so every arm of a comparison
trains, validates and tests on the same rows): the train/val/test split and the standardisation of
regression targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from contrastlab.data import stratified_split
from contrastlab.data.splits import label_budget, scaffold_split
from contrastlab.train.config import TrainConfig

__all__ = ["TargetScale", "make_split"]


def make_split(config: TrainConfig, data: Any) -> dict[str, Tensor]:
    """Train/val/test indices: stratified random, the dataset's own split (``data.split: dataset``, with val
    carved from its train part when it has no val part of its own), or by molecular scaffold
    (``data.split: scaffold``).

    Raises:
        ValueError: no split of its own with ``data.split=dataset``; an empty train, val or test part (test
            may be empty only when ``data.test_fraction=0`` asks for that).
    """
    dc = config.data
    stratify = data.task == "classification"
    if dc.split == "dataset":
        own = getattr(data, "predefined_split", None)
        if not own or "train" not in own:
            raise ValueError(
                f"data.split=dataset but dataset {config.data.name!r} has no split of its own; use "
                "data.split=random (a recipe: `data: {split: random, val_fraction: 0.1, test_fraction: 0.1}`)"
            )
        split = {"train": own["train"], "val": own.get("val"), "test": own.get("test")}
        if split["val"] is None:
            part = own["train"]
            inner = stratified_split(
                data.targets[part], val_fraction=dc.val_fraction, test_fraction=0.0, seed=dc.split_seed,
                stratify=stratify,
            )  # fmt: skip
            split["train"], split["val"] = part[inner["train"]], part[inner["val"]]
        where = f"dataset {config.data.name!r}'s own split (data.split=dataset)"
    elif dc.split == "scaffold":
        if not hasattr(data, "scaffolds"):
            raise ValueError(f"data.split=scaffold needs molecules; dataset {config.data.name!r} has none "
                             "(use data.split=random)")  # fmt: skip
        split = scaffold_split(data.scaffolds(), val_fraction=dc.val_fraction, test_fraction=dc.test_fraction)
        where = (f"the scaffold split of dataset {config.data.name!r} ({len(data.targets)} rows, "
                 f"data.val_fraction={dc.val_fraction}, data.test_fraction={dc.test_fraction})")  # fmt: skip
    else:
        split = stratified_split(
            data.targets, val_fraction=dc.val_fraction, test_fraction=dc.test_fraction, seed=dc.split_seed,
            stratify=stratify,
        )  # fmt: skip
        where = (f"the random split of dataset {config.data.name!r} ({len(data.targets)} rows, "
                 f"data.val_fraction={dc.val_fraction}, data.test_fraction={dc.test_fraction})")  # fmt: skip
    if dc.train_labels is not None:  # a label budget: fewer training rows, val and test as they were
        split["train"] = label_budget(split["train"], data.targets, dc.train_labels, seed=dc.split_seed,
                                      classification=stratify)  # fmt: skip
    if dc.max_rows_per_split is not None:  # a seeded draw of each part, so every class can appear
        g = torch.Generator().manual_seed(dc.split_seed)
        split = {k: v if v is None or v.numel() <= dc.max_rows_per_split else
                 v[torch.randperm(v.numel(), generator=g)[: dc.max_rows_per_split]].sort().values
                 for k, v in split.items()}  # fmt: skip
    for name in ("train", "val", "test"):
        rows = split[name]
        if (rows is None or rows.numel() == 0) and not (name == "test" and dc.split != "dataset"
                                                         and dc.test_fraction == 0):  # fmt: skip
            raise ValueError(f"{where} has no {name} rows; a run needs train, val and test rows")
    return {k: v for k, v in split.items() if v is not None}


@dataclass(frozen=True)
class TargetScale:
    """Regression targets are trained on as ``(y - mean) / sd`` (training split statistics)."""

    mean: float = 0.0
    sd: float = 1.0

    @classmethod
    def fit(cls, config: TrainConfig, data: Any, train_idx: Tensor) -> TargetScale:
        unlabelled = config.objective.task == "none"  # a pretraining corpus may have no targets at all
        if data.task != "regression" or not config.data.standardize_targets or unlabelled:
            return cls()
        y = data.targets[train_idx].double()
        sd = float(y.std()) if y.numel() > 1 else 1.0
        return cls(float(y.mean()), sd if sd > 0 else 1.0)

    def encode(self, y: Tensor) -> Tensor:
        return (y - self.mean) / self.sd if y.is_floating_point() else y
