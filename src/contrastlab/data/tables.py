"""Reading users' own tables: CSV files whose problems are named (file, row, column) rather than met later.

Row numbers count data rows from 1 (the header is not a row).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["class_codes", "read_csv"]


def read_csv(path: str | Path, *, columns: Sequence[str], encoding: str = "utf-8") -> list[dict[str, str]]:
    """The rows of a CSV file that has ``columns``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not text in ``encoding`` (the message suggests ``data.options.encoding``), a missing
            column (naming those present), or a header without rows.
    """
    source = str(path)
    try:
        with open(path, newline="", encoding=encoding) as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(f"{source} has no column(s) {missing}; its columns are {header}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{source} is not {encoding} text (byte {exc.object[exc.start]:#x} at offset {exc.start}); give "
            "its encoding, e.g. data.options.encoding=latin-1 (encoding='latin-1' from Python)"
        ) from None
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
