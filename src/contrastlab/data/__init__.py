"""Datasets, splits and samplers.

Datasets live in a catalogue (``list_datasets()``, ``contrastlab datasets``; :mod:`contrastlab.data.catalog`):
a config names one by its key, never by import path, and a built-in dataset's module (molecules, text,
images, fusion, behind their extras) is imported when it is loaded. The names below are imported on first
use, so that listing the catalogue needs neither torch nor the domain packages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastlab._lazy import lazy_attributes
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

__getattr__ = lazy_attributes("contrastlab.data", {
    "ArrayDataset": "contrastlab.data.registry:ArrayDataset",
    "ClassBalancedBatchSampler": "contrastlab.data.samplers:ClassBalancedBatchSampler",
    "RandomBatchSampler": "contrastlab.data.samplers:RandomBatchSampler",
    "batch_statistics": "contrastlab.data.samplers:batch_statistics",
    "stratified_split": "contrastlab.data.splits:stratified_split",
})
