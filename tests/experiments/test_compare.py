from __future__ import annotations

import json

import pytest

from contrastlab.cli import main as cli_main
from contrastlab.train import train, validate_config
from tests.train.test_trainer import TINY


def test_compare__table_json_and_curves_for_two_runs(tmp_path, capsys):
    quick = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}
    train(validate_config(quick), tmp_path / "with_supcon", progress=False)
    baseline = {**quick, "objective": {"supcon": {"weight": 0.0}, "rdrop": {"weight": 0.0}}}
    train(validate_config(baseline), tmp_path / "baseline", progress=False)
    assert cli_main(["diagnose", str(tmp_path / "baseline")]) == 0
    out = tmp_path / "cmp"
    runs = [str(tmp_path / "with_supcon"), str(tmp_path / "baseline")]
    assert cli_main(["compare", *runs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "with_supcon" in printed and "test.accuracy" in printed and "gap.accuracy" in printed
    result = json.loads((out / "compare.json").read_text())
    assert [r["run"] for r in result["runs"]] == ["with_supcon", "baseline"]
    assert "diagnostics" in result["runs"][1] and "diagnostics" not in result["runs"][0]
    from contrastlab.experiments.results import RunComparison

    assert RunComparison.from_json(out).to_dict() == result  # compare.json into the typed result and back
    assert (out / "curves.png").stat().st_size > 10_000


def test_compare__rejects_a_directory_that_is_not_a_run(tmp_path):
    from contrastlab.experiments.compare import compare_runs

    with pytest.raises(FileNotFoundError, match=r"has no metrics\.json"):
        compare_runs([tmp_path])
