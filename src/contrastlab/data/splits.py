"""Deterministic train/val/test splits, stratified by class for classification."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["predefined_split", "stratified_split"]

#: The labels a split column may hold (any case), and the part each names.
SPLIT_LABELS = {"train": "train", "valid": "val", "val": "val", "validation": "val", "test": "test"}


def stratified_split(
    targets: Tensor, *, val_fraction: float, test_fraction: float, seed: int, stratify: bool = True
) -> dict[str, Tensor]:
    """Splits indices ``0..N-1`` into train/val/test, per class when ``stratify`` (classification).

    The same targets, fractions and seed always give the same split, so paired runs (with and without a
    contrastive term) see identical data. Every class keeps at least one training sample.

    Returns:
        {"train": (N_train,), "val": (N_val,), "test": (N_test,)} sorted index tensors.

    Raises:
        ValueError: fractions that leave no training data.
    """
    if not (val_fraction > 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 (val > 0) "
            "and sum to < 1"
        )
    g = torch.Generator().manual_seed(seed)
    groups = (
        [torch.nonzero(targets == c).flatten() for c in torch.unique(targets)]
        if stratify
        else [torch.arange(targets.shape[0])]
    )
    parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
    for idx in groups:
        idx = idx[torch.randperm(idx.shape[0], generator=g)]
        n = idx.shape[0]
        n_test = min(round(n * test_fraction), max(n - 2, 0))
        n_val = min(round(n * val_fraction), max(n - n_test - 1, 0))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {k: torch.cat(v).sort().values for k, v in parts.items()}


def predefined_split(labels: Sequence[str], *, source: str) -> dict[str, Tensor]:
    """A split column's labels (train / valid / test, any case; "val" and "validation" too) as index tensors.

    Raises:
        ValueError: labels that are none of those (each with its number of rows), or no training rows.

    Example:
        >>> parts = predefined_split(["train", "TEST", "valid", "train"], source="f.csv")
        >>> {k: v.tolist() for k, v in parts.items()}
        {'train': [0, 3], 'test': [1], 'val': [2]}
    """
    counts = Counter(labels)
    unknown = {label: n for label, n in counts.items() if label.strip().lower() not in SPLIT_LABELS}
    if unknown:
        raise ValueError(
            f"{source}: the split column holds labels other than train/valid/test: {unknown} (label: rows); "
            "rename them or drop those rows"
        )
    parts: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        parts.setdefault(SPLIT_LABELS[label.strip().lower()], []).append(i)
    if "train" not in parts:
        raise ValueError(f"{source}: the split column has no 'train' rows (found {dict(counts)})")
    return {part: torch.tensor(rows, dtype=torch.long) for part, rows in parts.items()}
