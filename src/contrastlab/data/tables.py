"""Reading users' own tables: CSV files whose problems are named (file, row, column) rather than met later.

Row numbers count data rows from 1 (the header is not a row).
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contrastlab._io import UnreadableFileError, ragged_row, reading

__all__ = ["as_dataset", "check_finite_features", "class_codes", "read_csv", "read_table"]


def read_csv(path: str | Path, *, columns: Sequence[str], encoding: str = "utf-8") -> list[dict[str, str]]:
    """The rows of a CSV file that has ``columns``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not text in ``encoding`` (the message suggests ``data.options.encoding``), a missing
            column (naming those present), or a header without rows.
    """
    source = str(path)
    try:
        with reading(source, "a CSV file with a header row"), open(path, newline="", encoding=encoding) as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except UnreadableFileError as error:
        if isinstance(error.__context__, UnicodeDecodeError):
            exc = error.__context__
            raise ValueError(
                f"{source} is not {encoding} text (byte {exc.object[exc.start]:#x} at offset {exc.start}); "
                "give its encoding, e.g. data.options.encoding=latin-1 (encoding='latin-1' from Python)"
            ) from None
        raise
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{source} has no column(s) {missing}; its columns are {header}")
    ragged = ragged_row(rows)
    if ragged is not None:
        more = "more" if None in rows[ragged - 1] else "fewer"
        raise ValueError(f"row {ragged} of {source} has {more} fields than its header ({len(header)}); quote "
                         "fields that hold commas")  # fmt: skip
    if not rows:
        raise ValueError(f"{source} has a header but no rows: there is nothing to train on")
    return rows


def class_codes(raw: Sequence[str], *, column: str, source: str) -> tuple[list[int], list[Any]]:
    """Class labels (words or integers) as codes 0..C-1 in sorted order, with the sorted classes.

    Raises:
        ValueError: an empty label (its row), or labels that are all numbers, some with fractions (a
            regression target passed as classes), naming examples and their rows.

    Example:
        >>> class_codes(["b", "a", "b"], column="y", source="f.csv")
        ([1, 0, 1], ['a', 'b'])
        >>> class_codes(["10", "2", "10"], column="y", source="f.csv")
        ([1, 0, 1], [2, 10])
    """
    for i, v in enumerate(raw):
        if not v:
            raise ValueError(f"row {i + 1} of {source}: column {column!r} is empty")
    fractional = [(i + 1, v) for i, v in enumerate(raw) if _is_fraction(v)]
    if fractional and all(_is_number(v) for v in raw):  # numbers throughout: a regression target
        shown = ", ".join(f"row {row}: {v!r}" for row, v in fractional[:3])
        raise ValueError(
            f"{source}: column {column!r} holds {len(fractional)} non-integer numbers ({shown}), which "
            "cannot be classes; a numeric target needs a regression task (e.g. data.options.task=regression)"
        )
    try:
        keys: list[Any] = [int(v) for v in raw]
    except ValueError:
        keys = list(raw)
    classes = sorted(set(keys))
    code = {k: i for i, k in enumerate(classes)}
    return [code[k] for k in keys], classes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_fraction(text: str) -> bool:
    return _is_number(text) and not float(text).is_integer()


def check_finite_features(features: Any, *, source: str, columns: Sequence[str] | None = None) -> None:
    """Refuses NaN and infinite feature values, which would train on NaN: the first few named by row (from
    1) and column.

    Raises:
        ValueError: naming the count, the first rows and columns, and what to do.

    Example:
        >>> import numpy as np
        >>> x = np.array([[1.0, 2.0], [np.nan, 3.0]])
        >>> try:
        ...     check_finite_features(x, source="t.csv", columns=["a", "b"])
        ... except ValueError as error:
        ...     print(str(error).split(";")[0])
        t.csv: 1 feature value is NaN or infinite (row 2, column 'a': nan)
    """
    import numpy as np

    x = np.asarray(features)
    if not np.issubdtype(x.dtype, np.floating):
        return
    bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))
    if len(bad) == 0:
        return
    flat = x.reshape(len(x), -1)
    shown = "; ".join(
        f"row {r + 1}, column {columns[c] if columns is not None else c!r}: {flat[r, c]}" for r, c in bad[:3]
    )
    count = f"{len(bad)} feature value{'s are' if len(bad) > 1 else ' is'}"
    raise ValueError(f"{source}: {count} NaN or infinite ({shown}{'; ...' if len(bad) > 3 else ''}); fill or "
                     "drop those rows before training")  # fmt: skip


def as_dataset(data: Any, *, target: str | None = None, task: str | None = None, name: str = "python") -> Any:
    """A user's data as a dataset the trainer takes.

    Accepts a dataset with the trainer's attributes (``targets``, ``task``, and ``features`` or
    ``take(idx)``: returned as it is); a pair ``(X, y)`` of arrays or tensors; a pandas DataFrame with the
    ``target`` column (every other column a numeric feature); or a ``torch.utils.data.Dataset`` whose items
    are ``(x, y)`` tensors. The task is ``task``, else classification for integer or string targets and
    regression for floating ones.

    Raises:
        ValueError: no ``target`` for a DataFrame, non-numeric feature columns (named), rows of different
            lengths, or targets that are not one number per row.
        TypeError: anything else, naming what is accepted.
    """
    import numpy as np
    import torch

    from contrastlab.data.registry import ArrayDataset

    ready = hasattr(data, "targets") and hasattr(data, "task")
    if ready and (hasattr(data, "take") or hasattr(data, "features")):
        return data
    if type(data).__name__ == "DataFrame":
        if target is None:
            names = list(data.columns)
            raise ValueError(f"a DataFrame needs target= naming its target column (it has {names})")
        if target not in data.columns:
            close = difflib.get_close_matches(str(target), [str(c) for c in data.columns], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"target={target!r} is not a column of the DataFrame; its columns are "
                             f"{list(data.columns)}{hint}")  # fmt: skip
        features = data.drop(columns=[target])
        bad = [c for c in features.columns if not np.issubdtype(features[c].dtype, np.number)]
        if bad:
            raise ValueError(f"DataFrame columns {bad} are not numeric; encode or drop them")
        x, y = features.to_numpy(dtype=np.float32), data[target].to_numpy()
        columns: list[str] | None = [str(c) for c in features.columns]
    elif isinstance(data, tuple | list) and len(data) == 2:
        columns = None
        x, y = (np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for v in data)
    elif isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        columns = None
        items = [data[i] for i in range(len(data))]
        if not items or not all(isinstance(item, tuple | list) and len(item) == 2 for item in items):
            raise ValueError("a torch Dataset given to contrastlab must yield (x, y) pairs")
        x = torch.stack([torch.as_tensor(item[0]) for item in items]).numpy()
        y = np.asarray([float(item[1]) if task == "regression" else item[1] for item in items])
    else:
        raise TypeError(
            f"cannot use a {type(data).__name__} as a dataset; give (X, y) arrays, a pandas DataFrame with "
            "target=, a torch Dataset of (x, y) pairs, or a dataset with targets/task/take (see ArrayDataset)"
        )
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"dataset {name!r}: features must be (N, F) and targets (N,), got {x.shape} and "
                         f"{y.shape}")  # fmt: skip
    if not (np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)):
        raise ValueError(f"dataset {name!r}: features must be numbers, got {x.dtype} values")
    check_finite_features(x, source=f"dataset {name!r}", columns=columns)
    numeric = np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_)
    if task is None:  # integers and words are classes; fractional numbers a regression target
        task = "regression" if numeric and not np.issubdtype(y.dtype, np.integer) else "classification"
    if task == "regression" and not numeric:
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(y.tolist()))[:3])
        raise ValueError(
            f"task='regression' needs numeric targets, but dataset {name!r}'s targets are {y.dtype} values "
            f"({shown}, ...); for classes declare a classification: task='classification'"
        )
    if task == "classification":
        missing = [i + 1 for i, v in enumerate(y.tolist()) if v is None or v == "" or v != v]  # v != v: NaN
        if missing:
            raise ValueError(f"dataset {name!r}: {len(missing)} row(s) have no label (rows {missing[:10]}); "
                             "fill or drop them")  # fmt: skip
        targets = torch.as_tensor(np.unique(y, return_inverse=True)[1].reshape(-1), dtype=torch.long)
    elif task == "regression":
        targets = torch.as_tensor(y.astype(np.float32))
    else:
        raise ValueError(f"task={task!r}; expected 'classification' or 'regression'")
    features = torch.tensor(x, dtype=torch.float32)  # a copy: a DataFrame's array may be read-only
    return ArrayDataset(name, features, targets, task)  # type: ignore[arg-type]


def read_table(
    path: str | Path,
    *,
    target_column: str = "target",
    feature_columns: Sequence[str] | None = None,
    task: str | None = None,
    encoding: str = "utf-8",
) -> Any:
    """Numeric features and a target from a CSV, Parquet (pandas with pyarrow) or ``.npz`` file, for the
    MLP (``data.name=table``).

    A ``.npz`` holds a features matrix and a target vector, named ``features`` and ``target_column``
    (default "target"). In a CSV or Parquet file every column but the target is a feature, unless
    ``feature_columns`` lists them. The task is ``task``, else classification for integer (or word)
    targets and regression for fractional ones.

    Raises:
        ValueError: an unknown suffix, a missing column, a value that is not a number (its row and column),
            or an empty file.
    """
    import numpy as np

    source = str(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        with reading(source, "a .npz archive of numpy arrays"), np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        missing = [k for k in ("features", target_column) if k not in arrays]
        if missing:
            raise ValueError(f"{source} has no array(s) {missing}; it has {sorted(arrays)}")
        return as_dataset((arrays["features"], arrays[target_column]), task=task, name=Path(path).stem)
    if suffix == ".parquet":
        import pandas

        with reading(source, "a Parquet file"):
            frame = pandas.read_parquet(path)
            rows = frame.astype(str).to_dict("records")
        columns = [str(c) for c in frame.columns]
    elif suffix == ".csv":
        rows = read_csv(path, columns=[target_column, *(feature_columns or [])], encoding=encoding)
        columns = list(rows[0])
    else:
        raise ValueError(f"{source}: a table must be .csv, .parquet or .npz, got {suffix!r}")
    if target_column not in columns:
        raise ValueError(f"{source} has no column {target_column!r}; its columns are {columns}")
    features = list(feature_columns) if feature_columns else [c for c in columns if c != target_column]
    x = np.empty((len(rows), len(features)), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, column in enumerate(features):
            try:
                x[i, j] = float(row[column])
            except ValueError:
                raise ValueError(
                    f"row {i + 1} of {source}: column {column!r} holds {row[column]!r}, not a number "
                    "(list the numeric columns in data.options.feature_columns)"
                ) from None
    check_finite_features(x, source=source, columns=features)
    labels = [str(row[target_column]).strip() for row in rows]
    if task is None:
        task = "regression" if any(_is_fraction(v) for v in labels) else "classification"
    if task == "classification":
        codes, _ = class_codes(labels, column=target_column, source=source)
        y: Any = np.asarray(codes)
    else:
        try:
            y = np.asarray([float(v) for v in labels], dtype=np.float32)
        except ValueError:
            bad = next(i for i, v in enumerate(labels) if not _is_number(v))
            raise ValueError(
                f"row {bad + 1} of {source}: column {target_column!r} holds {labels[bad]!r}, not a number"
            ) from None
    return as_dataset((x, y), task=task, name=Path(path).stem)
