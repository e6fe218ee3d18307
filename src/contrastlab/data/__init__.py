"""Datasets, splits and samplers.

Datasets live in a catalogue (``list_datasets()``, ``contrastlab datasets``; :mod:`contrastlab.data.catalog`):
a config names one by its key, never by import path, and a built-in dataset's module (molecules, text,
images, fusion, behind their extras) is imported when it is loaded. The names below are imported on first
use, so that listing the catalogue needs neither torch nor the domain packages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from contrastlab.data.catalog import DatasetInfo, get_dataset, list_datasets, register_dataset

if TYPE_CHECKING:
    from contrastlab.data.registry import ArrayDataset
    from contrastlab.data.samplers import ClassBalancedBatchSampler, RandomBatchSampler, batch_statistics
    from contrastlab.data.splits import stratified_split

__all__ = [
    "ArrayDataset",
    "ClassBalancedBatchSampler",
    "DatasetInfo",
    "RandomBatchSampler",
    "batch_statistics",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "stratified_split",
]

_LAZY = {
    "ArrayDataset": "contrastlab.data.registry",
    "ClassBalancedBatchSampler": "contrastlab.data.samplers",
    "RandomBatchSampler": "contrastlab.data.samplers",
    "batch_statistics": "contrastlab.data.samplers",
    "stratified_split": "contrastlab.data.splits",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'contrastlab.data' has no attribute {name!r}")
