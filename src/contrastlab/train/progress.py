"""What a run shows while it trains: a tqdm bar on a terminal, a line every ``PROGRESS_SECONDS`` without
one (CI, nohup, a scheduler's log), and one line per epoch (``callbacks.EpochLines``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["PROGRESS_SECONDS", "epoch_line", "progress_bar"]

#: Without a terminal (CI, nohup, a scheduler's log), a progress line at most this often.
PROGRESS_SECONDS = 60.0


def progress_bar(items: list[Any], desc: str, show: bool, periodic: bool = False) -> Any:
    """A tqdm bar on a terminal; otherwise, when ``periodic``, a line every PROGRESS_SECONDS with the
    step, the rate and the time left; else nothing."""
    if show:
        from tqdm import tqdm

        return tqdm(items, desc=desc, leave=False, dynamic_ncols=True)
    return _Periodic(items, desc) if periodic else _Quiet(items)


class _Quiet(list):  # type: ignore[type-arg]
    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass


class _Periodic(_Quiet):
    """Iterates the items, printing "desc: step i/n, r steps/s, about t left" every PROGRESS_SECONDS."""

    def __init__(self, items: list[Any], desc: str) -> None:
        super().__init__(items)
        self.desc = desc

    def __iter__(self) -> Any:
        started = last = time.perf_counter()
        for i, item in enumerate(super().__iter__()):
            yield item
            now = time.perf_counter()
            if now - last >= PROGRESS_SECONDS:
                last = now
                rate = (i + 1) / (now - started)
                left = (len(self) - i - 1) / rate
                print(f"{self.desc}: step {i + 1}/{len(self)}, {rate:.3g} steps/s, about {left:.0f} s left",
                      file=sys.stderr, flush=True)  # fmt: skip


def epoch_line(row: dict[str, Any], epochs: int, terms: Sequence[str] = ()) -> str:
    """The epoch's row in one line: the loss, the task and every term, the validation metrics, the LR."""
    wanted = {"train/loss", "train/task", *(f"train/{t}" for t in terms), "lr", "skipped_steps"}
    keys = [k for k in row if k in wanted or k.startswith("val/")]
    shown = ", ".join(f"{k}={row[k]:.4g}" for k in keys if isinstance(row[k], float | int))
    return f"epoch {row['epoch']}/{epochs}: {shown}"
