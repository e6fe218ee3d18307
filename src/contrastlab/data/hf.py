"""Hugging Face datasets on this machine: ``data.name=hf_dataset`` (the ``hf`` extra).

``path`` is a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or local CSV,
JSON (JSON Lines too) or Parquet file(s), a glob allowed, read by ``datasets.load_dataset``'s packaged
builders. Nothing is downloaded: the library runs with ``HF_DATASETS_OFFLINE=1``, so a hub name fails with
the library's own message instead of reaching for the network.

With ``text_column`` the result is a text dataset (for ``model.name=transformer``), otherwise the numeric
columns make a table (for the MLP). A ``ClassLabel`` column keeps its class names and their order. A
dataset with several splits (train / validation / test) keeps them as its own split, used with
``data.split=dataset``. Bad records are reported by their row, counted from 1 within the concatenated splits
in the order train, validation, test, then any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch

from contrastlab.data.splits import SPLIT_LABELS

__all__ = ["hf_dataset"]

_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_ORDER = {"train": 0, "val": 1, "test": 2}


def _load(path: str, split: str | None) -> dict[str, Any]:
    """The dataset's splits by name (one, "train", for a single dataset)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # read before `datasets` is first imported
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "data.name=hf_dataset needs Hugging Face datasets: pip install 'contrastlab[hf]'"
        ) from None
    datasets.disable_progress_bars()
    where = Path(path)
    if where.is_dir():
        try:
            loaded = datasets.load_from_disk(str(where))
        except FileNotFoundError as exc:
            raise ValueError(
                f"data.options.path={path!r} is a directory that save_to_disk did not write ({exc}); give "
                "the saved directory, or CSV/JSON/Parquet files"
            ) from None
    else:
        suffix = where.suffix.lower()
        if suffix not in _BUILDERS:
            raise ValueError(
                f"data.options.path={path!r}: expected a save_to_disk directory or a file (or glob) ending "
                f"in {', '.join(sorted(_BUILDERS))}"
            )
        if not any(Path(p).is_file() for p in _glob(where)):
            raise FileNotFoundError(f"data.options.path={path!r}: no such file")
        loaded = datasets.load_dataset(_BUILDERS[suffix], data_files=str(where), split="train")
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if split is not None:
        if split not in parts:
            raise ValueError(f"data.options.split={split!r}; the dataset has splits {sorted(parts)}")
        parts = {"train": parts[split]}
    return parts


def _glob(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name)) if any(c in path.name for c in "*?[") else [path]


def hf_dataset(
    path: str,
    *,
    text_column: str | None = None,
    label_column: str = "label",
    feature_columns: list[str] | None = None,
    task: Literal["classification", "regression"] | None = None,
    split: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    name: str | None = None,
) -> Any:
    """A Hugging Face dataset from local files, as a text dataset or a table.

    Args:
        path: A ``save_to_disk`` directory, or CSV / JSON / JSON Lines / Parquet file(s) (a glob allowed).
        text_column: The column of texts; without it every numeric column but the label is a feature.
        label_column: The target: class labels (a ``ClassLabel``, integers or words) or numbers.
        feature_columns: For a table, the feature columns (default: every column but the label).
        task: "classification" or "regression" (default: regression for a floating label column).
        split: Use only this split of a dataset with several (default: all, kept as its own split).
        on_error: "skip" leaves out bad text records with a warning that names their rows.
        name: The dataset's name in reports (default: the file or directory name).

    Raises:
        ValueError: a missing column (naming those present), a split name that is not train / validation /
            test, or a bad record (its row).
    """
    parts = _load(path, split)
    labels = {part: SPLIT_LABELS.get(part.strip().lower()) for part in parts}
    unknown = [part for part, label in labels.items() if label is None]
    if len(parts) > 1 and unknown:
        raise ValueError(f"{path}: splits {unknown} are none of train / validation / test; choose one with "
                         "data.options.split")  # fmt: skip
    order = sorted(parts, key=lambda p: _ORDER.get(labels[p] or "", 3))
    first = parts[order[0]]
    columns = list(first.column_names)
    wanted = [c for c in (text_column, label_column, *(feature_columns or [])) if c is not None]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; its columns are {columns}")
    feature = first.features[label_column]
    class_names = list(feature.names) if hasattr(feature, "names") else None
    if task is None:
        dtype = str(getattr(feature, "dtype", ""))
        task = "regression" if class_names is None and dtype.startswith("float") else "classification"
    source = str(path)
    label = name or Path(path.rstrip("/")).stem
    if text_column is not None:
        data = _texts(parts, order, text_column, label_column, class_names, task, on_error, source, label)
    else:
        data = _table(parts, order, label_column, feature_columns, class_names, task, source, label)
    if len(order) > 1:
        sizes = [len(parts[p]) for p in order]
        owner = torch.repeat_interleave(torch.arange(len(order)), torch.tensor(sizes))
        kept = _kept_rows(data, owner.shape[0])
        owner = owner[kept]
        data.predefined_split = {labels[p]: torch.nonzero(owner == i).squeeze(1) for i, p in enumerate(order)}
    return data


def _label_text(value: Any, class_names: list[str] | None) -> str:
    if class_names is not None and isinstance(value, int) and 0 <= value < len(class_names):
        return class_names[value]
    return "" if value is None else str(value)


def _texts(parts: dict[str, Any], order: list[str], text_column: str, label_column: str,
           class_names: list[str] | None, task: str, on_error: Literal["raise", "skip"], source: str,
           name: str) -> Any:  # fmt: skip
    from contrastlab.data.text import text_dataset

    records: list[tuple[int, str, str]] = []
    for part in order:
        for text, value in zip(parts[part][text_column], parts[part][label_column], strict=True):
            records.append((len(records) + 1, text or "", _label_text(value, class_names)))
    return text_dataset(name, records, on_error=on_error, source=source, task=task,
                        class_names=class_names if task == "classification" else None)  # fmt: skip


def _table(parts: dict[str, Any], order: list[str], label_column: str, feature_columns: list[str] | None,
           class_names: list[str] | None, task: str, source: str, name: str) -> Any:  # fmt: skip
    import numpy as np
    from pandas.api.types import is_bool_dtype, is_numeric_dtype  # pandas comes with datasets

    from contrastlab.data.tables import as_dataset, class_codes

    first = parts[order[0]]
    features = feature_columns or [c for c in first.column_names if c != label_column]
    x_parts, y_raw = [], []
    offset = 0
    for part in order:
        frame = parts[part].select_columns([*features, label_column]).to_pandas()
        for column in features:
            values = frame[column]
            if not is_numeric_dtype(values) or is_bool_dtype(values):
                raise ValueError(
                    f"{source}: column {column!r} is not numeric ({values.dtype}); list the numeric "
                    "columns in data.options.feature_columns, or give text_column"
                )
            bad = np.flatnonzero(values.isna().to_numpy())
            if bad.size:
                raise ValueError(f"row {offset + int(bad[0]) + 1} of {source}: column {column!r} is empty")
        x_parts.append(frame[features].to_numpy(dtype=np.float32))
        y_raw.extend(frame[label_column].tolist())
        offset += len(frame)
    x = np.concatenate(x_parts)
    if task == "classification":
        if class_names is not None:
            y: Any = np.asarray(y_raw, dtype=np.int64)
        else:
            codes, _ = class_codes([str(v).strip() for v in y_raw], column=label_column, source=source)
            y = np.asarray(codes)
    else:
        try:
            y = np.asarray([float(v) for v in y_raw], dtype=np.float32)
        except (TypeError, ValueError):
            first_bad = next(i for i, v in enumerate(y_raw) if not _number(v))
            raise ValueError(f"row {first_bad + 1} of {source}: column {label_column!r} holds "
                             f"{y_raw[first_bad]!r}, not a number") from None  # fmt: skip
    return as_dataset((x, y), task=task, name=name)


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _kept_rows(data: Any, total: int) -> torch.Tensor:
    """The rows of the concatenated splits that the dataset kept (skipped text records are not)."""
    skipped = {s.row - 1 for s in getattr(data, "skipped", [])}
    return torch.tensor([i for i in range(total) if i not in skipped], dtype=torch.long)
