from __future__ import annotations

import json

import yaml

from contrastlab.cli import main as cli_main
from contrastlab.experiments.paired import baseline_override
from contrastlab.train import load_checkpoint
from tests.train.test_trainer import TINY


def test_baseline_override__switches_weights_off_only():
    assert baseline_override("objective.supcon.weight=0.2") == "objective.supcon.weight=0"
    assert baseline_override("objective.supcon.temperature=0.05") is None


def test_verdict__two_seeds_end_to_end(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}))
    out = tmp_path / "v"
    args = ["verdict", str(recipe), "--treatment", "objective.supcon.weight=0.5", "--seeds", "2"]
    args += ["--out", str(out)]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "test.accuracy" in printed and "CKA baseline vs treatment" in printed
    verdict = json.loads((out / "verdict.json").read_text())
    by_name = {c["metric"]: c for c in verdict["comparisons"]}
    assert {"test.accuracy", "test.loss", "diagnostics.probes.knn1_accuracy"} <= set(by_name)
    assert by_name["test.loss"]["higher_is_better"] is False
    assert by_name["diagnostics.geometry.uniformity"]["higher_is_better"] is None
    assert len(by_name["test.accuracy"]["baseline"]) == 2
    # The arms differ only by the treated weight, and each records it.
    base = load_checkpoint(out / "baseline" / "seed0" / "checkpoints" / "last.pt")
    treat = load_checkpoint(out / "treatment" / "seed0" / "checkpoints" / "last.pt")
    assert base["history"][0]["weight/supcon"] == 0.0 and treat["history"][0]["weight/supcon"] == 0.5
    assert set(verdict["stage_cka_mean"]) == {"encoder.layers.0", "encoder.layers.1", "head", "projection"}
