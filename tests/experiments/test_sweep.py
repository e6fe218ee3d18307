from __future__ import annotations

import json
import re

import pytest
import yaml

pytest.importorskip("optuna")

import optuna

from contrastlab.cli import main as cli_main
from contrastlab.experiments import sweep as sweep_module
from contrastlab.experiments.sweep import parse_param, run_sweep
from contrastlab.train.callbacks import Control
from tests.train.test_trainer import TINY

QUICK = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}


def test_parse_param():
    assert parse_param("objective.supcon.weight=0.05,0.1") == ("objective.supcon.weight", [0.05, 0.1])
    assert parse_param("trainer.amp=off,bf16") == ("trainer.amp", ["off", "bf16"])
    assert parse_param("x=1e-3") == ("x", [0.001])
    with pytest.raises(ValueError, match=r"must look like key\.path=v1,v2"):
        parse_param("objective.supcon.weight")
    # a value may be a list or a mapping: commas inside brackets or quotes do not separate values
    assert parse_param("model.hidden_dims=[8, 8],[16]") == ("model.hidden_dims", [[8, 8], [16]])
    assert parse_param("a={x: 1, y: 2},'p,q'") == ("a", [{"x": 1, "y": 2}, "p,q"])


def test_sweep__list_values_run_as_written_and_label_the_trials(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**QUICK, "trainer": {**QUICK["trainer"], "epochs": 1}}))
    out = tmp_path / "sweep"
    args = ["sweep", str(recipe), "--param", "model.hidden_dims=[16],[16, 8]", "--out", str(out),
            "--no-prune"]
    assert cli_main(args) == 0
    result = json.loads((out / "sweep.json").read_text())
    ran = {}
    for t in result["trials"]:
        config = yaml.safe_load((out / "trials" / f"trial{t['number']:03d}" / "config.yaml").read_text())
        ran[t["params"]["model.hidden_dims"]] = config["config"]["model"]["hidden_dims"]
    assert ran == {"[16]": [16], "[16, 8]": [16, 8]}
    assert result["params"] == {"model.hidden_dims": ["[16]", "[16, 8]"]}
    assert (out / "heatmap.png").stat().st_size > 0


def test_sweep__grid_from_the_cli_writes_trials_json_and_heatmap(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(QUICK))
    out = tmp_path / "sweep"
    args = ["sweep", str(recipe), "--param", "objective.supcon.weight=0.1,0.3",
            "--param", "objective.supcon.temperature=0.1,0.2", "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0
    assert "4 trials" in capsys.readouterr().out
    result = json.loads((out / "sweep.json").read_text())
    points = {(t["params"]["objective.supcon.weight"], t["params"]["objective.supcon.temperature"])
              for t in result["trials"]}  # fmt: skip
    assert points == {(0.1, 0.1), (0.1, 0.2), (0.3, 0.1), (0.3, 0.2)}
    for t in result["trials"]:
        history = (out / "trials" / f"trial{t['number']:03d}" / "history.csv").read_text()
        assert "weight/supcon" in history  # each trial is a normal run directory
    assert result["best"]["value"] == max(t["value"] for t in result["trials"] if t["state"] == "COMPLETE")
    assert (out / "heatmap.png").stat().st_size > 0
    from contrastlab.experiments.results import SweepResult

    typed = SweepResult.from_json(out)
    assert typed.to_dict() == result  # sweep.json reads into the typed result and back
    assert str(typed).startswith("4 trials: ") and typed._repr_html_().count("<tr>") == 1 + 4


def test_sweep__resume_runs_only_the_missing_points(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(QUICK))
    out = tmp_path / "sweep"
    out.mkdir()
    # The state a killed grid sweep leaves: two points done, the third RUNNING in a dead worker.
    key, choices = "objective.supcon.weight", [0.1, 0.3, 0.5]
    dist = {key: optuna.distributions.CategoricalDistribution(choices)}
    study = optuna.create_study(study_name="r", storage=f"sqlite:///{out / 'sweep.db'}", direction="maximize")
    for done in (0.1, 0.3):
        study.add_trial(optuna.trial.create_trial(params={key: done}, distributions=dist, value=0.5))
    study.enqueue_trial({key: 0.5})
    study.ask(dist)
    result = run_sweep(recipe, {key: choices}, out_dir=out)
    states = [(t.params.get(key), t.state) for t in result.trials]
    assert states.count((0.1, "COMPLETE")) == 1 and states.count((0.3, "COMPLETE")) == 1  # not re-run
    assert (0.5, "FAIL") in states and (0.5, "COMPLETE") in states  # the dead trial, then its rerun
    assert len(states) == 4
    assert not (out / "trials" / "trial000").exists()  # no run for the points already done


def test_sweep__no_prune_runs_every_trial_to_the_end(tmp_path, monkeypatch, capsys):
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    monkeypatch.setattr(optuna.pruners, "MedianPruner", lambda **_: AlwaysPrune())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(QUICK))
    args = ["sweep", str(recipe), "--param", "objective.supcon.weight=0.1,0.3"]
    assert cli_main([*args, "--out", str(tmp_path / "pruned")]) == 0
    assert "pruned 2" in capsys.readouterr().out
    assert cli_main([*args, "--out", str(tmp_path / "all"), "--no-prune"]) == 0
    assert "complete 2" in capsys.readouterr().out
    result = json.loads((tmp_path / "all" / "sweep.json").read_text())
    for t in result["trials"]:
        history = (tmp_path / "all" / "trials" / f"trial{t['number']:03d}" / "history.csv").read_text()
        assert len(history.strip().splitlines()) == 1 + QUICK["trainer"]["epochs"]


def test_sweep__pruning_waits_for_the_first_third_of_the_epochs(tmp_path, monkeypatch):
    # Scripted val/accuracy curves: a slow starter that ends best must not be cut at epoch 1 or 2 (as a
    # median pruner with no warm-up did), while a trial that stays worst is still pruned after the warm-up.
    curves = {0.1: [0.5] * 6, 0.2: [0.5] * 6, 0.3: [0.1, 0.1, 0.9, 0.9, 0.9, 0.9], 0.4: [0.1] * 6}
    seen = {}

    def fake_train(config, run_dir, *, callbacks, **_):
        curve = curves[config.objective.supcon.weight]
        control = Control()
        for epoch, value in enumerate(curve, start=1):
            seen.setdefault(config.objective.supcon.weight, []).append(epoch)
            for callback in callbacks:
                callback.on_save({"epoch": epoch, "val/accuracy": value}, None, control)
            if control.should_stop:
                break
        return type("Result", (), {"best": {"value": max(curve)}, "finished": control.finish})()

    monkeypatch.setattr(sweep_module, "train", fake_train)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**QUICK, "trainer": {**QUICK["trainer"], "epochs": 6}}))
    result = run_sweep(recipe, {"objective.supcon.weight": list(curves)}, out_dir=tmp_path / "s")
    states = {t.params["objective.supcon.weight"]: t.state for t in result.trials}
    assert states == {0.1: "COMPLETE", 0.2: "COMPLETE", 0.3: "COMPLETE", 0.4: "PRUNED"}
    assert result.best.params == {"objective.supcon.weight": 0.3}
    assert seen[0.4] == [1, 2, 3]  # pruned at the first epoch after the first third (6 // 3 + 1)


def test_sweep__tpe_does_not_train_a_point_twice(tmp_path, monkeypatch):
    # TPE draws categorical points again (a FreeSolv study re-ran the same 5 settings); the trial takes the
    # earlier trial's value and run instead of training the same thing twice
    trained = []

    def fake_train(config, run_dir, *, callbacks, **_):
        trained.append(config.objective.supcon.weight)
        for callback in callbacks:
            callback.on_save({"epoch": 1, "val/accuracy": config.objective.supcon.weight}, None, Control())
        return type("Result", (), {"best": {"value": config.objective.supcon.weight}, "finished": True})()

    monkeypatch.setattr(sweep_module, "train", fake_train)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**QUICK, "trainer": {**QUICK["trainer"], "epochs": 1}}))
    result = run_sweep(recipe, {"objective.supcon.weight": [0.1, 0.2]}, out_dir=tmp_path / "s", sampler="tpe",
                       trials=6, prune=False)  # fmt: skip
    assert len(result.trials) == 6 and sorted(trained) == [0.1, 0.2]
    first = {}
    for t in result.trials:
        weight = t.params["objective.supcon.weight"]
        first.setdefault(weight, t)
        assert t.value == weight and t.run_dir == first[weight].run_dir
        assert t.same_as == (None if t is first[weight] else first[weight].number)


def test_sweep__tpe_runs_the_requested_number_of_trials(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**QUICK, "trainer": {**QUICK["trainer"], "epochs": 1}}))
    result = run_sweep(recipe, {"objective.supcon.weight": [0.0, 0.1, 0.2, 0.4]}, out_dir=tmp_path / "s",
                       sampler="tpe", trials=3)  # fmt: skip
    assert len(result.trials) == 3
    with pytest.raises(ValueError, match="--sampler tpe needs --trials N"):
        run_sweep(recipe, {"objective.supcon.weight": [0.1]}, out_dir=tmp_path / "t", sampler="tpe")


def _grid_points(result):
    return sorted(
        (t["params"]["objective.supcon.weight"], t["params"]["objective.supcon.temperature"])
        for t in result["trials"]
        if t["state"] in ("COMPLETE", "PRUNED")
    )


def test_sweep__two_workers_share_one_postgresql_study(tmp_path):
    import subprocess
    import sys

    from tests.postgres import postgres_server

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**QUICK, "trainer": {**QUICK["trainer"], "epochs": 3}}))
    out = tmp_path / "sweep"
    weights, temperatures = [0.0, 0.1, 0.3], [0.1, 0.2]
    with postgres_server() as url:
        command = [sys.executable, "-m", "contrastlab", "sweep", str(recipe), "--storage", url,
                   "--out", str(out), "--param", "objective.supcon.weight=" + ",".join(map(str, weights)),
                   "--param", "objective.supcon.temperature=" + ",".join(map(str, temperatures))]  # fmt: skip
        # Files, not pipes: a worker blocked on a full pipe would hold its trial and stall the other.
        logs = [tmp_path / f"worker{i}.log" for i in range(2)]
        workers = [subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
        for worker, log in zip(workers, logs, strict=True):
            assert worker.wait(timeout=300) == 0, log.read_text()[-3000:]
        # Read everything while the server runs: the block's end stops it.
        trials = optuna.load_study(study_name="r", storage=url).get_trials()
    states = [t.state for t in trials]
    outputs = [log.read_text() for log in logs]
    ran = [set(re.findall(r"\[sweep\] trial (\d+)", text)) for text in outputs]
    assert all(ran), "both workers ran trials"
    assert not ran[0] & ran[1], "no trial ran in both workers"
    result = json.loads((out / "sweep.json").read_text())
    # Every grid point finished exactly once across the two workers, and the summary has all of them.
    assert _grid_points(result) == sorted((w, t) for w in weights for t in temperatures)
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states
    for t in result["trials"]:
        if t["state"] == "FAIL":  # only a point enqueued twice at the same moment may end like this
            assert "duplicate_of" in trials[t["number"]].user_attrs


def test_sweep__shared_storage_reruns_a_silent_workers_trial(tmp_path, monkeypatch):
    import time

    from contrastlab.experiments import sweep as sweep_module

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(QUICK))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    key, choices = "objective.supcon.weight", [0.1, 0.3]
    # Another worker claimed 0.3, beat once and went silent for longer than the grace period.
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="r", storage=storage, direction="maximize")
    study.enqueue_trial({key: 0.3})
    dead = study.ask({key: optuna.distributions.CategoricalDistribution(choices)})
    storage.record_heartbeat(dead._trial_id)
    monkeypatch.setattr(sweep_module, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(sweep_module, "GRACE_SECONDS", 1)
    monkeypatch.setattr(sweep_module, "POLL_SECONDS", 0.1)
    time.sleep(2.1)
    result = run_sweep(recipe, {key: choices}, out_dir=tmp_path / "s", storage=url)
    states = sorted((t.params.get(key), t.state) for t in result.trials)
    assert states == [(0.1, "COMPLETE"), (0.3, "COMPLETE"), (0.3, "FAIL")]


def test_sweep__a_point_enqueued_twice_runs_once(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(QUICK))
    out = tmp_path / "s"
    out.mkdir()
    key = "objective.supcon.weight"
    study = optuna.create_study(study_name="r", storage=f"sqlite:///{out / 'sweep.db'}", direction="maximize")
    study.enqueue_trial({key: 0.1})
    study.enqueue_trial({key: 0.1})  # two workers racing to enqueue the same point
    result = run_sweep(recipe, {key: [0.1]}, out_dir=out)
    assert sorted(t.state for t in result.trials) == ["COMPLETE", "FAIL"]
    failed = optuna.load_study(study_name="r", storage=f"sqlite:///{out / 'sweep.db'}").trials[1]
    assert failed.user_attrs["duplicate_of"] == 0
