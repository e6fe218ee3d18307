"""Curves of verdicts: curve.json is checked when written, each point's verdict is read back with its
comparison of the curve's metric (values, interval and call as the verdict computed them), and the plot
draws either axis."""

from __future__ import annotations

import dataclasses
import math

import pytest

from contrastlab.experiments.curve import CurvePoint, plot_curve, read_curve, write_curve
from contrastlab.experiments.results import Verdict
from contrastlab.experiments.stats import paired_comparison

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_verdict(base: list[float], treated: list[float], *, margin: float | None = 0.02) -> Verdict:
    """A verdict of two metrics (the loss unchanged, accuracy as given), as contrastlab verdict makes one."""
    n = len(base)
    loss = paired_comparison([1.0] * n, [1.0] * n, metric="test.loss", higher_is_better=False)
    accuracy = paired_comparison(base, treated, metric="test.accuracy", smallest_effect=margin)
    return Verdict(recipe="r.yaml", treatment=["objective.supcon.weight=0.2"],
                   baseline=["objective.supcon.weight=0"], seeds=list(range(n)), comparisons=[loss, accuracy],
                   stage_cka_mean={}, primary="test.accuracy")  # fmt: skip


def _curve(tmp_path, xs, verdicts):
    for i, v in enumerate(verdicts):
        (tmp_path / f"p{i}").mkdir()
        v.to_json(tmp_path / f"p{i}" / "verdict.json")
    write_curve(tmp_path, title="t", metric="test.accuracy", x_label="rows",
                points=[CurvePoint(str(x), x, f"p{i}") for i, x in enumerate(xs)])  # fmt: skip
    return read_curve(tmp_path)


def test_a_missing_metric_names_what_the_verdict_compared():
    with pytest.raises(KeyError, match=r"no comparison of 'test.rmse'.*test.loss, test.accuracy"):
        make_verdict([0.5, 0.6], [0.5, 0.7]).comparison("test.rmse")


def test_read_curve_keeps_the_points_order_and_reads_each_comparison(tmp_path):
    verdicts = [make_verdict([0.6 + i / 10, 0.62 + i / 10], [0.61 + i / 10, 0.64 + i / 10]) for i in range(3)]
    curve = _curve(tmp_path, [100, 20, 600], verdicts)
    assert [p.label for p in curve.points] == ["100", "20", "600"]  # as written, not sorted
    for p, v in zip(curve.points, verdicts, strict=True):
        assert p.comparison.to_dict() == v.comparison("test.accuracy").to_dict()
        assert p.path == tmp_path / p.verdict


def test_a_point_without_its_metric_is_named(tmp_path):
    (tmp_path / "p").mkdir()
    make_verdict([0.5, 0.6], [0.5, 0.7]).to_json(tmp_path / "p" / "verdict.json")
    write_curve(tmp_path, title="t", metric="test.rmse", x_label="x", points=[CurvePoint("ten", 10, "p")])
    with pytest.raises(KeyError, match=r"point 'ten' .*no comparison of 'test.rmse'"):
        read_curve(tmp_path)


def _with_accuracy(result: Verdict, **changes) -> Verdict:
    loss, accuracy = result.comparisons
    return dataclasses.replace(result, comparisons=[loss, dataclasses.replace(accuracy, **changes)])


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([], r"points is empty"),
        ([CurvePoint("a", 1, "p"), CurvePoint("a", 2, "q")], r"repeated labels \['a'\]"),
        ([CurvePoint("a", 0, "p")], r"point 'a' has x=0; expected a positive finite number"),
        ([CurvePoint("a", float("nan"), "p")], r"point 'a' has x=nan"),
    ],
)
def test_write_curve_rejects_bad_points_and_writes_nothing(tmp_path, points, message):
    with pytest.raises(ValueError, match=message):
        write_curve(tmp_path, title="t", metric="test.accuracy", x_label="x", points=points)
    assert not (tmp_path / "curve.json").exists()


@pytest.mark.parametrize("xs", [[20, 100, 600], [0.1, 0.25, 0.5]])  # a log axis, then a linear one
def test_plot_draws_both_arms_and_the_differences(tmp_path, xs):
    verdicts = [make_verdict([0.6, 0.62], [0.61 + i / 100, 0.64], margin=0.02 if i < 2 else None)
                for i in range(3)]  # fmt: skip
    verdicts[1] = _with_accuracy(verdicts[1], ci_low=-math.inf, ci_high=math.inf)  # unbounded
    (tmp_path / "c").mkdir()
    curve = _curve(tmp_path / "c", xs, verdicts)
    plot_curve(curve, tmp_path / "figures" / "curve.png")
    assert (tmp_path / "figures" / "curve.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("xs", [[20, 100, 600], [0.1, 0.25]])
def test_plot_keeps_every_call_inside_its_panel(tmp_path, xs, monkeypatch):
    # Seen failing before the fix: "inconclusive after Holm" beside the last point ran past the frame.
    from matplotlib.figure import Figure

    verdicts = [_with_accuracy(make_verdict([0.6, 0.62], [0.61, 0.64]), verdict="inconclusive", p_value=0.01,
                               p_adjusted=0.5) for _ in xs]  # "inconclusive after Holm", the longest call
    (tmp_path / "c").mkdir()
    curve, checked, save = _curve(tmp_path / "c", xs, verdicts), [], Figure.savefig

    def check(fig, *args, **kwargs):
        fig.canvas.draw()
        right = fig.axes[1]
        frame = right.get_window_extent()
        calls = [t for t in right.texts if "inconclusive" in t.get_text()]
        assert len(calls) == len(xs)
        extents = [t.get_window_extent() for t in calls]
        assert all(frame.x0 <= e.x0 and e.x1 <= frame.x1 for e in extents)
        checked.append(True)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", check)
    plot_curve(curve, tmp_path / "curve.png")
    assert checked
