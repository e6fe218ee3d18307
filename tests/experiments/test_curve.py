"""Curves of verdicts: curve.json is checked when written, each point's verdict is summarized from its
verdict.json (means and the interval as the verdict computed them), and the plot draws either axis."""

from __future__ import annotations

import json
import statistics

import pytest

from contrastlab.experiments.curve import CurvePoint, plot_curve, read_curve, summarize_verdict, write_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _verdict(base: list[float], treated: list[float], *, margin: float | None = 0.02) -> dict:
    diff = [t - b for b, t in zip(base, treated, strict=True)]
    mean = statistics.fmean(diff)
    return {"comparisons": [
        {"metric": "test.loss", "baseline": [1.0] * len(base), "treatment": [1.0] * len(base),
         "mean_difference": 0.0, "ci_low": 0.0, "ci_high": 0.0, "confidence": 0.95, "verdict": "x"},
        {"metric": "test.accuracy", "baseline": base, "treatment": treated, "mean_difference": mean,
         "ci_low": mean - 0.01, "ci_high": mean + 0.01, "confidence": 0.995, "call": "equivalent",
         "verdict": "equivalent", "smallest_effect": margin},
    ]}  # fmt: skip


def _curve(tmp_path, xs, verdicts):
    for i, v in enumerate(verdicts):
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / "verdict.json").write_text(json.dumps(v))
    write_curve(tmp_path, title="t", metric="test.accuracy", x_label="rows",
                points=[CurvePoint(str(x), x, f"p{i}") for i, x in enumerate(xs)])  # fmt: skip
    return read_curve(tmp_path)


def test_summary_has_each_arms_values_means_and_the_verdicts_interval():
    base, treated = [0.7, 0.8, 0.75], [0.72, 0.79, 0.77]
    s = summarize_verdict(_verdict(base, treated), "test.accuracy")
    assert s["n"] == 3 and s["baseline"] == base and s["treatment"] == treated
    assert s["baseline_mean"] == pytest.approx(sum(base) / 3) and s["treatment_mean"] == pytest.approx(0.76)
    assert s["difference"] == pytest.approx(s["treatment_mean"] - s["baseline_mean"])
    assert s["ci"] == (pytest.approx(0.0), pytest.approx(0.02)) and s["confidence"] == 0.995
    assert s["call"] == "equivalent" and s["smallest_effect"] == 0.02


def test_a_missing_metric_names_what_the_verdict_compared():
    with pytest.raises(KeyError, match=r"no comparison of 'test.rmse'.*test.loss, test.accuracy"):
        summarize_verdict(_verdict([0.5], [0.5]), "test.rmse")


def test_read_curve_keeps_the_points_order_and_summarizes_each(tmp_path):
    verdicts = [_verdict([0.6 + i / 10, 0.62 + i / 10], [0.61 + i / 10, 0.64 + i / 10]) for i in range(3)]
    curve = _curve(tmp_path, [100, 20, 600], verdicts)
    assert [p["label"] for p in curve["points"]] == ["100", "20", "600"]  # as written, not sorted
    for p, v in zip(curve["points"], verdicts, strict=True):
        assert p["summary"] == summarize_verdict(v, "test.accuracy")
        assert p["path"] == str(tmp_path / p["verdict"])


def test_a_point_without_its_metric_is_named(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "verdict.json").write_text(json.dumps(_verdict([0.5], [0.5])))
    write_curve(tmp_path, title="t", metric="test.rmse", x_label="x", points=[CurvePoint("ten", 10, "p")])
    with pytest.raises(KeyError, match=r"point 'ten' .*no comparison of 'test.rmse'"):
        read_curve(tmp_path)


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
    verdicts = [_verdict([0.6, 0.62], [0.61 + i / 100, 0.64]) for i in range(3)]
    verdicts[1]["comparisons"][1]["ci_low"] = verdicts[1]["comparisons"][1]["ci_high"] = None  # unbounded
    verdicts[2]["comparisons"][1]["smallest_effect"] = None
    (tmp_path / "c").mkdir()
    curve = _curve(tmp_path / "c", xs, verdicts)
    plot_curve(curve, tmp_path / "figures" / "curve.png")
    assert (tmp_path / "figures" / "curve.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("xs", [[20, 100, 600], [0.1, 0.25]])
def test_plot_keeps_every_call_inside_its_panel(tmp_path, xs, monkeypatch):
    # Seen failing before the fix: "inconclusive after Holm" beside the last point ran past the frame.
    from matplotlib.figure import Figure

    verdicts = [_verdict([0.6, 0.62], [0.61, 0.64]) for _ in xs]
    for v in verdicts:
        v["comparisons"][1]["call"] = "inconclusive after Holm across the recipes"
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
