"""`contrastlab demo` end to end (shortened: 2 seeds, 2 epochs, on the real built-in solubility data)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")
pytest.importorskip("jinja2")

from contrastlab.cli import main as cli_main
from contrastlab.experiments.demo import DEMO_TREATMENT, demo_recipe
from contrastlab.train import load_config


def test_demo_recipe_is_packaged_and_valid():
    config, _ = load_config(demo_recipe(), [DEMO_TREATMENT])
    assert config.data.name == "solubility" and config.objective.nt_xent is not None
    assert config.objective.nt_xent.weight == 0.1


def test_demo__verdict_table_and_report_from_the_cli(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli_main(["demo", "trainer.epochs=2", "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test.rmse" in printed and "CKA baseline vs treatment per stage" in printed
    assert f"report: {out / 'report.html'}" in printed
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["treatment"] == [DEMO_TREATMENT] and verdict["baseline"] == ["objective.nt_xent.weight=0"]
    metrics = {c["metric"] for c in verdict["comparisons"]}
    assert metrics >= {"test.rmse", "test.mae", "diagnostics.probes.ridge.r2"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "test.rmse" in html and html.count("data:image/png;base64,") >= 5
    assert '<div class="badge' in html and "paired difference with its interval" in html  # badge, forest plot
    # The baseline arm trained on clean molecules only: no contrastive term was computed.
    header = (out / "baseline" / "seed0" / "history.csv").read_text().splitlines()[0]
    assert "train/nt_xent" not in header
    assert "train/nt_xent" in (out / "treatment" / "seed0" / "history.csv").read_text().splitlines()[0]
