"""What the loop guarantees and once broke silently: every dropped step is counted (fp16 included), only
applied steps are logged, accumulation steps once per window, auto-λ adapts once per optimiser step and
survives resume, every MoCo micro-batch's keys reach the queue, and an early-stopped run stays stopped."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import contrastlab.train.terms.supcon as terms_module  # the supcon term calls its module's supcon
from contrastlab.train import ConfigError, TrainingDiverged, load_checkpoint, train, validate_config
from contrastlab.train.checkpoint import TrainState
from contrastlab.train.objective import Objective
from tests.train.test_trainer import TINY, _without_time

BATCHES_PER_EPOCH = (240 * 3 // 5) // 24  # TINY's train split: 144 rows in batches of 24


def _with(**trainer):
    return {**TINY, "trainer": {**TINY["trainer"], **trainer}}


class _InfGradient(torch.autograd.Function):
    """The identity forward, an infinite gradient backward (a finite loss whose step overflows)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


def _supcon_breaking_on(monkeypatch, calls_to_break, how):
    """Patches the objective's supcon so that the given 1-based calls of training steps return NaN or an
    infinite gradient (call 0 is the check before the run, loop.dry_step)."""
    real, calls = terms_module.supcon, {"n": -1}

    def patched(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        if calls_to_break == "all" or calls["n"] in calls_to_break:
            return value * math.nan if how == "nan" else _InfGradient.apply(value)
        return value

    monkeypatch.setattr(terms_module, "supcon", patched)
    return calls


def test_fp16__steps_the_grad_scaler_drops_are_counted_and_k_in_a_row_stop_the_run(tmp_path, monkeypatch):
    # Seen failing before the fix: skipped_steps 0 (GradScaler dropped the steps silently), no stop.
    broken = {2, 5}
    _supcon_breaking_on(monkeypatch, broken, "inf")
    raw = _with(epochs=1, amp="fp16")
    result = train(validate_config(raw), tmp_path / "some", progress=False)
    assert result.history[0]["skipped_steps"] == len(broken)

    _supcon_breaking_on(monkeypatch, "all", "inf")
    with pytest.raises(TrainingDiverged) as info:
        train(validate_config(raw), tmp_path / "all", progress=False)
    assert info.value.report["non_finite"] == ["gradient"] and info.value.report["consecutive_skips"] == 5


def test_accumulation__a_dropped_window_leaves_nothing_in_the_logged_means(tmp_path, monkeypatch):
    # Seen failing before the fix: the first micro-batch of a dropped window stayed in the logged sums.
    tasks: list[float] = []
    real_call = Objective.__call__

    def recording(self, *args, **kwargs):
        value = real_call(self, *args, **kwargs)
        tasks.append(float(value.task.detach()))
        return value

    monkeypatch.setattr(Objective, "__call__", recording)
    _supcon_breaking_on(monkeypatch, {4}, "nan")  # the 2nd micro-batch of the 2nd window of 3
    result = train(validate_config(_with(epochs=1, accumulate=2)), tmp_path / "r", progress=False)
    row = result.history[0]
    assert row["skipped_steps"] == 1
    tasks = tasks[1:]  # the first call is the check before the run (loop.dry_step)
    applied = [t for i, t in enumerate(tasks[:BATCHES_PER_EPOCH]) if i not in (2, 3)]
    assert row["train/task"] == pytest.approx(sum(applied) / len(applied), rel=1e-6)


def test_accumulation__every_window_dropped_logs_nan_not_the_dropped_losses(tmp_path, monkeypatch):
    _supcon_breaking_on(monkeypatch, set(range(2, 100, 2)), "nan")
    raw = _with(epochs=1, accumulate=2, max_consecutive_skips=100)
    result = train(validate_config(raw), tmp_path / "r", progress=False)
    assert result.history[0]["skipped_steps"] == BATCHES_PER_EPOCH // 2
    assert math.isnan(result.history[0]["train/task"])


def _killed(raw: dict, run_dir: Path, kill_at_step: int) -> None:
    script = Path(__file__).with_name("_killed_run.py")
    proc = subprocess.run([sys.executable, str(script), json.dumps(raw), str(run_dir), str(kill_at_step)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_accumulation_that_does_not_divide_the_epoch__steps_on_the_rest_and_resumes_exactly(tmp_path):
    # 6 batches, accumulate 4: windows of 4 and 2, two optimiser steps an epoch. Seen failing before the
    # fix: the last 2 batches' gradients carried into the next epoch, and were lost on resume.
    raw = _with(epochs=3, accumulate=4)
    reference = train(validate_config(raw), tmp_path / "ref", progress=False)
    assert load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")["global_step"] == 3 * 2
    _killed(raw, tmp_path / "killed", kill_at_step=3)  # the first step of the second epoch
    resumed = train(validate_config(raw), tmp_path / "killed", resume=True, progress=False)
    assert _without_time(resumed.history) == _without_time(reference.history)


def test_auto_lambda__refused_when_gradient_norms_are_never_measured():
    raw = {**TINY, "objective": {"supcon": {"weight": 0.2, "auto_ratio": 0.5}},
           "trainer": {**TINY["trainer"], "term_grad_norm_every": 0}}  # fmt: skip
    with pytest.raises(ConfigError, match="term_grad_norm_every"):
        validate_config(raw)


AUTO = {**TINY, "objective": {"supcon": {"weight": 0.2, "temperature": 0.2, "auto_ratio": 0.3}},
        "trainer": {**TINY["trainer"], "term_grad_norm_every": 1, "accumulate": 2}}  # fmt: skip


def test_auto_lambda__adapts_once_per_optimiser_step(tmp_path, monkeypatch):
    # Seen failing before the fix: 6 adaptations an epoch (one per micro-batch) for 3 optimiser steps.
    calls = {"n": 0}
    real = Objective.adapt

    def counting(self, ratios):
        calls["n"] += 1
        return real(self, ratios)

    monkeypatch.setattr(Objective, "adapt", counting)
    two_epochs = {**AUTO, "trainer": {**AUTO["trainer"], "epochs": 2}}
    train(validate_config(two_epochs), tmp_path / "r", progress=False)
    assert calls["n"] == 2 * BATCHES_PER_EPOCH // 2


def test_auto_lambda__kill_and_resume_and_an_epochs_override_keep_the_adapted_weight(tmp_path):
    # Seen failing before the fix: any override on resume (even trainer.epochs) reset λ to the configured 0.2.
    reference = train(validate_config(AUTO), tmp_path / "ref", progress=False)
    weights = [row["weight/supcon"] for row in reference.history]
    assert len(set(weights)) > 1 and weights[-1] != 0.2  # it adapted
    _killed(AUTO, tmp_path / "killed", kill_at_step=4)
    resumed = train(validate_config(AUTO), tmp_path / "killed", resume=True, progress=False)
    assert _without_time(resumed.history) == _without_time(reference.history)

    short = {**AUTO, "trainer": {**AUTO["trainer"], "epochs": 2}}
    train(validate_config(short), tmp_path / "extended", progress=False)
    extended = train(validate_config(AUTO), tmp_path / "extended", resume=True, progress=False,
                     override_note=["trainer.epochs=4"])  # fmt: skip
    assert [row["weight/supcon"] for row in extended.history] == weights

    reset = train(validate_config(_set_weight(AUTO, 0.5)), tmp_path / "ref", resume=True, progress=False,
                  override_note=["trainer.epochs=5", "objective.supcon.weight=0.5"])  # fmt: skip
    del reset
    state = TrainState.load(tmp_path / "ref" / "checkpoints" / "last.pt").weights["supcon"]
    assert 0.5 * 0.5**3 <= state <= 0.5 * 2**3  # three adaptations from the new 0.5, not from the old λ
    assert state != pytest.approx(weights[-1])


def _set_weight(raw: dict, weight: float) -> dict:
    objective = {**raw["objective"], "supcon": {**raw["objective"]["supcon"], "weight": weight}}
    return {**raw, "objective": objective, "trainer": {**raw["trainer"], "epochs": 5}}


def test_moco_with_accumulation__every_micro_batch_is_enqueued(tmp_path):
    # Seen failing before the fix: 72 of the epoch's 144 keys reached the queue (one micro-batch in two).
    raw = {**TINY, "objective": {"moco": {"weight": 0.5, "queue_size": 1000}},
           "trainer": {**TINY["trainer"], "epochs": 1, "accumulate": 2,
                       "sampler": {"name": "random"}}}  # fmt: skip
    train(validate_config(raw), tmp_path / "r", progress=False)
    queue = TrainState.load(tmp_path / "r" / "checkpoints" / "last.pt").queue
    assert queue is not None
    assert int(queue["_count"]) == BATCHES_PER_EPOCH * 24


ES = _with(epochs=10, early_stopping={"monitor": "train/task", "mode": "max", "patience": 2})


def test_early_stopping__a_stopped_run_resumes_to_the_same_end(tmp_path):
    # Seen failing before the fix: resume trained another epoch after the stop.
    reference = train(validate_config(ES), tmp_path / "ref", progress=False)
    assert reference.stopped_early and len(reference.history) < 10
    again = train(validate_config(ES), tmp_path / "ref", resume=True, progress=False)
    assert _without_time(again.history) == _without_time(reference.history) and again.stopped_early

    stop_epoch = len(reference.history)

    class Killed(Exception):
        pass

    def die(epoch, row):
        if epoch == stop_epoch:  # after the stop epoch's checkpoint, before the final evaluation
            raise Killed

    with pytest.raises(Killed):
        train(validate_config(ES), tmp_path / "killed", progress=False, on_epoch=die)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    resumed = train(validate_config(ES), tmp_path / "killed", resume=True, progress=False)
    assert _without_time(resumed.history) == _without_time(reference.history)
    assert resumed.test == reference.test and (tmp_path / "killed" / "metrics.json").is_file()
