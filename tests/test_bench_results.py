"""Every figure in bench/RESULTS.md comes from a bench command: each section is delimited by the markers a
bench module writes (``<!-- MODULE:DEVICE -->``), that module exists and writes those markers, and the
section names the command that produced it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_results_section_is_written_by_a_named_bench_command():
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    sections = re.findall(r"<!-- ([a-z_]+):([a-z0-9-]+) -->(.*?)<!-- /\1:\2 -->", text, flags=re.S)
    assert sections
    opened = re.findall(r"<!-- ([a-z_]+):([a-z0-9-]+) -->", text)
    assert len(opened) == len(sections), "a section without its closing marker"
    outside = re.sub(r"<!-- ([a-z_]+):([a-z0-9-]+) -->.*?<!-- /\1:\2 -->", "", text, flags=re.S)
    assert not re.search(r"\d+(\.\d+)?\s*(s|MiB|GiB|x)\b", outside), "figures outside every section"
    for module, device, body in sections:
        source = ROOT / "bench" / f"{module}.py"
        assert source.is_file(), f"section {module}:{device} has no bench/{module}.py"
        assert f"<!-- {module}:" in source.read_text() or "<!-- losses:{" in source.read_text(), module
        assert f"python -m bench.{module}" in body, f"section {module}:{device} does not name its command"
