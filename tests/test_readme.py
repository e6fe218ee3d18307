"""The README's Python example of your own model and data runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_own_model_and_data_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Your own model and data", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README is ours
    assert namespace["result"].test["accuracy"] > 0.5
    assert {c["metric"] for c in namespace["verdict"]["comparisons"]} >= {"test.accuracy"}
    assert os.path.isfile(tmp_path / "runs" / "mine" / "metrics.json")
