"""Run directories cannot be clobbered, shared or escaped, and interrupted runs resume."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest
import yaml

import contrastlab.train.terms.supcon as terms_module  # the supcon term calls its module's supcon
from contrastlab.cli import main as cli_main
from contrastlab.train import ConfigError, RunDir, RunDirError, load_checkpoint, train, validate_config
from tests.train.test_trainer import TINY, _recipe, _without_time


class _Interrupted(Exception):
    pass


def _interrupt_first_step(monkeypatch):
    real, calls = terms_module.supcon, {"n": 0}

    def boom(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the check before the run starts (loop.dry_step), which trains nothing
            return real(*args, **kwargs)
        raise _Interrupted

    monkeypatch.setattr(terms_module, "supcon", boom)


def test_overwrite__removes_the_old_run_so_an_interrupted_new_run_never_resumes_the_old_one(
    tmp_path, monkeypatch
):
    # Seen failing before the fix: the old checkpoints stayed and `resume` finished the old run.
    old = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}
    assert cli_main(["train", _recipe(tmp_path, old), "--runs-dir", str(tmp_path), "--name", "r"]) == 0
    new = {**TINY, "trainer": {**TINY["trainer"], "epochs": 3, "lr": 0.02}}
    recipe = tmp_path / "new.yaml"
    recipe.write_text(yaml.safe_dump(new))
    with monkeypatch.context() as patch:
        _interrupt_first_step(patch)
        with pytest.raises(_Interrupted):
            cli_main(["train", str(recipe), "--runs-dir", str(tmp_path), "--name", "r", "--overwrite"])
    run = tmp_path / "r"
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()
    assert cli_main(["resume", str(run)]) == 0  # starts over, under the new config
    history = load_checkpoint(run / "checkpoints" / "last.pt")["history"]
    reference = train(validate_config(new), tmp_path / "reference", progress=False)
    assert _without_time(history) == _without_time(reference.history)


def test_train__refuses_a_directory_that_holds_a_run(tmp_path):
    one = {**TINY, "trainer": {**TINY["trainer"], "epochs": 1}}
    train(validate_config(one), tmp_path / "r", progress=False)
    with pytest.raises(RunDirError, match="already holds a run"):
        train(validate_config(one), tmp_path / "r", progress=False)


def test_lock__a_second_process_on_the_same_run_directory_gets_a_clear_error(tmp_path):
    # Seen failing before the fix: both processes "succeeded" and reported each other's test metrics.
    recipe = _recipe(tmp_path, {**TINY, "trainer": {**TINY["trainer"], "epochs": 1}})
    with RunDir(tmp_path / "shared").lock():
        command = ["train", recipe, "--runs-dir", str(tmp_path), "--name", "shared"]
        proc = subprocess.run([sys.executable, "-m", "contrastlab", *command], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"in use by pid {os.getpid()}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "shared" / "config.yaml").exists()  # nothing written by the refused process


def test_lock__wait_takes_the_lock_once_its_holder_lets_go_and_without_it_refuses_at_once(tmp_path):
    # Seen failing before the fix (two `verdict --storage` workers started together): the second found the
    # verdict directory locked for a moment by the first, writing request.json, and exited with an error.
    run = RunDir(tmp_path / "shared")
    run.path.mkdir()
    hold = ("import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "f.write('pid holder'); f.flush(); print('held', flush=True); time.sleep(1.5)")  # fmt: skip
    command = [sys.executable, "-c", hold, str(run.lock_file)]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(RunDirError, match="in use by pid holder"), run.lock():
            pass
        with run.lock(wait=60):
            assert time.monotonic() - started > 0.5  # taken only once the holder let go
    finally:
        holder.wait(timeout=60)


def test_run_names__are_one_path_component(tmp_path):
    # Seen failing before the fix: name ../x wrote outside --runs-dir.
    with pytest.raises(ConfigError, match="one directory name"):
        validate_config({**TINY, "name": "../escaped"})
    runs = tmp_path / "runs"
    recipe = _recipe(tmp_path, {**TINY, "trainer": {**TINY["trainer"], "epochs": 1}})
    assert cli_main(["train", recipe, "--runs-dir", str(runs), "--name", "../escaped"]) == 2
    assert not (tmp_path / "escaped").exists()


def test_files__respect_the_umask(tmp_path):
    # Seen failing before the fix: every file was 0600 (mkstemp's mode).
    old = os.umask(0o022)
    try:
        train(validate_config({**TINY, "trainer": {**TINY["trainer"], "epochs": 1}}), tmp_path / "r",
              progress=False)  # fmt: skip
    finally:
        os.umask(old)
    for name in ("config.yaml", "history.csv", "metrics.json", "split.json", "checkpoints/last.pt",
                 "embeddings/test.npz"):  # fmt: skip
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o644, name


def test_resume__a_run_killed_before_its_first_checkpoint_starts_over_and_leftovers_go(tmp_path, monkeypatch):
    # Seen failing before the fix: "no checkpoint", and the run could never be resumed.
    raw = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}
    with monkeypatch.context() as patch:
        _interrupt_first_step(patch)
        with pytest.raises(_Interrupted):
            train(validate_config(raw), tmp_path / "r", raw_config=raw, progress=False)
    leftover = tmp_path / "r" / "checkpoints" / ".last.pt.k1ll3d"  # an atomic write cut short by kill -9
    leftover.parent.mkdir()
    leftover.write_bytes(b"half a checkpoint")
    resumed = train(validate_config(raw), tmp_path / "r", resume=True, progress=False)
    reference = train(validate_config(raw), tmp_path / "reference", progress=False)
    assert _without_time(resumed.history) == _without_time(reference.history)
    assert not leftover.exists()


def test_resume__a_recipe_in_place_of_the_recorded_config_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(TINY))
    assert cli_main(["resume", str(run)]) == 2
    assert "not a run's recorded config" in capsys.readouterr().err


def test_resume__a_directory_that_cannot_be_read_is_one_error(tmp_path, monkeypatch):
    from pathlib import Path

    from contrastlab.train.api import recorded_run
    from contrastlab.train.rundir import RunDir, RunDirError

    run = tmp_path / "run"
    run.mkdir()
    real = Path.is_file

    def denied(self):
        if self.parent == run:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "is_file", denied)  # a directory without search permission, as root cannot be
    with pytest.raises(RunDirError, match=r"cannot be read \(Permission denied\)"):
        recorded_run(RunDir(run))
