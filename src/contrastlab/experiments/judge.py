"""The verdict for runs trained anywhere: :func:`judge` takes the per-seed values of a baseline and a
treatment (from your own sentence-transformers, Hugging Face or Lightning loop) and returns the same
:class:`~contrastlab.experiments.results.Verdict` ``contrastlab verdict`` gives, with the same statistics:
the paired t-test and its interval, Holm over the metrics, TOST with a smallest effect, P(improvement),
ASO, the minimum detectable effect, and the weak-verdict warning under 5 seeds. ``contrastlab judge
results.csv`` does it from a CSV, and ``contrastlab judge --mlflow EXPERIMENT --arm tag=value --arm
tag=value`` from the runs of an MLflow tracking server (:func:`mlflow_results`).

>>> from contrastlab.experiments.judge import judge
>>> verdict = judge([0.80, 0.82, 0.79, 0.81, 0.80], [0.84, 0.85, 0.83, 0.86, 0.84], metric="accuracy",
...                 higher_is_better=True)
>>> verdict.primary_comparison.verdict
'helped'
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contrastlab._io import UnreadableFileError, ragged_row, reading
from contrastlab.experiments.results import Verdict
from contrastlab.experiments.stats import compare_arms
from contrastlab.experiments.verdict import ALPHA, smallest_effects

__all__ = ["judge", "mlflow_results", "read_results"]

ARMS = ("baseline", "treatment")


def judge(
    baseline: Sequence[float] | Mapping[str, Sequence[float]] | Any,
    treatment: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    *,
    metric: str | None = None,
    higher_is_better: bool | Mapping[str, bool | None] | None = None,
    smallest_effect: float | str | dict[str, float] | Sequence[str] | None = None,
    arms: tuple[str, str] = ARMS,
    seeds: Sequence[int] | None = None,
    alpha: float = ALPHA,
) -> Verdict:
    """A paired verdict on per-seed values, the i-th baseline value paired with the i-th treatment value.

    Args:
        baseline, treatment: One metric's values per seed (two lists, then ``metric`` names it), or several
            metrics' (two mappings metric -> values; Holm over them); or, as ``baseline`` alone, a
            DataFrame or rows with ``seed`` and ``arm`` columns and either ``metric`` and ``value`` columns or
            one column per metric (:func:`read_results` reads such a CSV).
        metric: The metric to answer first (the primary one); default the first.
        higher_is_better: Whether higher is better (one for every metric, or per metric); default the
            metric registry's direction (:mod:`contrastlab.metrics`), none for a name it does not know.
        smallest_effect: δ, the smallest difference that matters (a number in the primary metric's units,
            ``"P%"`` of each baseline mean, or ``metric=value`` items): adds the equivalence test.
        arms: The names of the baseline and the treatment arm in a table's ``arm`` column.
        seeds: The seeds, for the record (default 0, 1, ...; a table's own ``seed`` column).
        alpha: The level of every test and interval.

    Raises:
        ValueError: arms of different lengths, fewer than 2 seeds, non-finite values, a seed in one arm
            only, an unknown metric (each named).
    """
    if treatment is None:
        per_metric, found_seeds = _from_table(baseline, arms)
        seeds = seeds if seeds is not None else found_seeds
    else:
        per_metric = _from_values(baseline, treatment, metric)
    names = list(per_metric)
    primary = metric if metric is not None else names[0]
    if primary not in per_metric:
        raise ValueError(f"metric={primary!r} is not among the metrics given ({', '.join(names)})")
    lengths = {len(v) for pair in per_metric.values() for v in pair}
    if len(lengths) != 1:
        raise ValueError(f"every metric needs one value per seed in both arms; got lengths {sorted(lengths)}")
    n = lengths.pop()
    per_arm = {arm: [{m: float(per_metric[m][i][k]) for m in names} for k in range(n)]
               for i, arm in enumerate(ARMS)}  # fmt: skip
    bad = [m for m in names for pair in per_metric[m] for v in pair if not math.isfinite(float(v))]
    if bad:
        raise ValueError(f"metric {bad[0]!r} has a value that is not a finite number (a diverged run?)")
    directions: dict[str, bool | None] = {}
    if isinstance(higher_is_better, Mapping):
        directions = dict(higher_is_better)
    elif higher_is_better is not None:
        directions = {m: higher_is_better for m in names}
    deltas = smallest_effects(smallest_effect, primary, {m: list(per_metric[m][0]) for m in names})
    comparisons = compare_arms(per_arm, smallest_effect=deltas, alpha=alpha, primary=primary,
                               directions=directions)  # fmt: skip
    comparisons.sort(key=lambda c: names.index(c.metric))
    return Verdict(recipe="(per-seed values)", treatment=[arms[1]], baseline=[arms[0]],
                   seeds=list(seeds) if seeds is not None else list(range(n)), comparisons=comparisons,
                   stage_cka_mean={}, vary=[], smallest_effect=deltas, alpha=alpha,
                   primary=primary)  # fmt: skip


def _from_values(baseline: Any, treatment: Any, metric: str | None) -> dict[str, tuple[list[Any], list[Any]]]:
    if isinstance(baseline, Mapping) != isinstance(treatment, Mapping):
        raise ValueError("baseline and treatment must both be lists of values or both mappings of metrics")
    if not isinstance(baseline, Mapping):
        return {metric or "metric": (list(baseline), list(treatment))}
    missing = sorted(set(baseline) ^ set(treatment))
    if missing:
        raise ValueError(f"metrics {missing} are in one arm only; both arms need the same metrics")
    return {str(m): (list(baseline[m]), list(treatment[m])) for m in baseline}


def _from_table(table: Any, arms: tuple[str, str]) -> tuple[dict[str, tuple[list[Any], list[Any]]],
                                                              list[int]]:  # fmt: skip
    """Per metric the two arms' values in seed order, from rows (dicts) or a DataFrame."""
    frame = hasattr(table, "to_dict") and hasattr(table, "columns")
    rows = table.to_dict("records") if frame else list(table)
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("a table of results needs rows with seed and arm columns (a DataFrame, or dicts)")
    columns = list(rows[0])
    for needed in ("seed", "arm"):
        if needed not in columns:
            have = ", ".join(map(str, columns))
            raise ValueError(f"the results have no {needed!r} column (columns: {have})")
    long = "metric" in columns and "value" in columns
    values: dict[tuple[str, str, int], float] = {}
    for i, row in enumerate(rows, start=1):
        arm = str(row["arm"])
        if arm not in arms:
            raise ValueError(f"row {i}: arm {arm!r} is neither {arms[0]!r} nor {arms[1]!r} (arms=...)")
        try:
            seed = int(row["seed"])
            items = ([(str(row["metric"]), float(row["value"]))] if long else
                     [(str(k), float(v)) for k, v in row.items() if k not in ("seed", "arm")])  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise ValueError(f"row {i}: {exc} (seed must be an integer, every value a number)") from None
        for name, value in items:
            key = (name, arm, seed)
            if key in values:
                raise ValueError(f"row {i}: a second value of {name!r} for arm {arm!r}, seed {seed}")
            values[key] = value
    metrics = list(dict.fromkeys(name for name, _, _ in values))
    seeds = sorted({seed for _, _, seed in values})
    out = {}
    for name in metrics:
        lone = [f"seed {s} of {a}" for s in seeds for a in arms if (name, a, s) not in values]
        if lone:
            missing = ", ".join(lone[:4])
            raise ValueError(f"metric {name!r}: no value for {missing}; each seed needs both arms")
        out[name] = tuple([values[(name, a, s)] for s in seeds] for a in arms)
    return out, seeds  # type: ignore[return-value]


def read_results(path: str | Path | None, *, mlflow: str | None = None, arms: str = "baseline,treatment",
                 mlflow_arms: Sequence[str] | None = None, tracking_uri: str | None = None,
                 ) -> tuple[list[dict[str, Any]], tuple[str, str]]:  # fmt: skip
    """The per-seed rows ``contrastlab judge`` reads and the arms' names: a results CSV (a header with
    ``seed``, ``arm`` and either ``metric``, ``value`` or one column per metric; ``arms`` names its two arms,
    baseline first), or with ``mlflow`` an MLflow experiment's runs (:func:`mlflow_results`).

    Raises:
        UnreadableFileError: not a CSV; a row longer or shorter than the header (its number).
        ValueError: neither a CSV nor ``mlflow`` with two arms, or both.
    """
    if mlflow is not None:
        if len(mlflow_arms or []) != 2 or path is not None:
            raise ValueError("--mlflow reads two arms (--arm tag=value twice, baseline first), not a CSV")
        assert mlflow_arms is not None
        names = tuple(arm.partition("=")[2] for arm in mlflow_arms)
        return mlflow_results(mlflow, mlflow_arms, tracking_uri=tracking_uri), (names[0], names[1])
    if path is None:
        raise ValueError("judge needs a results CSV, or --mlflow EXPERIMENT with two --arm tag=value")
    baseline, _, treatment = arms.partition(",")
    described = "a CSV of per-seed results (seed, arm, and metric,value or one column per metric)"
    with reading(Path(path), described), Path(path).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    bad = ragged_row(rows)
    if bad is not None:
        raise UnreadableFileError(f"{path}: row {bad} has more or fewer fields than the header")
    return rows, (baseline, treatment)


def mlflow_results(experiment: str, arms: Sequence[str], *, tracking_uri: str | None = None,
                   seed_key: str = "seed") -> list[dict[str, Any]]:  # fmt: skip
    """Per-seed results for :func:`judge` from an MLflow experiment: each arm is the runs with one tag
    (``"variant=supcon"``), each run's seed its ``seed_key`` param or tag, its values the run's metrics
    (their last logged values). Rows name their arm by the tag's value.

    Raises:
        ValueError: no such experiment, an arm that is not ``tag=value``, an arm without runs, a run
            without a seed (named by its run id), or two runs of one arm with the same seed.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment named {experiment!r} at {client.tracking_uri}")
    rows = []
    for arm in arms:
        tag, sep, value = arm.partition("=")
        if not sep or not tag or not value:
            raise ValueError(f"--arm {arm!r}: expected tag=value (the tag that marks the arm's runs)")
        runs = client.search_runs([found.experiment_id], filter_string=f"tags.`{tag}` = '{value}'")
        if not runs:
            raise ValueError(f"no run of experiment {experiment!r} has the tag {tag}={value}")
        for run in runs:
            seed = run.data.params.get(seed_key, run.data.tags.get(seed_key))
            if seed is None:
                raise ValueError(f"run {run.info.run_id} ({tag}={value}) has no {seed_key!r} param or tag")
            rows.append({"seed": seed, "arm": value, **run.data.metrics})
    return rows
