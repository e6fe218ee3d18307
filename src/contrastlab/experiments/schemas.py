"""What the result files contrastlab writes hold, checked when they are read back (``report``,
``verdict --resume``, curves): a file that is not JSON, or JSON of another shape (a hand edit, a truncated
copy, another program's file), is one :class:`~contrastlab._io.UnreadableFileError` naming the file and
the first field that is wrong, never a ``KeyError`` from deep inside a renderer.

The models are strict (a number written as a string is wrong) and allow fields they do not name, so a
result written by a newer version with more fields still reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from contrastlab._io import UnreadableFileError, read_json

__all__ = ["Kind", "load_result"]


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Interval(_Shape):
    estimate: float
    low: float
    high: float


class _Comparison(_Shape):
    """What a verdict holds of each comparison (every field PairedComparison.to_dict writes)."""

    metric: str
    baseline: list[float]
    treatment: list[float]
    mean_difference: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    verdict: str
    smallest_effect: float | None = None
    higher_is_better: bool | None
    differences: list[float]
    p_value: float
    minimum_detectable_effect: float | None
    p_adjusted: float | None = None
    family: str | None = None
    equivalence_low: float | None = None
    equivalence_high: float | None = None
    alpha: float = 0.05
    n: int
    sentence: str
    call: str
    probability_of_improvement: _Interval | None = None
    aso_epsilon: float | None = None


class _Sequential(_Shape):
    most: int
    looks: int
    alpha_per_look: float
    stopped_at: int
    decided: bool


class _Extension(_Shape):
    from_seeds: int
    after_verdict: bool


class _Diverged(_Shape):
    arm: str
    seed: int
    why: str


class _Verdict(_Shape):
    recipe: str | dict[str, Any]
    treatment: list[str]
    baseline: list[str]
    seeds: list[int]
    vary: list[str] = ["init", "order"]
    alpha: float = 0.05
    sequential: _Sequential | None = None
    primary: str | None = None
    comparisons: list[_Comparison]
    stage_cka_baseline_vs_treatment: dict[str, list[float]] = {}
    stage_cka_mean: dict[str, float]
    extended: list[_Extension] = []
    diverged: list[_Diverged] = []


class _RecipeCall(_Shape):
    recipe: str
    metric: str
    mean_difference: float
    p_value: float
    p_holm_recipes: float
    verdict: str
    call: str
    sentence: str
    treatment: list[str]
    baseline: list[str]
    seeds: int


class _Aggregate(_Shape):
    iqm_normalised_difference: _Interval
    probability_of_improvement: _Interval
    recipes: int


class _Verdicts(_Shape):
    per_recipe: list[_RecipeCall]
    aggregate: _Aggregate


class _Request(_Shape):
    recipe: str | dict[str, Any]
    treatment: list[str]
    seeds: int | Literal["auto"]
    extended: list[_Extension] = []


class _Trial(_Shape):
    state: str
    params: dict[str, Any]
    value: float | None = None
    run_dir: str | None = None


class _Sweep(_Shape):
    params: dict[str, list[Any]]
    trials: list[_Trial]
    monitor: str
    mode: Literal["min", "max"]
    best: dict[str, Any] | None = None


class _Best(_Shape):
    epoch: int | None
    metric: str | None = None
    value: float | None


class _Metrics(_Shape):
    best: _Best | dict[str, Any]
    test: dict[str, float]
    epochs_run: int = 0
    diverged: str | None = None


class _ComparedRun(_Shape):
    run: str
    epochs: int | None
    best: dict[str, Any]
    test: dict[str, float]
    gap: dict[str, float]


class _Compare(_Shape):
    runs: list[_ComparedRun]


class _CurvePoint(_Shape):
    label: str
    x: float
    verdict: str


class _Curve(_Shape):
    title: str
    metric: str
    x_label: str
    arms: list[str]
    notes: str = ""
    points: list[_CurvePoint]


_KINDS: dict[str, tuple[type[_Shape], str]] = {
    "verdict": (_Verdict, "a verdict (verdict.json, as contrastlab verdict writes it)"),
    "verdicts": (_Verdicts, "verdicts over recipes (verdicts.json, as contrastlab verdict --recipes writes)"),
    "request": (_Request, "a verdict's request.json (as contrastlab verdict writes it)"),
    "sweep": (_Sweep, "a sweep (sweep.json, as contrastlab sweep writes it)"),
    "metrics": (_Metrics, "a run's metrics.json (as contrastlab train writes it)"),
    "compare": (_Compare, "a comparison (compare.json, as contrastlab compare writes it)"),
    "curve": (_Curve, "a curve of verdicts (curve.json, as write_curve writes it)"),
}


Kind = Literal["verdict", "verdicts", "request", "sweep", "metrics", "compare", "curve"]


def load_result(path: str | Path, kind: Kind) -> dict[str, Any]:
    """A result file as written (a mapping), after checking that it has the shape of its kind (every field
    its typed result in :mod:`contrastlab.experiments.results` reads).

    Raises:
        UnreadableFileError: the file cannot be read, is not JSON, or a field is missing or of another type
            (the first one named, with where it is).
    """
    model, expected = _KINDS[kind]
    loaded = read_json(Path(path), expected)
    try:
        model.model_validate(loaded)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(the top level)"
        raise UnreadableFileError(f"{path} is not {expected} ({where}: {first['msg']})") from None
    if kind == "curve" and len(loaded["arms"]) != 2:
        arms = loaded["arms"]
        raise UnreadableFileError(f"{path} is not {expected} (arms: two names expected, got {arms})")
    return loaded
