"""contrastlab.judge: the verdict on per-seed values of runs trained anywhere is the verdict contrastlab
verdict computes from the same values, from lists, mappings, a table (long or wide, rows or a DataFrame) or
a CSV on the command line."""

from __future__ import annotations

import csv

import pytest

import contrastlab
from contrastlab.cli import main as cli_main
from contrastlab.experiments.results import Verdict
from contrastlab.experiments.stats import holm_adjust, paired_comparison
from tests.experiments.golden.regenerate import HERE

BASE = [0.80, 0.82, 0.79, 0.81, 0.80]
TREAT = [0.84, 0.85, 0.83, 0.86, 0.84]


def test_one_metric_is_the_paired_comparison_of_its_values():
    verdict = contrastlab.judge(BASE, TREAT, metric="accuracy")
    c = verdict.primary_comparison
    oracle = paired_comparison(BASE, TREAT, metric="accuracy", higher_is_better=True)
    assert (c.mean_difference, c.ci_low, c.ci_high, c.p_value) == (
        oracle.mean_difference, oracle.ci_low, oracle.ci_high, oracle.p_value)  # fmt: skip
    assert c.p_adjusted == c.p_value and c.verdict == "helped"  # Holm over one metric changes nothing
    assert c.probability_of_improvement.estimate == 1.0 and c.aso_epsilon is not None
    assert verdict.seeds == [0, 1, 2, 3, 4] and "Primary metric accuracy: helped" in str(verdict)


def test_several_metrics_are_holm_adjusted_together_and_directions_are_honoured():
    loss_b, loss_t = [0.50, 0.52, 0.49, 0.51, 0.55], [0.49, 0.53, 0.47, 0.52, 0.50]
    verdict = contrastlab.judge({"accuracy": BASE, "loss": loss_b}, {"accuracy": TREAT, "loss": loss_t},
                                smallest_effect="accuracy=0.01")  # fmt: skip
    got = {c.metric: c for c in verdict.comparisons}
    assert got["loss"].higher_is_better is False and got["accuracy"].higher_is_better is True
    assert [got[m].p_adjusted for m in ("accuracy", "loss")] == pytest.approx(
        holm_adjust([got["accuracy"].p_value, got["loss"].p_value]))  # fmt: skip
    assert got["accuracy"].smallest_effect == 0.01 and got["accuracy"].verdict == "helped"
    mine = contrastlab.judge({"score": BASE}, {"score": TREAT}, higher_is_better=False)  # lower is better
    assert mine.primary_comparison.verdict == "hurt"


def _golden_task_values(verdict: Verdict) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    task = [c for c in verdict.comparisons if c.family == "task"]
    return {c.metric: c.baseline for c in task}, {c.metric: c.treatment for c in task}


def test_judge_gives_the_verdict_contrastlab_verdict_gave_on_the_same_values():
    verdict = Verdict.from_json(HERE / "sequential")
    baseline, treatment = _golden_task_values(verdict)
    judged = contrastlab.judge(baseline, treatment, metric=verdict.primary, alpha=verdict.alpha,
                               smallest_effect=verdict.smallest_effect)  # fmt: skip
    task = [c.to_dict() for c in verdict.comparisons if c.family == "task"]
    assert [c.to_dict() for c in judged.comparisons] == task
    assert judged.primary_comparison.sentence() == verdict.primary_comparison.sentence()


def _rows(long: bool) -> list[dict]:
    rows = []
    for arm, values in (("baseline", BASE), ("treatment", TREAT)):
        for seed, value in enumerate(values):
            loss = 1.0 - value + 0.001 * seed
            if long:
                rows += [{"seed": seed, "arm": arm, "metric": "accuracy", "value": value},
                         {"seed": seed, "arm": arm, "metric": "loss", "value": loss}]  # fmt: skip
            else:
                rows.append({"seed": seed, "arm": arm, "accuracy": value, "loss": loss})
    return rows


def test_a_table_long_or_wide_rows_or_dataframe_gives_the_same_verdict():
    import pandas

    def by_metric(verdict: Verdict) -> dict:
        return {c.metric: c.to_dict() for c in verdict.comparisons}

    long, wide = _rows(long=True), _rows(long=False)
    expected = contrastlab.judge(long, metric="accuracy")
    shuffled = contrastlab.judge(long[::-1], metric="accuracy")  # the rows' order does not matter
    assert by_metric(shuffled) == by_metric(expected) and shuffled.seeds == expected.seeds == [0, 1, 2, 3, 4]
    assert contrastlab.judge(wide, metric="accuracy").to_dict() == expected.to_dict()
    assert contrastlab.judge(pandas.DataFrame(long), metric="accuracy").to_dict() == expected.to_dict()
    assert contrastlab.judge(long).primary == "accuracy"  # the first metric of the table by default


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"seed": 0, "arm": "baseline", "accuracy": 0.8}, {"seed": 0, "arm": "treatment", "accuracy": 0.9},
          {"seed": 1, "arm": "baseline", "accuracy": 0.7}], r"'accuracy': no value for seed 1 of treatment"),
        ([{"seed": 0, "arm": "base", "accuracy": 0.8}], r"row 1: arm 'base' is neither 'baseline'"),
        ([{"seed": 0, "arm": "baseline", "accuracy": 0.8}, {"seed": "x", "arm": "baseline", "accuracy": 1}],
         r"row 2: .*seed must be an integer"),
        ([{"arm": "baseline", "accuracy": 0.8}], r"no 'seed' column"),
    ],
)  # fmt: skip
def test_a_bad_table_is_refused_naming_the_row_or_the_seed(rows, message):
    with pytest.raises(ValueError, match=message):
        contrastlab.judge(rows)


def _write(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_judge_from_the_command_line(tmp_path, capsys):
    _write(tmp_path / "results.csv", [{**r, "arm": {"baseline": "ce", "treatment": "supcon"}[r["arm"]]}
                                      for r in _rows(long=True)])  # fmt: skip
    args = ["judge", str(tmp_path / "results.csv"), "--arms", "ce,supcon", "--smallest-effect",
            "accuracy=0.01"]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("metric") and "Primary metric accuracy: helped" in printed
    (tmp_path / "ragged.csv").write_text("seed,arm,metric,value\n0,ce,accuracy,0.8,extra\n")
    assert cli_main(["judge", str(tmp_path / "ragged.csv"), "--arms", "ce,supcon"]) == 2
    assert "row 1 has more or fewer fields" in capsys.readouterr().err


def test_judge_reads_the_runs_of_an_mlflow_experiment(tmp_path, capsys):
    import mlflow

    from tests.train.test_loggers import mlflow_server

    (tmp_path / "server").mkdir()
    with mlflow_server(tmp_path / "server") as url:
        client = mlflow.tracking.MlflowClient(url)
        experiment = client.create_experiment("mine")
        for arm, values in (("ce", BASE), ("supcon", TREAT)):
            for seed, value in enumerate(values):
                run = client.create_run(experiment, tags={"variant": arm})
                client.log_param(run.info.run_id, "seed", seed)
                client.log_metric(run.info.run_id, "accuracy", value)
                client.set_terminated(run.info.run_id)
        other = client.create_run(experiment, tags={"variant": "other"})  # not an arm: left out
        client.log_metric(other.info.run_id, "accuracy", 0.1)
        args = ["judge", "--mlflow", "mine", "--arm", "variant=ce", "--arm", "variant=supcon",
                "--tracking-uri", url, "--metric", "accuracy"]  # fmt: skip
        capsys.readouterr()  # MLflow's own lines about the runs logged above
        assert cli_main(args) == 0
        printed = capsys.readouterr().out
        assert cli_main([*args[:5], "--arm", "variant=none", "--tracking-uri", url]) == 2
        assert "tag variant=none" in capsys.readouterr().err
    expected = contrastlab.judge(BASE, TREAT, metric="accuracy", arms=("ce", "supcon"))
    assert printed.strip() == str(expected).strip()
