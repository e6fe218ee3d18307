"""bench/label_budget.py: a point's verdict is read back when finished, resumed when cut short, and run
with both arms' overrides and the curve's treatment; its summary, table and plot follow verdict.json."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bench import label_budget as lb

from contrastlab.experiments.curve import read_curve
from tests.experiments.test_curve import make_verdict


def test_a_finished_point_is_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(lb, "_cli", lambda args: pytest.fail(f"ran {args}"))
    curve = lb.CURVES["text"]
    (tmp_path / "p").mkdir()
    written = make_verdict([0.7, 0.8, 0.75], [0.72, 0.79, 0.77])
    written.to_json(tmp_path / "p" / "verdict.json")
    read = lb.run_point(curve, curve.points[0], tmp_path / "p", tmp_path)
    assert read.to_dict() == written.to_dict()


def test_a_point_runs_its_verdict_and_resumes_one_cut_short(tmp_path, monkeypatch):
    calls = []

    def fake_cli(args):
        calls.append(args)
        out = tmp_path / "runs" / "point"
        out.mkdir(parents=True, exist_ok=True)
        make_verdict([0.5, 0.6], [0.5, 0.7]).to_json(out / "verdict.json")

    monkeypatch.setattr(lb, "_cli", fake_cli)
    curve, runs = lb.CURVES["molecules"], tmp_path / "runs"
    lb.run_point(curve, curve.points[0], runs / "point", runs)
    (runs / "point" / "verdict.json").unlink()  # cut short: the directory stays
    lb.run_point(curve, curve.points[0], runs / "point", runs)
    first, second = calls
    assert first[:3] == ["verdict", "recipes/solubility_scratch.yaml", "data.train_labels=0.1"]
    assert first[first.index("--treatment") + 1] == f"model.init_from={runs}/solubility_simclr"
    assert "--resume" not in first and second == [*first, "--resume"]


def test_a_curve_of_several_treatment_overrides_gives_each_its_own_flag(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(lb, "_cli", lambda args: calls.append(args) or _write_verdict(tmp_path / "p"))
    curve = lb.CURVES["peptides"]
    lb.run_point(curve, curve.points[0], tmp_path / "p", tmp_path)
    (command,) = calls
    flagged = [command[i + 1] for i, a in enumerate(command) if a == "--treatment"]
    assert flagged == list(curve.treatment) and len(flagged) == 2
    assert command[:2] == ["verdict", "recipes/amp_residue.yaml"]
    assert command[2:4] == ["data.train_labels=0.1", "trainer.threads=1"]


def _write_verdict(out):
    out.mkdir(parents=True, exist_ok=True)
    make_verdict([0.5, 0.6], [0.5, 0.7]).to_json(out / "verdict.json")


def test_a_verdicts_wall_time_runs_from_its_first_runs_start_to_its_verdict(tmp_path):
    import os

    starts = {"baseline": "2026-01-01T10:00:00+00:00", "treatment": "2026-01-01T10:05:00+00:00"}
    for arm, started in starts.items():
        (tmp_path / arm / "seed0").mkdir(parents=True)
        (tmp_path / arm / "seed0" / "config.yaml").write_text(f"meta: {{started: '{started}'}}\n")
    (tmp_path / "verdict.json").write_text("{}")
    end = 1767261600 + 30 * 60  # 2026-01-01T10:30:00Z
    os.utime(tmp_path / "verdict.json", (end, end))
    assert lb.wall_minutes(tmp_path) == pytest.approx(30.0)


def test_the_section(tmp_path):
    curve = lb.CURVES["text"]
    comparisons = [make_verdict([0.6 + i / 10, 0.62 + i / 10], [0.61 + i / 10, 0.64 + i / 10]).comparison(
        "test.accuracy") for i in range(len(curve.points))]  # fmt: skip
    points = [(p, c, 12.3) for p, c in zip(curve.points, comparisons, strict=True)]
    text = lb.render("text", curve, points, 120.0)
    assert text.startswith("<!-- label_budget:text -->") and text.endswith("<!-- /label_budget:text -->")
    assert "python -m bench.label_budget --curves text" in text
    rows = [line for line in text.splitlines() if line.startswith("| 20 ")]
    # the 95% t-interval of differences [0.01, 0.02]: 0.015 ± t(0.975, 1) · 0.005 = 0.015 ± 0.0635
    assert rows == ["| 20 (n=2 pairs) | 0.6100 ± 0.0141 | 0.6250 ± 0.0212 | +0.0150 "
                    "(95% CI -0.0485 to +0.0785) | inconclusive | 12 min |"]  # fmt: skip
    assert re.search(r"!\[text label-budget curve\]\(figures/label_budget_text\.png\)", text)


def test_main_writes_the_curve_that_contrastlab_report_draws(tmp_path, monkeypatch, capsys):
    from contrastlab.experiments.report import build_report

    def fake_cli(args):  # every point's verdict, as `contrastlab verdict` would leave it
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        make_verdict([0.6, 0.7], [0.62, 0.71]).to_json(out / "verdict.json")
        for arm in ("baseline", "treatment"):
            (out / arm / "seed0").mkdir(parents=True)
            (out / arm / "seed0" / "config.yaml").write_text("meta: {started: '2026-01-01T10:00:00+00:00'}\n")

    monkeypatch.setattr(lb, "_cli", fake_cli)
    monkeypatch.chdir(tmp_path)  # main moves to the repository root; this puts the tests' directory back
    lb.main(["--curves", "text", "--runs", str(tmp_path), "--no-write"])
    curve = read_curve(tmp_path / "text")
    assert [p.label for p in curve.points] == [p.label for p in lb.CURVES["text"].points]
    assert curve.arms == ("CE", "CE + SupCon") and curve.metric == "test.accuracy"
    assert all(p.comparison.mean_difference == pytest.approx(0.015) for p in curve.points)
    assert f"contrastlab report {tmp_path / 'text'}" in capsys.readouterr().out
    assert build_report(tmp_path / "text").kind == "curve"
