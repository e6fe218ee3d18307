"""What every benchmark here shares: each case runs in a fresh subprocess that measures itself.

The child caps its address space on CPU (so a case that needs more memory than the machine has reports
OOM instead of swapping), runs one warm-up call on a tiny input so one-time library initialisation is
charged to nobody, then reports the median wall time and the peak memory above its baseline as one JSON
line. The parent runs it with a timeout and turns whatever happened into a status.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CPU_MEMORY_LIMIT = 20 * 2**30
ROOT = Path(__file__).resolve().parents[1]


def measure(
    build: Callable[[], Callable[[], None]],
    *,
    warmup: Callable[[], None] | None = None,
    device: str = "cpu",
    reps: int = 3,
    slow_seconds: float = 10.0,
) -> None:
    """In the child: builds the case, times it, prints one JSON line (status, seconds, extra_mib)."""
    import torch

    cuda = device.startswith("cuda")
    if not cuda:
        resource.setrlimit(resource.RLIMIT_AS, (CPU_MEMORY_LIMIT, CPU_MEMORY_LIMIT))
    out: dict[str, Any]
    try:
        if warmup is not None:
            warmup()
        fn = build()
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if cuda:
            sync()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _reset_cpu_peak()
        times = []
        for _ in range(1 + reps):  # the first call warms up; if it is slow, it is the measurement
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
            if times[0] > slow_seconds:
                break
        peak = torch.cuda.max_memory_allocated() if cuda else _cpu_peak()
        out = {"status": "ok", "seconds": statistics.median(times[1:] or times), "extra_mib": (peak - base) / 2**20}
    except (RuntimeError, MemoryError) as exc:
        oom = "memory" in str(exc).lower() or isinstance(exc, MemoryError)
        out = {"status": "OOM" if oom else "error", "note": str(exc).splitlines()[0][:120]}
    except ImportError as exc:
        out = {"status": "skip", "note": str(exc)[:120]}
    print(json.dumps(out))


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise KeyError(field)


def _reset_cpu_peak() -> int:
    """Resets the peak-RSS mark (Linux: clear_refs 5) so that transient memory used while *building* the
    inputs does not hide the case's own peak; returns the resident size to measure from."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_bytes("VmRSS")
    except OSError:  # not Linux: fall back to the high-water mark so far
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_peak() -> int:
    try:
        return _status_bytes("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(module: str, args: list[str], *, timeout: int) -> dict[str, Any]:
    """In the parent: ``python -m module --child args...``; returns the child's JSON or a status."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run([sys.executable, "-m", module, "--child", *args], capture_output=True, text=True,
                              timeout=timeout, env=env)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "note": f"> {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if lines:
        return dict(json.loads(lines[-1]))
    killed = proc.returncode in (-9, 137)
    tail = (proc.stderr.strip().splitlines() or [""])[-1][:120]
    status = "OOM" if killed or "memory" in tail.lower() else "error"
    return {"status": status, "note": f"{'killed (out of memory)' if killed else f'exit {proc.returncode}'}: {tail}"}


def write_section(module: str, device: str, text: str, path: Path | None = None) -> None:
    """Replaces the ``<!-- module:device -->`` section of bench/RESULTS.md with ``text`` (or appends it),
    keeping every other section."""
    path = path or ROOT / "bench" / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmark results\n\nWritten by the benchmarks in bench/.\n"
    marker = f"{re.escape(module)}:{re.escape(device)}"
    pattern = re.compile(rf"<!-- {marker} -->.*?<!-- /{marker} -->", re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip() + "\n\n" + text + "\n"
    path.write_text(new)


def minutes_between(run: Path, end: Path) -> float:
    """Wall minutes from a training run's start (its config.yaml records it) to a file's last write."""
    import datetime

    import yaml

    started = datetime.datetime.fromisoformat(yaml.safe_load((run / "config.yaml").read_text())["meta"]["started"])
    ended = datetime.datetime.fromtimestamp(end.stat().st_mtime, datetime.timezone.utc)
    return (ended - started).total_seconds() / 60
