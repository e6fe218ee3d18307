"""Callbacks: every hook is called when the docstring says, a stop ends the run cleanly after its epoch
(checkpoint, test metrics, files), a stop without finishing leaves no test evaluation, and a failing run
tells every callback so."""

from __future__ import annotations

import json

import pytest

import contrastlab
from contrastlab.train import Callback, train, validate_config
from tests.train.test_trainer import TINY

QUICK = {**TINY, "trainer": {**TINY["trainer"], "epochs": 4}}
STEPS_PER_EPOCH = (240 * 3 // 5) // 24  # TINY: 144 training rows in batches of 24


class Recorder(Callback):
    def __init__(self, stop_after: int | None = None, finish: bool = True) -> None:
        self.calls: list[str] = []
        self.stop_after, self.finish = stop_after, finish
        self.ended: tuple[object, str] | None = None

    def on_fit_start(self, state, control):
        self.calls.append("fit_start")

    def on_step_end(self, step, control):
        self.calls.append("step")

    def on_epoch_end(self, row, state, control):
        self.calls.append(f"epoch {row['epoch']}")
        if self.stop_after is not None and row["epoch"] == self.stop_after:
            control.stop(f"the recorder stops after epoch {self.stop_after}", finish=self.finish)

    def on_save(self, row, state, control):
        assert state.history[-1] is row  # the epoch's checkpoint is written with this row
        self.calls.append(f"saved {row['epoch']}")

    def on_fit_end(self, result, status):
        self.ended = (result, status)


def test_every_hook_is_called_in_order(tmp_path):
    recorder = Recorder()
    result = train(validate_config(QUICK), tmp_path / "run", progress=False, quiet=True, callbacks=[recorder])
    per_epoch = ["step"] * STEPS_PER_EPOCH
    expected = ["fit_start"]
    for epoch in range(1, 5):
        expected += [*per_epoch, f"epoch {epoch}", f"saved {epoch}"]
    assert recorder.calls == expected
    assert recorder.ended == (result, "FINISHED")


def test_a_callback_stops_the_run_after_epoch_two_from_fit(tmp_path, capsys):
    result = contrastlab.fit(QUICK, run_dir=tmp_path / "run", callbacks=[Recorder(stop_after=2)])
    assert len(result.history) == 2 and result.stopped_early and result.finished
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["stopped_early"] and "accuracy" in metrics["test"]
    assert "the recorder stops after epoch 2; best val/accuracy" in capsys.readouterr().err
    resumed = contrastlab.resume(tmp_path / "run", quiet=True)  # the stop is the callback's, not the run's
    assert len(resumed.history) == 4


def test_a_stop_without_finishing_evaluates_nothing(tmp_path):
    recorder = Recorder(stop_after=1, finish=False)
    result = train(validate_config(QUICK), tmp_path / "run", progress=False, quiet=True, callbacks=[recorder])
    assert not result.finished and result.test == {} and len(result.history) == 1
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert recorder.ended == (result, "KILLED")


def test_a_failing_run_tells_every_callback(tmp_path):
    class Boom(Callback):
        def on_epoch_end(self, row, state, control):
            raise KeyError("a bug in a callback keeps its traceback")

    recorder = Recorder()
    with pytest.raises(KeyError, match="a bug in a callback"):
        train(validate_config(QUICK), tmp_path / "run", quiet=True, callbacks=[recorder, Boom()])
    assert recorder.ended == (None, "FAILED")
