"""A curve of paired verdicts: one verdict per value of a setting (a label budget, a loss weight), read
together as "where does the treatment help?".

Each point is an ordinary ``contrastlab verdict`` directory; ``curve.json`` in the curve's directory names
them, in order, with where each sits on the x axis::

    from contrastlab.experiments.curve import CurvePoint, write_curve
    write_curve("runs/budget", title="CE vs CE + SupCon", metric="test.accuracy",
                x_label="labelled rows per class", arms=("CE", "CE + SupCon"),
                points=[CurvePoint("20", 20, "point20"), CurvePoint("all", 600, "point_all")])

and ``contrastlab report runs/budget`` draws it: both arms per point (every seed and the mean), the paired
difference with each verdict's interval and the equivalence margin, each point's call, and a link to each
point's own verdict.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from contrastlab.experiments.schemas import load_result
from contrastlab.experiments.stats import PairedComparison, percent
from contrastlab.train.checkpoint import atomic_write

__all__ = ["Curve", "CurvePoint", "CurveVerdict", "plot_curve", "read_curve", "write_curve"]

CURVE_FILE = "curve.json"


@dataclass(frozen=True)
class CurvePoint:
    """One point of a curve.

    Args:
        label: How the table and the plot name it ("20", "all (600)", "10%").
        x: Where the plot puts it (a positive number: the axis is logarithmic when the values span a
            factor of 10 or more).
        verdict: The point's verdict directory, relative to the curve's directory (or absolute).
    """

    label: str
    x: float
    verdict: str


def write_curve(
    directory: str | Path,
    *,
    title: str,
    metric: str,
    x_label: str,
    points: Sequence[CurvePoint],
    arms: tuple[str, str] = ("baseline", "treatment"),
    notes: str = "",
) -> Path:
    """Writes ``curve.json`` in ``directory`` (created if missing); returns its path.

    Args:
        title: What the curve compares, on what.
        metric: The verdicts' metric the curve follows (e.g. ``test.accuracy``).
        x_label: What the x axis counts.
        points: In the order the table lists them; the verdicts need not exist yet.
        arms: What the verdicts' baseline and treatment arms are called.
        notes: A paragraph of how the points were run.

    Raises:
        ValueError: no points, a repeated label, or an x that is not a positive finite number.
    """
    if not points:
        raise ValueError("points is empty; a curve needs at least one verdict")
    labels = [p.label for p in points]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"points have repeated labels {repeated}; each point needs its own label")
    for p in points:
        if not (isinstance(p.x, int | float) and math.isfinite(p.x) and p.x > 0):
            raise ValueError(f"point {p.label!r} has x={p.x!r}; expected a positive finite number")
    if len(arms) != 2:
        raise ValueError(f"arms={arms!r}; expected two names (baseline, treatment)")
    path = Path(directory) / CURVE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"title": title, "metric": metric, "x_label": x_label, "arms": list(arms), "notes": notes,
              "points": [asdict(p) for p in points]}  # fmt: skip
    with atomic_write(path, "w") as handle:
        json.dump(record, handle, indent=2)
    return path


@dataclass(frozen=True)
class CurveVerdict:
    """A point of a curve read back: where it sits, its verdict's directory and that verdict's comparison of
    the curve's metric."""

    label: str
    x: float
    verdict: str  # as curve.json names it (relative to the curve's directory, or absolute)
    path: Path
    comparison: PairedComparison


@dataclass(frozen=True)
class Curve:
    """A curve of verdicts as :func:`read_curve` reads it."""

    title: str
    metric: str
    x_label: str
    arms: tuple[str, str]
    notes: str
    points: list[CurveVerdict]


def read_curve(directory: str | Path) -> Curve:
    """``curve.json`` with each point's verdict read, its comparison of the curve's metric at hand.

    Raises:
        FileNotFoundError: no curve.json, or a point whose verdict has not finished (names the point).
        KeyError: a point's verdict did not compare the curve's metric.
    """
    from contrastlab.experiments.results import Verdict

    root = Path(directory)
    curve = load_result(root / CURVE_FILE, "curve")
    points = []
    for point in curve["points"]:
        where = root / point["verdict"]
        if not (where / "verdict.json").is_file():
            raise FileNotFoundError(
                f"point {point['label']!r} of {root / CURVE_FILE}: {where / 'verdict.json'} does not exist "
                "(its verdict has not finished; `contrastlab verdict ... --resume` finishes it)"
            )
        try:
            comparison = Verdict.from_json(where).comparison(curve["metric"])
        except KeyError as exc:
            raise KeyError(f"point {point['label']!r} ({where}): {exc.args[0]}") from None
        points.append(CurveVerdict(point["label"], float(point["x"]), point["verdict"], where, comparison))
    arms = curve["arms"]
    return Curve(curve["title"], curve["metric"], curve["x_label"], (arms[0], arms[1]),
                 curve.get("notes", ""), points)  # fmt: skip


def _fit_right(fig: Any, ax: Any, texts: list[Any]) -> None:
    """Widens ``ax``'s x range on the right until every text in ``texts`` ends inside it (a call such as
    "inconclusive after Holm" beside the last point ran past the frame)."""
    for _ in range(8):
        fig.canvas.draw()
        frame = ax.get_window_extent()
        end = max(t.get_window_extent().x1 for t in texts) + 4.0  # a few pixels clear of the frame
        if end <= frame.x1:
            return
        low, high = ax.get_xlim()
        (a, _), (b, _) = ax.transScale.transform([(low, 0.0), (high, 0.0)])  # linear or log alike
        b = a + (b - a) * (end - frame.x0) / frame.width
        ax.set_xlim(low, ax.transScale.inverted().transform((b, 0.0))[0])


def plot_curve(curve: Curve, path: str | Path | BinaryIO) -> None:
    """Left: each arm's seeds (dots) and mean (line) per point. Right: the paired difference with each
    verdict's interval, the equivalence margin shaded, each point labelled with its call.

    ``curve`` is what :func:`read_curve` returns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from contrastlab.metrics import direction

    points = curve.points
    xs = [p.x for p in points]
    labels = [p.label for p in points]
    arms, metric = curve.arms, curve.metric
    log = max(xs) / min(xs) >= 10
    spread = (max(xs) - min(xs)) or 1.0
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))

    def shifted(x: float, k: int) -> float:  # the two arms side by side
        return x * (1.0 + (k - 0.5) * 0.06) if log else x + (k - 0.5) * 0.02 * spread

    for k, (arm, color) in enumerate(zip(arms, ("#5d6678", "#1f5fa8"), strict=True)):
        values = [(p.comparison.baseline, p.comparison.treatment)[k] for p in points]
        for x, seeds in zip(xs, values, strict=True):
            left.scatter([shifted(x, k)] * len(seeds), seeds, color=color, s=12, alpha=0.45)
        means = [statistics.fmean(seeds) for seeds in values]
        left.plot([shifted(x, k) for x in xs], means, "o-", color=color, label=arm)
    higher = direction(metric)
    for ax in (left, right):
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(xs, labels, fontsize=8.5)
        ax.set_xlabel(curve.x_label)
    better = "" if higher is None else " (higher is better)" if higher else " (lower is better)"
    left.set_ylabel(metric + better)
    left.legend(frameon=False)
    left.set_title("each seed (dots) and the mean (line)", fontsize=10, loc="left")
    margins = [p.comparison.smallest_effect for p in points if p.comparison.smallest_effect]
    delta = margins[0] if margins else None
    if delta:
        right.axhspan(-delta, delta, color="#dbe7f6")
    right.axhline(0.0, color="black", linewidth=0.8)
    calls = []
    for x, p in zip(xs, points, strict=True):
        c = p.comparison
        if math.isfinite(c.ci_low) and math.isfinite(c.ci_high):
            right.plot([x, x], [c.ci_low, c.ci_high], color="#1f5fa8", linewidth=2.2)
        right.plot([x], [c.mean_difference], "o", color="#1f5fa8")
        calls.append(right.annotate(f"{c.call()}\n(n={c.n}, {percent(c.confidence)} CI)",
                                    (x, c.mean_difference), textcoords="offset points", xytext=(8, 0),
                                    fontsize=7.5, va="center"))  # fmt: skip
    if log:
        right.set_xlim(min(xs) / 1.6, max(xs) * 3.6)
    else:
        right.set_xlim(min(xs) - 0.1 * spread, max(xs) + 0.45 * spread)
    side = "" if higher is None else f"; {'above' if higher else 'below'} 0: {arms[1]} better"
    right.set_ylabel(f"{arms[1]} - {arms[0]}{side}")
    shaded = f"\nshaded: the equivalence margin ±{delta:g}" if delta else ""
    right.set_title(f"paired difference and the verdict's interval{shaded}", fontsize=10, loc="left")
    fig.suptitle(curve.title, fontsize=10)
    fig.tight_layout()
    _fit_right(fig, right, calls)
    if isinstance(path, str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
