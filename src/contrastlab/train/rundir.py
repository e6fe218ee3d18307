"""A run directory: its layout, its exclusive lock, and what may happen to one that already holds a run.

``runs/<name>/`` holds ``config.yaml``, ``history.csv``, ``split.json``, ``metrics.json``,
``checkpoints/{last,best}.pt``, ``embeddings/{train,val,test}.npz``, ``events/`` (TensorBoard),
``tracking.json`` and ``wandb/`` (with those loggers) and, once diagnosed, ``diagnostics.json``. One
process at a time may write it: :meth:`RunDir.lock` takes an exclusive ``flock`` on ``.lock`` (released
by the kernel when the process dies, ``kill -9`` included) and a second process gets :class:`RunDirError`
naming the holder. Starting a new run where one exists needs ``overwrite``, which removes the old run
first, so that no checkpoint of it can be resumed under the new config.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from contrastlab._io import is_temporary

__all__ = ["RunDir", "RunDirError", "check_run_name", "fitted_metrics", "run_metadata"]


class RunDirError(RuntimeError):
    """A run directory that is locked by another process, holds a run already, or has no run to resume."""


def check_run_name(name: str, what: str = "name") -> str:
    """A run name is one path component, so that ``--runs-dir`` contains every run.

    Example:
        >>> check_run_name("supcon_0.2")
        'supcon_0.2'
        >>> check_run_name("../elsewhere")
        Traceback (most recent call last):
        ...
        ValueError: name='../elsewhere' must be one directory name (not '.' or '..', no slashes), e.g. 'run_1'
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(
            f"{what}={name!r} must be one directory name (not '.' or '..', no slashes), e.g. 'run_1'"
        )
    return name


# Processes may hold a lock more than once (the CLI locks before --overwrite removes a run, then train()
# locks again): open lock files by path, with a count.
_held: dict[Path, tuple[IO[str], int]] = {}


def fitted_metrics(task: str, val: dict[str, float], test: dict[str, float], *,
                   monitor: str | None = None) -> dict[str, object]:  # fmt: skip
    """The ``metrics.json`` of a run fitted in one go rather than trained epoch by epoch (a baseline, an
    ensemble), in the layout ``compare`` and ``bench.quality`` read from every run: ``best`` is the
    validation value of ``monitor`` (default: val/rmse for a regression, val/accuracy otherwise), ``final``
    every validation metric, ``test`` the test metrics, and no epochs.

    Example:
        >>> fitted_metrics("regression", {"rmse": 0.7, "mae": 0.5}, {"rmse": 0.8})["best"]
        {'epoch': None, 'metric': 'val/rmse', 'value': 0.7}
    """
    monitor = monitor or ("val/rmse" if task == "regression" else "val/accuracy")
    return {
        "best": {"epoch": None, "metric": monitor, "value": val.get(monitor.removeprefix("val/"))},
        "final": {f"val/{k}": v for k, v in val.items()},
        "test": test,
        "epochs_run": 0,
        "stopped_early": False,
    }


def run_metadata() -> dict[str, object]:
    """Where and how a run was made, for its config.yaml: versions, torch threads, host, command line, start
    time, and the git commit of the working directory when it is a repository (None otherwise)."""
    import datetime
    import platform
    import subprocess

    import torch

    from contrastlab import __version__

    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                               check=False)  # fmt: skip
        commit = found.stdout.strip() if found.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "contrastlab": __version__,
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "command": list(sys.argv),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
    }


class RunDir:
    """The files of one run, by name (the only place their layout is spelled)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check_started(self) -> None:
        """That a run was started here and saved its config.yaml: what resuming it needs first.

        Raises:
            RunDirError: the directory does not exist or cannot be read, or nothing was saved in it yet.
        """
        try:
            exists, started = self.path.exists(), self.config.is_file()
        except OSError as exc:  # e.g. a directory that cannot be searched
            raise RunDirError(f"{self.path} cannot be read ({exc.strerror or exc})") from None
        if not exists:
            raise RunDirError(f"{self.path} does not exist: there is no run to resume (contrastlab train "
                              "starts one)")  # fmt: skip
        if not started:
            raise RunDirError(f"{self.path} holds no run to resume: nothing was saved there yet (no "
                              "config.yaml; a run stopped before its first save, or not a run directory); "
                              "contrastlab train starts it again")  # fmt: skip

    def check_creatable(self) -> None:
        """That the run directory exists as a directory, or can be made: no part of its path is a file.

        Raises:
            RunDirError: naming the part of the path that is a file, or the directory that cannot be written.
        """
        for place in (self.path, *self.path.parents):
            try:
                if not place.exists():
                    continue
                if not place.is_dir():
                    raise RunDirError(f"{place} is a file, not a directory, so {self.path} cannot be a run "
                                      "directory; choose another --runs-dir (run_dir=)")  # fmt: skip
                if not os.access(place, os.W_OK | os.X_OK):
                    raise RunDirError(f"{place} cannot be written (permission denied), so {self.path} cannot "
                                      "be a run directory")  # fmt: skip
            except OSError as exc:  # a path component that cannot even be looked at
                raise RunDirError(f"{self.path} cannot be a run directory: {exc}") from None
            return

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def split(self) -> Path:
        return self.path / "split.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.path / "checkpoints/last.pt"

    @property
    def best(self) -> Path:
        return self.path / "checkpoints/best.pt"

    @property
    def embeddings(self) -> Path:
        return self.path / "embeddings"

    def embedding_file(self, split: str) -> Path:
        """The embeddings saved for ``split`` (train, val or test)."""
        return self.embeddings / f"{split}.npz"

    @property
    def diagnostics(self) -> Path:
        return self.path / "diagnostics.json"

    @property
    def events(self) -> Path:
        return self.path / "events"

    @property
    def tracking(self) -> Path:
        """The MLflow and W&B run ids of this run (a resume logs into the same runs)."""
        return self.path / "tracking.json"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def holds_run(self) -> bool:
        """Whether a run was started here (its config or a checkpoint exists)."""
        return self.config.is_file() or self.checkpoints.is_dir()

    def is_complete(self) -> bool:
        """Whether the run finished (metrics.json is written last, after the test evaluation)."""
        return self.metrics.is_file()

    @contextmanager
    def lock(self, *, wait: float = 0.0) -> Iterator[None]:
        """Holds the directory's exclusive lock for the block (re-entrant within one process).

        Args:
            wait: Seconds to keep trying while another process holds the lock (workers that share a
                directory and each hold it for a moment); 0 refuses at once.

        Raises:
            RunDirError: another process holds it (still, after ``wait``); the message names that process.
        """
        path = self.path.absolute()
        created = [p for p in (*reversed(path.parents), path) if not p.exists()]  # top first
        self.path.mkdir(parents=True, exist_ok=True)
        key = self.lock_file.resolve()
        if key in _held:
            handle, count = _held[key]
            _held[key] = (handle, count + 1)
        else:
            handle = key.open("a+")
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    handle.seek(0)
                    holder = handle.read().strip() or "an unknown process"
                    handle.close()
                    raise RunDirError(
                        f"{self.path} is in use by {holder}; wait for it to finish, or use another run name"
                    ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)[:300]}\n")
            handle.flush()
            _held[key] = (handle, 1)
        try:
            yield
        finally:
            handle, count = _held[key]
            if count > 1:
                _held[key] = (handle, count - 1)
            else:
                del _held[key]
                handle.seek(0)
                handle.truncate()
                if created and [e.name for e in self.path.iterdir()] == [key.name]:
                    key.unlink()  # nothing was written (the run was refused): leave no directory behind
                    with contextlib.suppress(OSError):  # a parent another process has since used stays
                        for folder in reversed(created):
                            folder.rmdir()
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                handle.close()

    def clear(self) -> None:
        """Removes the run held here (every entry but the lock); the caller holds the lock."""
        for entry in self.path.iterdir():
            if entry.name == self.lock_file.name:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def remove_temporaries(self) -> list[Path]:
        """Deletes what interrupted atomic writes left (``.<name>.<random>`` beside their target)."""
        found = []
        for folder in (self.path, self.checkpoints, self.embeddings):
            if folder.is_dir():
                for entry in folder.iterdir():
                    if entry.is_file() and is_temporary(entry):
                        entry.unlink()
                        found.append(entry)
        return found
