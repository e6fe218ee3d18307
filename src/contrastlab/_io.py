"""Files written whole or not at all (what checkpoints, run files and the on-disk caches share), and files
read from users that fail with one clear error (:func:`reading`).

A file is written to a temporary name beside its target (``.<name>.<random>``), flushed to disk and
renamed over the target, so a process killed at any moment leaves the old file or the new one, never
half of one. The new file gets the permissions the umask allows (0644 by default), not mkstemp's 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import torch

__all__ = [
    "UnreadableFileError",
    "atomic_write",
    "cache_root",
    "is_temporary",
    "load_cache",
    "ragged_row",
    "read_json",
    "reading",
    "save_cache",
]

T = TypeVar("T")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file beside ``path``; on success it is fsynced and renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide runs and reports from teammates
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is what an interrupted :func:`atomic_write` left: ``.<name>.<random>``.

    Example:
        >>> [is_temporary(Path(p)) for p in (".last.pt.k2j4x", "last.pt", ".lock")]
        [True, False, False]
    """
    name = path.name
    return name.startswith(".") and "." in name[1:] and not name.endswith(".")


def cache_root() -> Path:
    """Where featurized data are cached: ``$CONTRASTLAB_CACHE`` or ``~/.cache/contrastlab``."""
    return Path(os.environ.get("CONTRASTLAB_CACHE") or Path.home() / ".cache" / "contrastlab")


def save_cache(path: Path, state: dict[str, Any]) -> None:
    """Saves a cache entry (plain tensors and lists) atomically."""
    with atomic_write(path) as handle:
        torch.save(state, handle)


def load_cache(path: Path, parse: Callable[[dict[str, Any]], T]) -> T | None:
    """A cache entry read and parsed, or None when there is none. An entry that fails to load or parse
    (truncated by a crash, written by another version) is deleted with a warning, so it is rebuilt."""
    if not path.is_file():
        return None
    try:
        return parse(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # truncated zip, foreign pickle, missing keys: rebuild it
        warnings.warn(
            f"the cache entry {path} could not be read ({type(exc).__name__}: {str(exc)[:120]}); "
            "it is rebuilt",
            stacklevel=2,
        )
        path.unlink(missing_ok=True)
        return None


class UnreadableFileError(ValueError):
    """A file a user handed us that cannot be read, or is not in the format expected; the message names the
    file and the format."""


#: Hints in library errors that would have a user switch a safety check off; never passed on.
_UNSAFE_HINTS = ("allow_pickle", "weights_only", "pickle")


def _why(exc: BaseException) -> str:
    """The cause of a parse failure in a few words, never advice to disable a safety check."""
    text = str(exc).strip()
    if any(hint in text for hint in _UNSAFE_HINTS):
        return "it holds pickled Python objects, which contrastlab never loads"
    first = text.splitlines()[0][:160] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@contextmanager
def reading(
    path: str | Path, expected: str, *, error: type[Exception] = UnreadableFileError
) -> Iterator[None]:
    """Turns any failure inside the block, while ``path`` is read and parsed, into one ``error`` naming the
    file and ``expected`` (what the file should be, e.g. "a YAML recipe"). Validate what was parsed after the
    block: an error of our own there keeps its traceback.

    Example:
        >>> with reading("model.pt", "a checkpoint"):
        ...     raise EOFError("Ran out of input")
        Traceback (most recent call last):
        ...
        contrastlab._io.UnreadableFileError: model.pt is not a checkpoint (EOFError: Ran out of input)
    """
    try:
        yield
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory; expected {expected}") from None
    except PermissionError:
        raise error(f"{path} cannot be read (permission denied)") from None
    except MemoryError:
        raise error(f"{path} is not {expected} (it asked for more memory than there is)") from None
    except Exception as exc:  # anything a parser raises on garbage: the file is not what was expected
        raise error(f"{path} is not {expected} ({_why(exc)})") from None


def read_json(path: Path, expected: str, *, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object from ``path`` (a result contrastlab wrote: verdict.json, sweep.json, metrics.json ...)
    holding at least ``keys``.

    Raises:
        UnreadableFileError: the file cannot be read, is not JSON, or not an object with those keys.
    """
    with reading(path, expected):
        loaded = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise UnreadableFileError(f"{path} is not {expected} (it holds a JSON {kind}, not an object)")
    missing = [k for k in keys if k not in loaded]
    if missing:
        raise UnreadableFileError(f"{path} is not {expected} (it has no {', '.join(map(repr, missing))})")
    return loaded


def ragged_row(rows: list[dict[Any, Any]]) -> int | None:
    """The first row (from 1) of ``csv.DictReader`` rows with more fields than the header (a ``None`` key)
    or fewer (``None`` values), or None when every row fits.

    Example:
        >>> ragged_row([{"a": "1", "b": "2"}, {"a": "1", "b": None}])
        2
    """
    return next((i + 1 for i, row in enumerate(rows) if None in row or None in row.values()), None)
