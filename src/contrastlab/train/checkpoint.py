"""Checkpoints and run-directory files, written atomically and loaded safely.

Every file is written to a temporary name in the same directory, flushed to disk and renamed over the
target, so a run killed at any moment leaves either the old file or the new one, never half of one.
Checkpoints hold only plain data (tensors, numbers, strings, lists, dicts) and load with
``torch.load(..., weights_only=True)``: loading one cannot run code.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from contrastlab._io import UnreadableFileError, atomic_write, ragged_row, reading

__all__ = [
    "FORMAT",
    "CheckpointError",
    "TrainState",
    "atomic_write",
    "capture_rng",
    "load_checkpoint",
    "read_history",
    "restore_rng",
    "save_checkpoint",
    "write_history",
    "write_json",
    "write_yaml",
]

FORMAT = "contrastlab-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, or not written by contrastlab."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Saves ``state`` (plain data only) atomically, tagged with the checkpoint format."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: missing, truncated or foreign file, with the path and what was wrong.
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    expected = "a readable contrastlab checkpoint (truncated, corrupted, or written by another program)"
    with reading(path, expected, error=CheckpointError):  # truncated zip, pickle with code, random bytes...
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a {FORMAT} file (found format {found!r})")
    return state


@dataclass
class TrainState:
    """What ``checkpoints/last.pt`` holds and what resume restores: the run's progress, every stateful part
    (model, optimiser, schedulers, GradScaler, the objective's adapted weights, MoCo's momentum encoder and
    queue, the frozen reference) and the random generators, all as plain data.

    The progress fields are updated as the run goes; the parts' states are filled in when it is saved.
    """

    config: dict[str, Any]
    epoch: int = -1  # the last finished epoch (0-based)
    global_step: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    overrides_log: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] = field(default_factory=dict)
    lrs: list[float] = field(default_factory=list)  # each group's current LR (what the scheduler set)
    weights: dict[str, float] = field(default_factory=dict)  # the objective's λ (auto-λ adapts them)
    momentum: dict[str, Any] | None = None
    queue: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        save_checkpoint(asdict(self), path)

    @classmethod
    def load(cls, path: Path) -> TrainState:
        """Reads a checkpoint (also one written before TrainState, with the companions under "objective").

        Raises:
            CheckpointError: see :func:`load_checkpoint`; also a checkpoint that lacks a field.
        """
        raw = load_checkpoint(path)
        if "objective" in raw:  # the layout of earlier versions
            old = raw.pop("objective")
            raw.update(weights=old["weights"], momentum=old.get("key_model"), queue=old.get("queue"),
                       reference=old.get("reference_model"))  # fmt: skip
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in ("config", "model", "optimizer", "epoch") if n not in raw)
        if missing:
            raise CheckpointError(f"{path} is not a training checkpoint: it lacks {missing}")
        return cls(**{k: v for k, v in raw.items() if k in names})


def capture_rng() -> dict[str, Any]:
    """Every random number generator a training step touches, as plain data."""
    np_state: Any = np.random.get_state()  # noqa: NPY002 - the global RNG user code draws from
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": _python_state_to_plain(random.getstate()),
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))


def _python_state_to_plain(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def write_yaml(data: Any, path: Path) -> None:
    with atomic_write(path, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)


def write_json(data: Any, path: Path) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def write_history(rows: list[dict[str, Any]], path: Path) -> None:
    """Rewrites ``history.csv`` with one row per epoch; columns are the union of all rows' keys."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_history(path: Path) -> list[dict[str, float | str]]:
    """Reads ``history.csv`` back, numbers as floats.

    Raises:
        UnreadableFileError: not a CSV file, rows longer or shorter than the header, or no numbered epochs.
    """
    expected = "a run's history.csv (one row per epoch, as contrastlab train writes it)"
    with reading(path, expected), path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))

    def value(text: str) -> float | str:
        try:
            return float(text)
        except ValueError:
            return text

    ragged = ragged_row(rows)
    if ragged is not None:
        raise UnreadableFileError(f"{path} is not {expected} (row {ragged} has another number of fields than "
                                  "the header)")  # fmt: skip
    history = [{k: value(v) for k, v in row.items()} for row in rows]
    if any(not isinstance(row.get("epoch"), float) for row in history):
        raise UnreadableFileError(f"{path} is not {expected} (a row without a numbered epoch)")
    return history
