"""CI cannot skip what it claims to test: the no-skips plugin fails a run that skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_sample.py"
    test.write_text(body)
    env = {**os.environ, "CONTRASTLAB_NO_SKIPS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests._no_skips", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(test)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_a_module_level_importorskip_fails_the_run(tmp_path):
    proc = _pytest(tmp_path, "import pytest\npytest.importorskip('no_such_package_here')\n\n"
                             "def test_x():\n    pass\n")  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    assert "CONTRASTLAB_NO_SKIPS: 1 skipped" in proc.stdout and "no_such_package_here" in proc.stdout


def test_a_skip_inside_a_test_fails_the_run_but_the_float16_range_case_does_not(tmp_path):
    proc = _pytest(tmp_path, "import pytest\n\ndef test_x():\n    pytest.skip('optuna is missing')\n")
    assert proc.returncode == 1 and "optuna is missing" in proc.stdout
    allowed = "the exact gradient exceeds float16's range; no float16 result can hold it"
    proc = _pytest(tmp_path, f"import pytest\n\ndef test_x():\n    pytest.skip({allowed!r})\n")
    assert proc.returncode == 0, proc.stdout
