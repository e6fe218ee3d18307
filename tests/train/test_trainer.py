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
from contrastlab.cli import main as cli_main
from contrastlab.train import TrainingDiverged, load_checkpoint, read_history, train, validate_config
from contrastlab.train.checkpoint import CheckpointError

TINY = {
    "name": "tiny",
    "data": {"name": "blobs", "options": {"n_samples": 240, "n_features": 8, "n_classes": 3}},
    "model": {"hidden_dims": [16], "embedding_dim": 8, "projection_dim": 8, "dropout": 0.1},
    "objective": {"supcon": {"weight": 0.2, "temperature": 0.2}, "rdrop": {"weight": 0.1}},
    "trainer": {
        "epochs": 4,
        "batch_size": 24,
        "lr": 0.01,
        "views": {"count": 2},
        "sampler": {"name": "class_balanced", "m_per_class": 4},
        "term_grad_norm_every": 2,
        "early_stopping": {"monitor": "val/accuracy", "mode": "max"},
    },
}


def _without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_train__end_to_end_writes_a_complete_run_directory(tmp_path):
    result = train(validate_config(TINY), tmp_path / "run", raw_config=TINY, progress=False)
    run = tmp_path / "run"
    assert any((tmp_path / "run" / "events").iterdir())  # TensorBoard events
    for name in ("config.yaml", "history.csv", "metrics.json", "split.json", "checkpoints/last.pt",
                 "checkpoints/best.pt", "embeddings/val.npz", "embeddings/test.npz"):  # fmt: skip
        assert (run / name).is_file(), name
    history = read_history(run / "history.csv")
    assert len(history) == 4
    row = history[-1]
    for column in ("train/task", "train/supcon", "train/rdrop", "weight/supcon", "val/accuracy", "val/loss",
                   "gap/accuracy", "lr", "grad_norm/task", "grad_norm/supcon", "train/positives_per_anchor",
                   "train/no_positive_share", "skipped_steps", "seconds"):  # fmt: skip
        assert column in row, column
    assert row["train/no_positive_share"] == 0.0  # the class-balanced sampler guarantees positives
    assert result.history[-1]["val/accuracy"] > 0.5  # three well-separated classes: it learned something
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"]["metric"] == "val/accuracy" and "accuracy" in metrics["test"]


def test_train__resume_after_kill_9_mid_epoch_equals_an_uninterrupted_run(tmp_path):
    reference = train(validate_config(TINY), tmp_path / "ref", raw_config=TINY, progress=False)
    killed = tmp_path / "killed"
    steps_per_epoch = (240 * 3 // 5) // 24  # the train split's batches
    script = Path(__file__).with_name("_killed_run.py")
    kill_at = steps_per_epoch * 2 + 3  # mid-way through the third epoch
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(TINY), str(killed), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["epoch"] == 1  # two epochs were saved
    resumed = train(validate_config(TINY), killed, resume=True, progress=False)
    assert _without_time(resumed.history) == _without_time(reference.history)
    ref_state = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")["model"]
    new_state = load_checkpoint(killed / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(ref_state[k], new_state[k]) for k in ref_state)


def test_resume__with_a_new_weight_is_allowed_and_recorded(tmp_path):
    raw = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}
    run = tmp_path / "run"
    assert cli_main(["train", _recipe(tmp_path, raw), "--runs-dir", str(tmp_path), "--name", "run"]) == 0
    assert cli_main(["resume", str(run), "trainer.epochs=3", "objective.supcon.weight=0.5"]) == 0
    history = read_history(run / "history.csv")
    assert [row["weight/supcon"] for row in history] == [0.2, 0.2, 0.5]
    recorded = (run / "config.yaml").read_text()
    assert "objective.supcon.weight=0.5" in recorded


def test_nan_guard__skips_bad_steps_and_stops_with_a_report(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = terms_module.supcon

    def sometimes_nan(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return value * math.nan if calls["n"] % 3 == 0 else value

    monkeypatch.setattr(terms_module, "supcon", sometimes_nan)
    config = validate_config(TINY)
    result = train(config, tmp_path / "flaky", progress=False)
    assert sum(row["skipped_steps"] for row in result.history) > 0
    assert all(math.isfinite(v) for row in result.history for k, v in row.items() if k.startswith("train/"))

    monkeypatch.setattr(terms_module, "supcon", lambda *a, **k: real(*a, **k) * math.nan)
    with pytest.raises(TrainingDiverged) as info:
        train(config, tmp_path / "broken", progress=False)
    report = info.value.report
    assert report["non_finite"] == ["supcon"] and report["consecutive_skips"] == 5
    assert report["temperature"] == 0.2 and math.isfinite(report["max_logit"])


def test_accumulation__two_micro_batches_of_12_train_exactly_like_one_batch_of_24(tmp_path):
    # The random sampler cuts one permutation into batches, so 2 x 12 are the rows of 1 x 24.
    plain = {**TINY, "objective": {"task": "cross_entropy"},
             "model": {**TINY["model"], "dropout": 0.0},
             "trainer": {**TINY["trainer"], "epochs": 2, "views": {"count": 1},
                         "sampler": {"name": "random"}}}
    whole = train(validate_config(plain), tmp_path / "whole", progress=False)
    halves = {**plain, "trainer": {**plain["trainer"], "batch_size": 12, "accumulate": 2}}
    accumulated = train(validate_config(halves), tmp_path / "halves", progress=False)
    for key in ("train/task", "val/loss", "train/grad_norm"):
        expected = [r[key] for r in whole.history]
        assert [r[key] for r in accumulated.history] == pytest.approx(expected, rel=1e-5)
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "halves" / "checkpoints" / "last.pt")["model"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6)


def test_param_groups__layer_decay_head_lr_and_freezing(tmp_path):
    from contrastlab.models import build_model
    from contrastlab.train.config import TrainerConfig
    from contrastlab.train.optim import param_groups

    model = build_model("mlp", num_features=4, num_outputs=2, hidden_dims=[8, 8], embedding_dim=4,
                        projection_dim=4, dropout=0.0)  # fmt: skip
    groups = param_groups(model, TrainerConfig(lr=1.0, head_lr=5.0, layer_decay=0.5, freeze_all_but_last=2))
    assert [(g["name"], g["lr"]) for g in groups] == [("encoder.2", 1.0), ("encoder.1", 0.5), ("head", 5.0)]
    assert not any(p.requires_grad for p in model.encoder.layers[0].parameters())


def test_checkpoint__truncated_and_foreign_files_get_clear_errors(tmp_path):
    one_epoch = validate_config({**TINY, "trainer": {**TINY["trainer"], "epochs": 1}})
    train(one_epoch, tmp_path / "r", progress=False)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable contrastlab checkpoint"):
        load_checkpoint(last)
    torch.save({"weights": torch.zeros(1)}, last)
    with pytest.raises(CheckpointError, match="is not a contrastlab-checkpoint-v1 file"):
        load_checkpoint(last)


def test_cli__config_error_exits_2_with_the_message(tmp_path, capsys):
    args = ["train", _recipe(tmp_path, TINY), "objective.supcon.wieght=1", "--runs-dir", str(tmp_path)]
    assert cli_main(args) == 2
    assert "did you mean 'objective.supcon.weight'" in capsys.readouterr().err


def _recipe(tmp_path: Path, raw: dict) -> str:
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize(("amp", "rel"), [("bf16", 0.05), ("fp16", 0.01)])  # bf16 keeps ~3 digits
def test_train__autocast_tracks_the_float32_run(tmp_path, amp, rel):
    raw = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}
    fp32 = train(validate_config(raw), tmp_path / "fp32", progress=False)
    low = train(validate_config({**raw, "trainer": {**raw["trainer"], "amp": amp}}), tmp_path / amp,
                progress=False)  # fmt: skip
    for key in ("train/task", "train/supcon", "val/loss"):
        for ours, ref in zip(low.history, fp32.history, strict=True):
            assert ours[key] == pytest.approx(ref[key], rel=rel), key
    assert all(row["skipped_steps"] == 0 for row in low.history)
    if amp == "fp16":
        scaler = load_checkpoint(tmp_path / amp / "checkpoints" / "last.pt")["scaler"]
        assert scaler["scale"] == 2.0**16  # no overflow on this run: the scale never backed off


def test_schedulers__warmup_cosine_and_plateau_change_the_learning_rate(tmp_path):
    schedule = {"name": "warmup_cosine", "warmup_epochs": 1}
    cosine = {**TINY, "trainer": {**TINY["trainer"], "scheduler": schedule}}
    lrs = [row["lr"] for row in train(validate_config(cosine), tmp_path / "cos", progress=False).history]
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] < 1e-6  # warm-up reaches the peak, cosine decays to 0
    plateau = {
        **TINY,
        "trainer": {
            **TINY["trainer"],
            # train/task never exceeds its first value by much, so "max" mode sees no improvement.
            "scheduler": {"name": "plateau", "monitor": "train/task", "mode": "max", "patience": 0},
        },
    }
    lrs = [row["lr"] for row in train(validate_config(plateau), tmp_path / "plateau", progress=False).history]
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] < lrs[0]


def test_early_stopping__stops_after_patience_and_keeps_the_best(tmp_path):
    raw = {
        **TINY,
        "trainer": {
            **TINY["trainer"],
            "epochs": 10,
            "early_stopping": {"monitor": "train/task", "mode": "max", "patience": 2},
        },
    }
    result = train(validate_config(raw), tmp_path / "es", progress=False)
    assert result.stopped_early and len(result.history) < 10
    best_epoch = max(range(len(result.history)), key=lambda i: result.history[i]["train/task"]) + 1
    assert result.best["epoch"] == best_epoch
    assert load_checkpoint(tmp_path / "es" / "checkpoints" / "best.pt")["epoch"] == best_epoch - 1


def test_console__each_epoch_line_shows_every_term_and_the_end_says_why(tmp_path, capsys):
    raw = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}
    train(validate_config(raw), tmp_path / "budget", progress=False)
    err = capsys.readouterr().err
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert all("train/supcon=" in line and "train/rdrop=" in line for line in epoch_lines)
    assert "trained the epoch budget (2); best val/accuracy" in err and "evaluating that checkpoint" in err
    stop = {**TINY, "trainer": {**TINY["trainer"], "epochs": 30,
                                "early_stopping": {"monitor": "train/task", "mode": "max", "patience": 1}}}
    train(validate_config(stop), tmp_path / "early", progress=False)
    assert "stopped early after epoch 2: no better train/task for 1 epochs" in capsys.readouterr().err


def test_console__without_a_terminal_progress_appears_during_the_epoch(tmp_path, capsys, monkeypatch):
    import contrastlab.train.progress as progress_module

    monkeypatch.setattr(progress_module, "PROGRESS_SECONDS", 0.0)  # every step, for the test
    raw = {**TINY, "trainer": {**TINY["trainer"], "epochs": 1}}
    train(validate_config(raw), tmp_path / "r", progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if ": step " in line]
    assert lines and lines[0].startswith("epoch 1/1: step 1/") and "steps/s, about" in lines[0]
    train(validate_config(raw), tmp_path / "q", progress=False, quiet=True)
    assert ": step " not in capsys.readouterr().err


def test_tensorboard__every_step_every_epoch_and_the_hyperparameters_beside_the_results(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    raw = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}
    result = train(validate_config(raw), tmp_path / "r", progress=False, quiet=True)
    events = EventAccumulator(str(tmp_path / "r" / "events"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"step/loss", "step/task", "step/supcon", "step/rdrop", "train/loss", "val/accuracy"} <= scalars
    # each term's weight and the gradient norms, per step (the per-term norms every term_grad_norm_every)
    assert {"step/weight/supcon", "step/grad_norm", "step/grad_norm/task", "step/grad_norm/supcon"} <= scalars
    assert {"weight/supcon", "grad_norm/supcon", "train/grad_norm"} <= scalars
    steps = [e.step for e in events.Scalars("step/loss")]
    global_step = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["global_step"]
    assert steps == list(range(1, global_step + 1))  # every optimiser step, once
    assert result.history[-1]["epoch"] == 2
    assert len(events.Scalars("val/accuracy")) == 2
    hparams = events.PluginTagToContent("hparams")
    assert hparams, "no HPARAMS data"
    assert "hparam/test.accuracy" in scalars


def test_supcon_without_a_task_head_is_supervised_on_labelled_data(tmp_path):
    # Khosla et al.'s first stage: SupCon alone (objective.task none) on a classification dataset pairs
    # by class. The labels used to be dropped with the task, so SupCon silently became self-supervised
    # (and with one view had no positives at all).
    raw = {**TINY, "objective": {"task": "none", "supcon": {"weight": 1.0, "temperature": 0.2}},
           "trainer": {**TINY["trainer"], "epochs": 1, "views": {"count": 1},
                       "early_stopping": {"monitor": "train/loss"}}}  # fmt: skip
    result = train(validate_config(raw), tmp_path / "r", progress=False, quiet=True)
    assert result.history[0]["train/supcon"] > 0
    from contrastlab.train.build import build_parts

    parts = build_parts(validate_config(raw), torch.device("cpu"), 0, 1)
    assert parts.objective.classification  # labels reach the terms
