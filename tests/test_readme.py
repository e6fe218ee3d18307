"""The README's Python examples of your own model, data and term run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_own_model_and_data_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Your own model and data", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, flags=re.S)
              if not b.startswith("# my_plugin.py")]  # the plugin sketch names a module of yours
    assert len(blocks) == 2
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in blocks:  # in order, sharing one namespace, as a reader would run them
        exec(compile(code, "README.md", "exec"), namespace)  # the README is ours
    assert namespace["result"].test["accuracy"] > 0.5
    assert {c["metric"] for c in namespace["verdict"]["comparisons"]} >= {"test.accuracy"}
    assert os.path.isfile(tmp_path / "runs" / "mine" / "metrics.json")
    last = namespace["result"].history[-1]  # the second block's run: the registered term
    assert last["weight/center"] == 0.1 and last["train/center"] >= 0
