"""What a user of the installed package does works outside the checkout: ``python -m build`` makes a wheel
and an sdist, and the wheel, installed into a fresh virtual environment, runs from an empty folder
(``--version``, ``recipes``, ``train`` of a built-in recipe by name, a three-line recipe extending one, and
``contrastlab.fit`` from Python) with nothing of the repository on its path.

The fresh environment gets only the wheel (``--no-deps``); its dependencies are this environment's,
reached through a ``.pth`` line (no download, and no editable finder: a directory named in a .pth file is
put on the path, but the .pth files inside it are not run)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir",
                            str(out), str(ROOT)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(dist.glob("contrastlab-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    return env


def _run(venv: Path, args: list[str], cwd: Path) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    path = f"{venv / 'bin'}:{environment.get('PATH', '')}"
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**environment, "PATH": path})  # fmt: skip
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_wheel_and_sdist_hold_the_recipes_and_the_metadata(dist):
    wheel = next(dist.glob("contrastlab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"contrastlab/recipes/blobs_supcon.yaml", "contrastlab/recipes/text/rt_supcon.yaml"} <= set(names)
    assert "contrastlab/experiments/report/template.html.j2" in names and "contrastlab/py.typed" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for field in ("Summary: ", "License", "Project-URL: ", "Classifier: ", "Requires-Python: ",
                  "Provides-Extra: graph"):  # fmt: skip
        assert field in metadata, field
    sdist = next(dist.glob("contrastlab-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("src/contrastlab/recipes/blobs_supcon.yaml") for n in archive.getnames())


def test_the_installed_wheel_runs_outside_the_checkout(venv, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run(venv, ["python", "-c", "import contrastlab; print(contrastlab.__file__)"], empty)
    assert where.startswith(str(venv)) and not where.startswith(str(ROOT))  # the wheel, not the checkout
    assert _run(venv, ["contrastlab", "--version"], empty).startswith("contrastlab ")
    assert "blobs_supcon" in _run(venv, ["contrastlab", "recipes"], empty)
    _run(venv, ["contrastlab", "train", "blobs_supcon", "trainer.epochs=1"], empty)
    assert (empty / "runs" / "blobs_supcon" / "metrics.json").is_file()
    (empty / "mine.yaml").write_text("extends: blobs_supcon\nname: mine\ntrainer: {epochs: 1}\n")
    _run(venv, ["contrastlab", "train", "mine.yaml"], empty)
    assert (empty / "runs" / "mine" / "metrics.json").is_file()
    fitted = _run(venv, ["python", "-c", "import contrastlab; r = contrastlab.fit('blobs_supcon', "
                         "run_dir='runs/fit', overrides=['trainer.epochs=1'], quiet=True, progress=False); "
                         "print(r.test['accuracy'])"], empty)  # fmt: skip
    assert 0.0 <= float(fitted.strip().splitlines()[-1]) <= 1.0
