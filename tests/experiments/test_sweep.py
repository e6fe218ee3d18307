from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("optuna")

import optuna

from contrastlab.cli import main as cli_main
from contrastlab.experiments.sweep import parse_param, run_sweep
from tests.train.test_trainer import TINY

QUICK = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}


def test_parse_param():
    assert parse_param("objective.supcon.weight=0.05,0.1") == ("objective.supcon.weight", [0.05, 0.1])
    assert parse_param("trainer.amp=off,bf16") == ("trainer.amp", ["off", "bf16"])
    assert parse_param("x=1e-3") == ("x", [0.001])
    with pytest.raises(ValueError, match=r"must look like key\.path=v1,v2"):
        parse_param("objective.supcon.weight")


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
    states = [(t["params"].get(key), t["state"]) for t in result["trials"]]
    assert states.count((0.1, "COMPLETE")) == 1 and states.count((0.3, "COMPLETE")) == 1  # not re-run
    assert (0.5, "FAIL") in states and (0.5, "COMPLETE") in states  # the dead trial, then its rerun
    assert len(states) == 4
    assert not (out / "trials" / "trial000").exists()  # no run for the points already done


def test_sweep__tpe_runs_the_requested_number_of_trials(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**QUICK, "trainer": {**QUICK["trainer"], "epochs": 1}}))
    result = run_sweep(recipe, {"objective.supcon.weight": [0.0, 0.1, 0.2, 0.4]}, out_dir=tmp_path / "s",
                       sampler="tpe", trials=3)  # fmt: skip
    assert len(result["trials"]) == 3
    with pytest.raises(ValueError, match="--sampler tpe needs --trials N"):
        run_sweep(recipe, {"objective.supcon.weight": [0.1]}, out_dir=tmp_path / "t", sampler="tpe")
