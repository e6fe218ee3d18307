"""The experiments' results as types: :class:`Verdict` (one recipe's paired verdict, verdict.json),
:class:`RecipeVerdicts` (several recipes' verdicts and their aggregate, verdicts.json), :class:`SweepResult`
(sweep.json) and :class:`RunComparison` (compare.json).

Everything that shows a verdict (the CLI's table, the report, a curve of verdicts, the trackers) reads these
attributes; :meth:`Verdict.to_dict` is what verdict.json holds and :meth:`Verdict.from_json` reads it back,
files written by earlier versions included (fields they lack take the defaults those versions meant).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from contrastlab.experiments.dominance import Aggregate
from contrastlab.experiments.stats import PairedComparison

__all__ = ["ComparedRun", "DivergedRun", "Extension", "RecipeCall", "RecipeVerdicts", "RunComparison",
           "SeedPlan", "SequentialLooks", "SweepResult", "SweepTrial", "Verdict"]

VERDICT_FILE = "verdict.json"
VERDICTS_FILE = "verdicts.json"


@dataclass(frozen=True)
class SequentialLooks:
    """How ``seeds="auto"`` added seed pairs: looks after ``first`` pairs and after each further pair up to
    ``most``, each testing at ``alpha_per_look``; it stopped after ``stopped_at`` pairs."""

    method: str
    first: int
    most: int
    looks: int
    alpha: float
    alpha_per_look: float
    stopped_at: int
    decided: bool


@dataclass(frozen=True)
class Extension:
    """One ``--resume`` with more seed pairs: from how many, and whether a verdict had been written (and
    could have been looked at) before it."""

    from_seeds: int
    after_verdict: bool


@dataclass(frozen=True)
class DivergedRun:
    """A run that stayed finite but did not learn (its values are in the verdict's table)."""

    why: str
    arm: str
    seed: int


@dataclass(frozen=True)
class Verdict:
    """One recipe's paired verdict: what was compared, over which seeds, and every metric's comparison.

    Attributes:
        recipe: The recipe's path, or the mapping given from Python.
        treatment: What the treatment arm sets (``key=value`` items).
        baseline: What the baseline arm is (its overrides, or ``recipe PATH``).
        seeds: The seed of each pair, in order.
        vary: The sources of variance drawn anew at each seed.
        smallest_effect: δ per metric, where one was given (the equivalence test's margin).
        alpha: The level every test and interval of this verdict uses.
        sequential: How seed pairs were added (``seeds="auto"``), else None.
        primary: The metric the verdict answers first (the test value of the early-stopping metric).
        comparisons: Every metric's paired comparison, task metrics first, then the diagnostics.
        stage_cka: CKA between the arms' models at each stage, one value per seed.
        stage_cka_mean: Its mean over seeds, per stage.
        extended: The extensions by ``--resume`` with more seed pairs, oldest first.
        diverged: Runs that diverged though every step stayed finite.
        environment: Versions and host the verdict was computed on (None in files from before it was
            recorded).
    """

    recipe: str | dict[str, Any]
    treatment: list[str]
    baseline: list[str]
    seeds: list[int]
    comparisons: list[PairedComparison]
    stage_cka_mean: dict[str, float]
    vary: list[str] = field(default_factory=lambda: ["init", "order"])
    smallest_effect: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.05
    sequential: SequentialLooks | None = None
    primary: str | None = None
    stage_cka: dict[str, list[float]] = field(default_factory=dict)
    extended: list[Extension] = field(default_factory=list)
    diverged: list[DivergedRun] = field(default_factory=list)
    environment: dict[str, Any] | None = None

    def comparison(self, metric: str) -> PairedComparison:
        """The comparison of ``metric``.

        Raises:
            KeyError: the verdict did not compare it (the message lists what it compared).
        """
        for c in self.comparisons:
            if c.metric == metric:
                return c
        have = ", ".join(c.metric for c in self.comparisons)
        raise KeyError(f"the verdict has no comparison of {metric!r}; it compared {have}")

    @property
    def primary_comparison(self) -> PairedComparison | None:
        """The primary metric's comparison (None when the verdict has no primary metric)."""
        return None if self.primary is None else self.comparison(self.primary)

    def to_dict(self) -> dict[str, Any]:
        """What verdict.json holds (the comparisons with their sentences and calls written out)."""
        out: dict[str, Any] = {
            "recipe": self.recipe, "treatment": self.treatment, "baseline": self.baseline,
            "seeds": self.seeds, "vary": self.vary, "smallest_effect": self.smallest_effect,
            "alpha": self.alpha,
            "sequential": None if self.sequential is None else asdict(self.sequential),
            "primary": self.primary,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "stage_cka_baseline_vs_treatment": self.stage_cka, "stage_cka_mean": self.stage_cka_mean,
        }  # fmt: skip
        if self.extended:
            out["extended"] = [asdict(e) for e in self.extended]
        if self.diverged:
            out["diverged"] = [asdict(d) for d in self.diverged]
        if self.environment is not None:
            out["environment"] = self.environment
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """A verdict from what :meth:`to_dict` wrote (or an earlier version did: missing fields take their
        defaults; fields a newer version added are ignored)."""
        sequential = data.get("sequential")
        looks = {f.name for f in fields(SequentialLooks)}
        return cls(
            recipe=data["recipe"], treatment=list(data["treatment"]), baseline=list(data["baseline"]),
            seeds=list(data["seeds"]), vary=list(data.get("vary", ["init", "order"])),
            smallest_effect=dict(data.get("smallest_effect") or {}), alpha=float(data.get("alpha", 0.05)),
            sequential=None if not sequential else SequentialLooks(
                **{"method": "Bonferroni over the planned looks", "first": sequential["most"]
                   - sequential["looks"] + 1, "alpha": sequential["alpha_per_look"] * sequential["looks"],
                   **{k: v for k, v in sequential.items() if k in looks}}),
            primary=data.get("primary"),
            comparisons=[PairedComparison.from_dict(c) for c in data["comparisons"]],
            stage_cka=dict(data.get("stage_cka_baseline_vs_treatment") or {}),
            stage_cka_mean=dict(data["stage_cka_mean"]),
            extended=[Extension(e["from_seeds"], e["after_verdict"]) for e in data.get("extended", [])],
            diverged=[DivergedRun(d["why"], d["arm"], d["seed"]) for d in data.get("diverged", [])],
            environment=data.get("environment"),
        )  # fmt: skip

    def to_json(self, path: str | Path) -> None:
        """Writes :meth:`to_dict` to ``path`` atomically."""
        from contrastlab.train.checkpoint import write_json

        write_json(self.to_dict(), Path(path))

    @classmethod
    def from_json(cls, path: str | Path) -> Verdict:
        """Reads a verdict.json (or the directory holding one).

        Raises:
            FileNotFoundError: no such file.
            UnreadableFileError: not JSON, or not a verdict's (names the first wrong field).
        """
        from contrastlab.experiments.schemas import load_result

        path = Path(path)
        if path.is_dir():
            path = path / VERDICT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a verdict directory holds {VERDICT_FILE}")
        return cls.from_dict(load_result(path, "verdict"))

    def __str__(self) -> str:
        """The table and sentence ``contrastlab verdict`` prints."""
        from contrastlab.experiments.format import format_verdict

        return format_verdict(self)

    def _repr_html_(self) -> str:
        from contrastlab.experiments.format import verdict_html

        return verdict_html(self)


@dataclass(frozen=True)
class RecipeCall:
    """One recipe's primary metric in verdicts over several recipes, with its Holm adjustment across them."""

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


@dataclass(frozen=True)
class RecipeVerdicts:
    """Verdicts over several recipes (verdicts.json): each recipe's primary call and the aggregate."""

    recipes: list[str | dict[str, Any]]
    per_recipe: list[RecipeCall]
    aggregate: Aggregate

    def to_dict(self) -> dict[str, Any]:
        return {"recipes": self.recipes, "per_recipe": [asdict(r) for r in self.per_recipe],
                "aggregate": asdict(self.aggregate)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecipeVerdicts:
        known = {f.name for f in fields(RecipeCall)}
        rows = [RecipeCall(**{k: v for k, v in r.items() if k in known}) for r in data["per_recipe"]]
        return cls(list(data.get("recipes", [])), rows, Aggregate.from_dict(data["aggregate"]))

    @classmethod
    def from_json(cls, path: str | Path) -> RecipeVerdicts:
        """Reads a verdicts.json (or the directory holding one)."""
        from contrastlab.experiments.schemas import load_result

        path = Path(path)
        return cls.from_dict(load_result(path / VERDICTS_FILE if path.is_dir() else path, "verdicts"))

    def __str__(self) -> str:
        """What ``contrastlab verdict --recipes`` prints."""
        from contrastlab.experiments.format import format_recipe_verdicts

        return format_recipe_verdicts(self)


@dataclass(frozen=True)
class SeedPlan:
    """How many seed pairs would detect an effect of ``smallest_effect`` on ``metric`` at ``power``, from
    the spread of a pilot verdict's per-seed differences (None: more than 10,000)."""

    metric: str
    smallest_effect: float
    sd_of_differences: float
    pilot_seeds: int
    seeds_needed: int | None
    power: float

    def __str__(self) -> str:
        needed = self.seeds_needed if self.seeds_needed is not None else "more than 10,000"
        return (f"{self.metric}: {needed} seed pairs detect ±{self.smallest_effect:.4g} with "
                f"{self.power:.0%} power (sd of the per-seed differences {self.sd_of_differences:.3g}, from "
                f"{self.pilot_seeds} seeds)")  # fmt: skip


@dataclass(frozen=True)
class SweepTrial:
    """One trial of a sweep: its point, state (Optuna's: COMPLETE, PRUNED, FAIL, ...) and best monitored
    value; ``same_as`` names an earlier trial at the same point whose value it reused."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    last_reported: float | None = None
    run_dir: str | None = None
    same_as: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepTrial:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class SweepResult:
    """A sweep (sweep.json): every trial and the best complete one by the monitored metric."""

    monitor: str
    mode: str
    params: dict[str, list[Any]]
    trials: list[SweepTrial]
    best: SweepTrial | None
    #: Figures written beside sweep.json (not part of it).
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What sweep.json holds."""
        return {"monitor": self.monitor, "mode": self.mode, "params": self.params,
                "trials": [asdict(t) for t in self.trials],
                "best": None if self.best is None else asdict(self.best)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        best = data.get("best")
        return cls(data["monitor"], data["mode"], dict(data["params"]),
                   [SweepTrial.from_dict(t) for t in data["trials"]],
                   None if not best else SweepTrial.from_dict(best))  # fmt: skip

    @classmethod
    def from_json(cls, path: str | Path) -> SweepResult:
        """Reads a sweep.json (or the directory holding one)."""
        from contrastlab.experiments.schemas import load_result

        path = Path(path)
        return cls.from_dict(load_result(path / "sweep.json" if path.is_dir() else path, "sweep"))

    def __str__(self) -> str:
        """What ``contrastlab sweep`` prints: the trials by state and the best one."""
        states = [t.state for t in self.trials]
        counts = ", ".join(f"{s.lower()} {states.count(s)}" for s in sorted(set(states)))
        lines = [f"{len(states)} trials: {counts}"]
        best = self.best
        if best is not None:
            lines.append(f"best {self.monitor} = {best.value:.4f} with {best.params} ({best.run_dir})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from contrastlab.experiments.format import sweep_html

        return sweep_html(self)


@dataclass(frozen=True)
class ComparedRun:
    """One run of a comparison: its best monitored value, test and final validation metrics, the final
    train - val gap per metric and (when ``contrastlab diagnose`` ran) its main diagnostics."""

    run: str
    path: str
    epochs: int | None
    best: dict[str, Any]
    test: dict[str, float]
    final_val: dict[str, float]
    gap: dict[str, float]
    diagnostics: dict[str, float] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComparedRun:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**{"final_val": {}, "path": data.get("run", ""), **values})


@dataclass(frozen=True)
class RunComparison:
    """Runs side by side (compare.json)."""

    runs: list[ComparedRun]
    #: Figures written beside compare.json (not part of it).
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What compare.json holds (a run without diagnostics has no such key)."""
        return {"runs": [{k: v for k, v in asdict(r).items() if k != "diagnostics" or v is not None}
                         for r in self.runs]}  # fmt: skip

    @classmethod
    def from_json(cls, path: str | Path) -> RunComparison:
        """Reads a compare.json (or the directory holding one)."""
        from contrastlab.experiments.schemas import load_result

        path = Path(path)
        data = load_result(path / "compare.json" if path.is_dir() else path, "compare")
        return cls([ComparedRun.from_dict(r) for r in data["runs"]])

    def __str__(self) -> str:
        """One row per run: best monitored metric, test metrics, gaps, diagnostics."""
        from contrastlab.experiments.format import format_comparison

        return format_comparison(self)
