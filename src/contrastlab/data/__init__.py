"""Datasets, splits and samplers.

Built-in datasets live in a registry (``list_datasets()``, ``contrastlab datasets``); a config names one by
its registry key, never by import path. Domain datasets (molecules, text) register themselves from their
modules behind the ``graph`` and ``text`` extras.
"""

from contrastlab.data import fusion as _fusion  # noqa: F401 - registers the paired graph+text datasets
from contrastlab.data import hf as _hf  # noqa: F401 - registers `hf_dataset` (the hf extra when used)
from contrastlab.data import images as _images  # noqa: F401 - registers Fashion-MNIST identities
from contrastlab.data import sources as _sources  # noqa: F401 - registers the built-in molecule datasets
from contrastlab.data import tables as _tables  # noqa: F401 - registers `table`, your own numeric features
from contrastlab.data import text as _text  # noqa: F401 - registers the built-in text datasets
from contrastlab.data.registry import ArrayDataset, DatasetInfo, get_dataset, list_datasets, register_dataset
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
