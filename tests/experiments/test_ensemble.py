from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from contrastlab.cli import main as cli_main
from contrastlab.experiments.ensemble import ensemble_runs
from contrastlab.train import train, validate_config
from contrastlab.train.rundir import RunDirError
from tests.train.test_trainer import TINY


@pytest.fixture(scope="module")
def regression_runs(tmp_path_factory):
    """Three seeds of a small MLP regressor on a noisy linear table (targets far from 0 and 1, so a
    forgotten target scale would show)."""
    root = tmp_path_factory.mktemp("ensemble")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = 50.0 + 8.0 * x @ rng.normal(size=6) + rng.normal(scale=2.0, size=300)
    np.savez(root / "table.npz", features=x.astype(np.float32), target=y.astype(np.float32))
    table = {"path": str(root / "table.npz"), "task": "regression"}
    raw = {"name": "reg", "data": {"name": "table", "options": table},
           "model": {"hidden_dims": [32], "embedding_dim": 16, "projection_dim": 8, "dropout": 0.1},
           "objective": {"task": "mse"},
           "trainer": {"epochs": 6, "batch_size": 32, "lr": 0.01, "term_grad_norm_every": 0,
                       "early_stopping": {"monitor": "val/rmse", "mode": "min"}}}  # fmt: skip
    runs = []
    for seed in range(3):
        raw["trainer"]["seed"] = seed
        train(validate_config(raw), root / f"seed{seed}", progress=False, quiet=True)
        runs.append(root / f"seed{seed}")
    return runs


def _rmse(prediction, target):
    return float(np.sqrt(np.mean((np.asarray(prediction, dtype=np.float64) - target) ** 2)))


def test_ensemble__regression_averages_members_in_target_units_each_member_matching_its_own_run(
    regression_runs, tmp_path
):
    result = ensemble_runs(regression_runs, tmp_path / "ens")
    saved = np.load(tmp_path / "ens" / "predictions" / "test.npz")
    members, targets = saved["members"], saved["targets"]
    assert members.shape == (3, targets.shape[0])
    for i, run in enumerate(regression_runs):  # rebuilt from its directory, each member scores as it did
        own = json.loads((run / "metrics.json").read_text())["test"]
        assert result["members"][i]["test"]["rmse"] == pytest.approx(own["rmse"], rel=1e-5)
        assert result["members"][i]["test"]["mae"] == pytest.approx(own["mae"], rel=1e-5)
        assert _rmse(members[i], targets) == pytest.approx(own["rmse"], rel=1e-5)
    np.testing.assert_allclose(saved["mean"], members.mean(axis=0))  # the oracle: row by row, by hand
    np.testing.assert_allclose(saved["sd"], members.std(axis=0))
    assert result["test"]["rmse"] == pytest.approx(_rmse(members.mean(axis=0), targets), rel=1e-9)
    # Jensen: the average's squared error is at most the members' average squared error
    assert result["test"]["rmse"] ** 2 <= np.mean([m["test"]["rmse"] ** 2 for m in result["members"]]) + 1e-12
    val = np.load(tmp_path / "ens" / "predictions" / "val.npz")
    assert result["final"]["val/rmse"] == pytest.approx(_rmse(val["mean"], val["targets"]), rel=1e-9)
    written = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert written["test"] == result["test"]
    assert written["ensemble"]["members"] == [str(r) for r in regression_runs]
    assert json.loads((tmp_path / "ens" / "split.json").read_text()) == json.loads(
        (regression_runs[0] / "split.json").read_text())  # fmt: skip


def test_ensemble__classification_averages_probabilities(tmp_path):
    runs = []
    for seed in range(2):
        config = validate_config({**TINY, "trainer": {**TINY["trainer"], "epochs": 2, "seed": seed}})
        train(config, tmp_path / f"c{seed}", progress=False, quiet=True)
        runs.append(tmp_path / f"c{seed}")
    result = ensemble_runs(runs, tmp_path / "ens")
    saved = np.load(tmp_path / "ens" / "predictions" / "test.npz")
    probs, targets = saved["members"], saved["targets"]
    assert probs.shape[0] == 2 and probs.shape[2] == 3 and np.allclose(probs.sum(axis=2), 1.0)
    for i, run in enumerate(runs):
        own = json.loads((run / "metrics.json").read_text())["test"]
        assert result["members"][i]["test"]["accuracy"] == pytest.approx(own["accuracy"])
        assert result["members"][i]["test"]["auroc"] == pytest.approx(own["auroc"], abs=1e-6)
    oracle = float(np.mean(probs.mean(axis=0).argmax(axis=1) == targets))
    assert result["test"]["accuracy"] == pytest.approx(oracle) and "sd" not in saved.files


def test_ensemble__cli_prints_members_and_ensemble_and_refuses_to_clobber(regression_runs, tmp_path, capsys):
    out = tmp_path / "ens"
    assert cli_main(["ensemble", *map(str, regression_runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seed0" in printed and "ensemble of 3" in printed and "rmse" in printed
    assert cli_main(["compare", str(regression_runs[0]), str(out), "--out", str(tmp_path / "cmp")]) == 0
    assert "ens" in capsys.readouterr().out  # a run directory like any other
    with pytest.raises(RunDirError, match="already holds a run or an ensemble"):
        ensemble_runs(regression_runs[:2], out)
    assert len(json.loads((out / "metrics.json").read_text())["members"]) == 3  # untouched
    ensemble_runs(regression_runs[:2], out, overwrite=True)
    assert len(json.loads((out / "metrics.json").read_text())["members"]) == 2
    assert not (regression_runs[0] / "predictions").exists()


def test_ensemble__refuses_runs_it_cannot_average(regression_runs, tmp_path):
    a, b = regression_runs[:2]
    with pytest.raises(ValueError, match="two or more distinct runs"):
        ensemble_runs([a], tmp_path / "one")
    with pytest.raises(ValueError, match="two or more distinct runs"):
        ensemble_runs([a, a], tmp_path / "twice")
    with pytest.raises(ValueError, match="is one of the members"):
        ensemble_runs([a, b], b)
    other = tmp_path / "other_split"
    shutil.copytree(b, other)
    split = json.loads((other / "split.json").read_text())
    split["test"] = split["test"][1:]
    (other / "split.json").write_text(json.dumps(split))
    with pytest.raises(ValueError, match="used another split"):
        ensemble_runs([a, other], tmp_path / "e1")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(b, unfinished)
    (unfinished / "metrics.json").unlink()
    with pytest.raises(ValueError, match="is not a finished run"):
        ensemble_runs([a, unfinished], tmp_path / "e2")
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()  # a refusal writes nothing
