"""How long the command line takes to start: ``contrastlab --help``, ``--version`` and ``datasets``.

    python -m bench.startup                          # writes its section of bench/RESULTS.md
    python -m bench.startup --against /path/to/src --label "before"   # another checkout's src/ beside it

Each command runs ``--runs`` times in a fresh interpreter (the median is reported); ``import torch`` alone
is the reference row, the floor of any command that needs torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._harness import write_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
COMMANDS = {
    "contrastlab --help": ["-m", "contrastlab", "--help"],
    "contrastlab --version": ["-m", "contrastlab", "--version"],
    "contrastlab datasets": ["-m", "contrastlab", "datasets"],
    "python -c 'import torch' (reference)": ["-c", "import torch"],
}


def _median_seconds(args: list[str], src: Path, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another checkout's src/ to time beside this one")
    parser.add_argument("--label", help="the other checkout's column title (default: its path)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    sources = {"this checkout": ROOT / "src"}
    if args.against is not None:
        sources = {args.label or str(args.against): args.against, **sources}
    rows = []
    for label, command in COMMANDS.items():
        cells = {name: _median_seconds(command, src, args.runs) for name, src in sources.items()}
        print(label, {k: f"{v:.2f} s" for k, v in cells.items()}, flush=True)
        rows.append((label, cells))
    text = _render(rows, list(sources), args.runs)
    print(text)
    if not args.no_write:
        write_section("startup", "cpu", text, RESULTS)


def _render(rows: list[tuple[str, dict[str, float]]], names: list[str], runs: int) -> str:
    lines = [
        "<!-- startup:cpu -->",
        "## Command-line start-up on CPU (2 cores)",
        "",
        f"One run of `python -m bench.startup`; median wall seconds of {runs} fresh interpreters per command.",
        "",
        "| command | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, cells in rows:
        lines.append(f"| {label} | " + " | ".join(f"{cells[n]:.2f} s" for n in names) + " |")
    lines += ["", "<!-- /startup:cpu -->"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
