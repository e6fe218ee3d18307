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


def scaffold_split(
    scaffolds: Sequence[str], *, val_fraction: float, test_fraction: float
) -> dict[str, Tensor]:
    """MoleculeNet's scaffold split (deepchem's ``ScaffoldSplitter``): molecules grouped by their
    Bemis-Murcko scaffold, the groups taken largest first (ties: the later first row first) into train
    until it would pass ``1 - val - test`` of the rows, then into val until train + val would pass
    ``1 - test``, the rest into test. No scaffold is in two parts, so test holds chemotypes the model never
    trained on. Deterministic (no seed).

    Example:
        >>> keys = ["a", "a", "b", "c", "a", "b", "d", "e"]
        >>> s = scaffold_split(keys, val_fraction=0.25, test_fraction=0.25)
        >>> {k: v.tolist() for k, v in s.items()}
        {'train': [0, 1, 4, 7], 'val': [2, 5], 'test': [3, 6]}
    """
    if not (val_fraction > 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 (val > 0) "
            "and sum to < 1"
        )
    groups: dict[str, list[int]] = {}
    for i, scaffold in enumerate(scaffolds):
        groups.setdefault(scaffold, []).append(i)
    ordered = sorted(groups.values(), key=lambda rows: (len(rows), rows[0]), reverse=True)
    n = len(scaffolds)
    train_cut, val_cut = (1 - val_fraction - test_fraction) * n, (1 - test_fraction) * n
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for rows in ordered:
        if len(parts["train"]) + len(rows) <= train_cut:
            parts["train"] += rows
        elif len(parts["train"]) + len(parts["val"]) + len(rows) <= val_cut:
            parts["val"] += rows
        else:
            parts["test"] += rows
    return {k: torch.tensor(sorted(v), dtype=torch.long) for k, v in parts.items()}


def label_budget(train: Tensor, targets: Tensor, budget: int | float, *, seed: int,
                 classification: bool) -> Tensor:  # fmt: skip
    """The training rows a label budget keeps: ``budget`` rows of each class (an int; classification) or
    that share of the rows (a float; of each class for a classification), drawn with ``seed``.

    Example:
        >>> train = torch.arange(10)
        >>> label_budget(train, torch.tensor([0, 1] * 5), 2, seed=0, classification=True).numel()
        4
        >>> label_budget(train, torch.zeros(10), 0.3, seed=0, classification=False).numel()
        3

    Raises:
        ValueError: an integer budget for a regression, or a class with fewer rows than the budget.
    """
    if isinstance(budget, int) and not classification:
        raise ValueError(f"data.train_labels={budget}: a per-class count needs classes; give a share (0-1]")
    g = torch.Generator().manual_seed(seed)
    groups = ([train[targets[train] == c] for c in torch.unique(targets[train])] if classification
              else [train])  # fmt: skip
    kept = []
    for rows in groups:
        if isinstance(budget, int):
            if rows.numel() < budget:
                label, have = int(targets[rows[0]]), rows.numel()
                raise ValueError(f"data.train_labels={budget}: class {label} has {have} training rows")
            k = budget
        else:
            k = max(1, round(rows.numel() * budget))
        kept.append(rows[torch.randperm(rows.numel(), generator=g)[:k]])
    return torch.cat(kept).sort().values


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
