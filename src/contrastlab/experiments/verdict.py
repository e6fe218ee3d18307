"""The paired experiment behind ``contrastlab verdict``: baseline and treatment, seed by seed.

For each seed both arms train on the same split from the same initial weights (the trainer seeds
everything before building the model). The treatment is the recipe with the treatment overrides; the
baseline switches the treated term off (its weight set to 0) when the treatment sets a weight, and is the
recipe as written otherwise. A verdict can also compare two recipes on the same data: the recipe against
a ``baseline`` recipe, or against the recipe it extends (``extends: base.yaml``) when no override is given,
so that each recipe of a grid that adds one term to a common base is compared with that base. Then every
task metric on the test split and every embedding diagnostic gets a :func:`paired_comparison`, and the two
arms' best checkpoints are compared stage by stage with CKA.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contrastlab._io import read_json
from contrastlab.experiments.arms import SOURCES, ArmTrainer, arm_changes, seed_overrides, share_seeds
from contrastlab.experiments.dominance import aggregate
from contrastlab.experiments.results import (
    DivergedRun,
    Extension,
    RecipeCall,
    RecipeVerdicts,
    SeedPlan,
    SequentialLooks,
    Verdict,
)
from contrastlab.experiments.schemas import load_result
from contrastlab.experiments.stats import (
    PairedComparison,
    SequentialPlan,
    compare_arms,
    holm_adjust,
    paired_comparison,
    seeds_needed,
)
from contrastlab.metrics import direction
from contrastlab.train import RunDir, RunDirError, load_config
from contrastlab.train.checkpoint import write_json
from contrastlab.train.config import TrainConfig
from contrastlab.train.keys import Override
from contrastlab.train.loggers import finish_group, tracking_group
from contrastlab.train.recipes import extended_recipe, recipe_name
from contrastlab.train.rundir import run_metadata

__all__ = ["baseline_override", "plan_seeds", "run_verdict", "run_verdicts", "smallest_effects"]

#: The level of every test when a verdict does not look sequentially (each look then tests at α/K).
ALPHA = 0.05


def _recipe_record(recipe: str | Path | dict[str, Any]) -> str | dict[str, Any]:
    """What verdict.json records of the recipe: its path, or the mapping given from Python."""
    return recipe if isinstance(recipe, dict) else str(recipe)


def baseline_override(treatment: str) -> str | None:
    """``objective.supcon.weight=0.2`` → ``objective.supcon.weight=0``; None for other treatments."""
    override = Override.parse(treatment)
    return str(override.with_value(0)) if override.weight_of is not None else None


def smallest_effects(spec: float | str | dict[str, float] | Sequence[str] | None, primary: str,
                     baseline: dict[str, list[float]]) -> dict[str, float]:  # fmt: skip
    """δ per metric from what a user wrote: a number (the primary metric's, in its units), ``"P%"`` (P per
    cent of each task metric's baseline mean), ``"metric=value"`` items, or a mapping.

    Example:
        >>> smallest_effects("test.accuracy=0.01", "test.accuracy", {"test.accuracy": [0.8, 0.9]})
        {'test.accuracy': 0.01}
        >>> smallest_effects("10%", "test.rmse", {"test.rmse": [2.0, 2.0], "test.mae": [1.0, 3.0]})
        {'test.rmse': 0.2, 'test.mae': 0.2}
    """
    if spec is None:
        return {}
    items: list[Any] = [spec] if isinstance(spec, str | int | float) else list(spec)
    if isinstance(spec, dict):
        items = [f"{k}={v}" for k, v in spec.items()]
    out: dict[str, float] = {}
    for item in items:
        text = str(item).strip()
        if "=" in text:
            metric, _, value = text.partition("=")
            if metric not in baseline:
                known = sorted(baseline)
                raise ValueError(f"--smallest-effect {text}: no metric {metric!r}; metrics: {known}")
            out[metric] = float(value)
        elif text.endswith("%"):
            share = float(text[:-1]) / 100
            for metric, values in baseline.items():
                if not metric.startswith("diagnostics."):
                    out[metric] = share * abs(float(np.mean(values)))
        else:
            out[primary] = float(text)
    bad = {m: d for m, d in out.items() if not d > 0}
    if bad:
        raise ValueError(f"--smallest-effect must be positive, got {bad}")
    return out


def run_verdict(
    recipe: str | Path | dict[str, Any],
    *,
    treatment: list[str] | None = None,
    seeds: int | str,
    out_dir: str | Path,
    baseline: str | Path | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    first_seed: int = 0,
    progress: bool | None = None,
    overwrite: bool = False,
    resume: bool = False,
    model: Any = None,
    dataset: Any = None,
    target: str | None = None,
    task: str | None = None,
    smallest_effect: float | str | dict[str, float] | Sequence[str] | None = None,
    vary: Sequence[str] = ("init", "order"),
    max_seeds: int = 10,
    storage: str | None = None,
    shared_runs: dict[str, Path] | None = None,
) -> Verdict:
    """Trains both arms seed by seed into ``out_dir/{baseline,treatment}/seed<k>``, writes verdict.json;
    returns the :class:`~contrastlab.experiments.results.Verdict` (``print`` it for the table).

    Args:
        treatment: Overrides that make the treatment arm from the recipe (the baseline arm switches a
            treated weight off, see :func:`baseline_override`). None or empty: the recipe as written is the
            treatment and ``baseline`` (or else the recipe it extends) the baseline.
        baseline: The baseline arm's recipe, when it is not the recipe itself; it must use the same data.
        seeds: How many seed pairs, or "auto": add pairs (3 first) until the primary metric's call is
            decided or ``max_seeds`` are spent, each look at α/K (:class:`~.stats.SequentialPlan`).
        smallest_effect: δ, the smallest difference that matters (:func:`smallest_effects`): adds the
            equivalence test (calls: helped / hurt / equivalent / inconclusive).
        vary: The sources of variance drawn anew at each seed, the same in both arms (init, order, split).
        storage: An Optuna RDB URL (PostgreSQL) several workers share, with the verdict directory: each
            seed pair trains in one of them (a silent worker's pair again), each writes the verdict.json.
        overwrite: Delete the verdict in ``out_dir`` and start over.
        resume: Finish an interrupted verdict (the same request: complete runs kept, the one cut short
            resumed), or add pairs to one (a larger ``seeds``; recorded in ``extended``, which says whether
            a verdict had been written: a look its p-values do not cover, unlike ``seeds="auto"``).
        model, dataset, target, task: Your encoder and data for both arms, as :func:`contrastlab.fit` takes
            them (each run trains its own copy of the encoder).
        shared_runs: Complete runs by configuration, shared by several verdicts (:func:`run_verdicts`): an
            arm already trained in another verdict is linked (relative symlink), not trained again.

    Raises:
        ValueError: fewer than 2 seeds, no treatment (and no baseline recipe), arms on different data, an
            unknown source of variance or metric.
        RunDirError: ``out_dir`` holds a verdict and neither flag is given, or ``resume`` with a different
            request (other than more seeds); another process is writing it.
    """
    if overwrite and resume:
        raise ValueError("--overwrite starts the verdict over and --resume finishes it: give one of them")
    ask = _Request.checked(recipe, treatment=treatment, seeds=seeds, baseline=baseline, overrides=overrides,
                           first_seed=first_seed, smallest_effect=smallest_effect, vary=vary,
                           max_seeds=max_seeds, storage=storage)  # fmt: skip
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset, target=target, task=task)
    out = RunDir(out_dir)
    # Workers sharing --storage join the verdict their request matches, one after another: each holds the
    # lock only to check or write request.json, so a worker started at the same moment waits its turn.
    with out.lock(wait=0.0 if storage is None else 60.0):
        extended = _prepare(out, ask.record(), overwrite=overwrite, resume=resume or storage is not None)
    # One process at a time writes a verdict directory; workers sharing --storage write its runs together
    # (each run directory has its own lock) and each writes the same verdict.json at the end.
    with out.lock() if storage is None else contextlib.nullcontext(), tracking_group("verdict", out.path):
        trainer = ArmTrainer(out.path, ask.arms, vary, progress, model, dataset, shared=shared_runs,
                             total=2 * len(ask.budget))  # fmt: skip
        if storage is not None:
            share_seeds(storage, out.path, list(ask.budget), trainer)
        per_arm, stage_cka, decided = _train_seeds(trainer, ask)
        trainer.close()
        verdict = ask.verdict(per_arm, stage_cka, decided=decided, extended=extended,
                              diverged=trainer.diverged)
        verdict.to_json(out.path / "verdict.json")
        finish_group(ask.config.trainer, out.path, _tracked(verdict), [out.path / "verdict.json"])
    return verdict


@dataclass(frozen=True)
class _Request:
    """What a verdict is asked, checked before anything is trained or written: both arms (recipe and
    overrides each), the seed pairs, the sources of variance and the tests' level."""

    recipe: str | Path | dict[str, Any]
    baseline: str | Path | dict[str, Any] | None
    treatment: list[str]
    overrides: list[str]
    seeds: int | str
    first_seed: int
    vary: Sequence[str]
    max_seeds: int
    smallest_effect: Any
    plan: SequentialPlan | None
    config: TrainConfig  # the recipe's, with the overrides both arms share
    changes: list[str]  # what the treatment arm sets differently, as key=value items

    @classmethod
    def checked(cls, recipe: str | Path | dict[str, Any], *, treatment: list[str] | None, seeds: int | str,
                baseline: str | Path | dict[str, Any] | None, overrides: list[str] | None, first_seed: int,
                smallest_effect: Any, vary: Sequence[str], max_seeds: int,
                storage: str | None) -> _Request:  # fmt: skip
        """The request, every argument checked (and the recipes loaded) before anything runs."""
        plan = SequentialPlan(first=3, most=max_seeds) if seeds == "auto" else None
        if plan is None and (not isinstance(seeds, int) or seeds < 2):
            raise ValueError(f"a paired verdict needs at least 2 seeds (or seeds='auto'), got {seeds!r}")
        if storage is not None and plan is not None:
            raise ValueError("--storage shares a fixed number of seeds among workers; give --seeds N, "
                             "not auto")  # fmt: skip
        treatment = list(treatment or [])
        if baseline is None and not treatment:
            baseline = extended_recipe(recipe)
            if baseline is None:
                raise ValueError(
                    "give at least one --treatment override (e.g. objective.supcon.weight=0.2), a "
                    "--baseline recipe, or a recipe that extends its baseline (extends: base.yaml); "
                    f"{recipe_name(recipe)} extends none"
                )
        seeded = seed_overrides(first_seed, vary)  # checks vary before any training
        config, _ = load_config(recipe, overrides)
        ask = cls(recipe, baseline, treatment, list(overrides or []), seeds, first_seed, vary, max_seeds,
                  smallest_effect, plan, config, treatment)  # fmt: skip
        if baseline is None:
            return ask
        # two recipes: what the treatment arm sets differently (and a check that both use the same data)
        return dataclasses.replace(ask, changes=arm_changes(ask.arms, seeded))

    @property
    def primary(self) -> str:
        return self.config.primary_metric

    @property
    def alpha(self) -> float:
        return self.plan.alpha_per_look if self.plan is not None else ALPHA

    @property
    def budget(self) -> range:
        """The seeds of the pairs to train (with a sequential plan, at most)."""
        pairs = self.plan.most if self.plan is not None else int(self.seeds)
        return range(self.first_seed, self.first_seed + pairs)

    @property
    def base_overrides(self) -> list[str]:
        return [o for t in self.treatment if (o := baseline_override(t)) is not None]

    @property
    def arms(self) -> dict[str, tuple[str | Path | dict[str, Any], list[str]]]:
        return {"baseline": (self.recipe if self.baseline is None else self.baseline,
                             [*self.overrides, *self.base_overrides]),
                "treatment": (self.recipe, [*self.overrides, *self.treatment])}  # fmt: skip

    def record(self) -> dict[str, Any]:
        """What request.json holds (a resumed verdict must be asked the same)."""
        out = {"recipe": _recipe_record(self.recipe), "treatment": self.treatment, "seeds": self.seeds,
               "first_seed": self.first_seed, "overrides": self.overrides, "vary": sorted(self.vary),
               "max_seeds": self.max_seeds if self.plan is not None else None}  # fmt: skip
        if self.baseline is not None:
            out["baseline"] = _recipe_record(self.baseline)
        return out

    def verdict(self, per_arm: dict[str, list[dict[str, float]]], stage_cka: list[dict[str, float]], *,
                decided: bool, extended: list[dict[str, Any]],
                diverged: dict[tuple[str, int], str]) -> Verdict:  # fmt: skip
        """The verdict on the trained seed pairs: every metric compared, the stage CKA averaged."""
        deltas = smallest_effects(self.smallest_effect, self.primary, _columns(per_arm["baseline"]))
        comparisons = compare_arms(per_arm, smallest_effect=deltas, alpha=self.alpha, primary=self.primary)
        seeds = list(range(self.first_seed, self.first_seed + len(stage_cka)))
        stages = list(stage_cka[0])
        base = self.base_overrides
        looks = None
        if self.plan is not None:
            looks = SequentialLooks(**self.plan.describe(), stopped_at=len(seeds), decided=decided)
        per_stage = {s: [row[s] for row in stage_cka] for s in stages}
        return Verdict(
            recipe=_recipe_record(self.recipe), treatment=self.changes,
            baseline=([f"recipe {_recipe_label(self.baseline)}", *base] if self.baseline is not None
                      else base or ["(recipe as written)"]),
            seeds=seeds, vary=[v for v in SOURCES if v in self.vary], smallest_effect=deltas,
            alpha=self.alpha, sequential=looks,
            primary=self.primary if any(c.metric == self.primary for c in comparisons) else None,
            comparisons=comparisons, stage_cka=per_stage,
            stage_cka_mean={s: float(np.mean(values)) for s, values in per_stage.items()},
            extended=[Extension(e["from_seeds"], e["after_verdict"]) for e in extended],
            diverged=[DivergedRun(diverged[(arm, k)], arm, k) for k in seeds
                      for arm in ("baseline", "treatment") if (arm, k) in diverged],
            environment=run_metadata(),
        )  # fmt: skip


def _train_seeds(trainer: ArmTrainer, ask: _Request,
                 ) -> tuple[dict[str, list[dict[str, float]]], list[dict[str, float]], bool]:  # fmt: skip
    """Trains the seed pairs in order (with a sequential plan, until a look decides the primary metric):
    the values per arm and seed, the stage CKA per seed, and whether a look decided."""
    per_arm: dict[str, list[dict[str, float]]] = {"baseline": [], "treatment": []}
    stage_cka: list[dict[str, float]] = []
    plan = ask.plan
    for k in ask.budget:
        values, cka_row = trainer.seed(k)
        for arm in per_arm:
            per_arm[arm].append(values[arm])
        stage_cka.append(cka_row)
        if plan is not None and len(stage_cka) >= plan.first:
            deltas = smallest_effects(ask.smallest_effect, ask.primary, _columns(per_arm["baseline"]))
            look = _primary_comparison(per_arm, ask.primary, deltas, ask.alpha)
            if look is not None and plan.decided(look):
                return per_arm, stage_cka, True
    return per_arm, stage_cka, False


def _recipe_label(recipe: str | Path | dict[str, Any]) -> str:
    return str(recipe) if not isinstance(recipe, dict) else recipe_name(recipe)


def _tracked(verdict: Verdict) -> dict[str, Any]:
    """What the trackers' group run shows of a verdict: the primary metric's call and numbers."""
    summary: dict[str, Any] = {"treatment": " ".join(verdict.treatment), "seeds": len(verdict.seeds)}
    c = verdict.primary_comparison
    if c is not None:
        summary.update({"primary": c.metric, "verdict": c.verdict, "sentence": c.sentence(),
                        "mean_difference": c.mean_difference, "p_value": c.p_value})  # fmt: skip
        summary.update({k: v for k, v in (("ci_low", c.ci_low), ("ci_high", c.ci_high)) if np.isfinite(v)})
    return summary


def plan_seeds(directory: str | Path, smallest_effect: float | str | dict[str, float] | Sequence[str],
               *, power: float = 0.8, alpha: float = 0.05) -> list[SeedPlan]:  # fmt: skip
    """How many seed pairs would detect an effect of δ at ``power``, per task metric of a finished verdict
    (or a pilot one), from the spread of its per-seed differences.

    Raises:
        FileNotFoundError: no verdict.json in ``directory``.
    """
    path = Path(directory) / "verdict.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --plan reads a finished (or pilot) verdict")
    verdict = Verdict.from_json(path)
    task = {c.metric: c for c in verdict.comparisons if c.family == "task"}
    primary = verdict.primary or next(iter(task), "")
    rows = []
    baseline = {metric: c.baseline for metric, c in task.items()}
    for metric, delta in smallest_effects(smallest_effect, primary, baseline).items():
        sd = float(np.std(task[metric].differences, ddof=1))
        needed = seeds_needed(sd, delta, alpha=alpha, power=power)
        rows.append(SeedPlan(metric, delta, sd, task[metric].n, needed, power))
    return rows


def _columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    return {name: [r[name] for r in rows] for name in rows[0] if all(name in r for r in rows)}


def _primary_comparison(per_arm: dict[str, list[dict[str, float]]], primary: str, deltas: dict[str, float],
                        alpha: float) -> PairedComparison | None:  # fmt: skip
    base, treated = _columns(per_arm["baseline"]), _columns(per_arm["treatment"])
    if primary not in base or primary not in treated:
        return None
    return paired_comparison(base[primary], treated[primary], metric=primary,
                             higher_is_better=direction(primary), alpha=alpha, confidence=1 - alpha,
                             smallest_effect=deltas.get(primary))  # fmt: skip


def _prepare(out: RunDir, request: dict[str, Any], *, overwrite: bool,
             resume: bool) -> list[dict[str, Any]]:  # fmt: skip
    """Refuses, clears or checks an existing verdict directory, then records what is asked of it; returns
    the verdict's extensions so far (``from_seeds``, ``after_verdict``: whether a verdict had been written
    before it), oldest first."""
    recorded = out.path / "request.json"
    held = sorted(e.name for e in out.path.iterdir() if e.name != out.lock_file.name)
    extended: list[dict[str, Any]] = []
    if held:
        ours = recorded.is_file() or (out.path / "verdict.json").is_file()
        if not (overwrite or resume):
            raise RunDirError(
                f"{out.path} already holds {'a verdict' if ours else 'files'} ({', '.join(held[:4])});"
                " --resume finishes an interrupted verdict (complete seeds are kept) or, with a larger "
                "--seeds, adds seed pairs to it; --overwrite deletes it and starts over; or choose another "
                "--out"
            )
        if not ours:
            raise RunDirError(f"{out.path} holds files that are not a verdict's; choose another --out")
        if overwrite:
            out.clear()
        elif recorded.is_file():
            before = load_result(recorded, "request")
            extended = before.pop("extended", [])
            if before != request:
                if not _more_seeds(before, request):
                    raise RunDirError(
                        f"--resume: {out.path} was started with {before}, not {request}; resume it with the "
                        "same recipe, treatment, seeds and overrides (or more --seeds, to add pairs), or use "
                        "--overwrite"
                    )
                written = out.path / "verdict.json"  # the smaller verdict's, if it got that far
                seeds = read_json(written, "a verdict", keys=("seeds",))["seeds"] if written.is_file() else []
                seen = len(seeds) if isinstance(seeds, list) else 0
                extended.append({"from_seeds": before["seeds"], "after_verdict": seen == before["seeds"]})
    write_json({**request, "extended": extended} if extended else request, recorded)
    return extended


def _more_seeds(before: dict[str, Any], request: dict[str, Any]) -> bool:
    """Whether ``request`` asks for the same verdict as ``before`` with more seed pairs (a fixed number)."""
    same = {**before, "seeds": None} == {**request, "seeds": None}
    fixed = isinstance(before["seeds"], int) and isinstance(request["seeds"], int)
    return same and fixed and request["seeds"] > before["seeds"]


def run_verdicts(recipes: Sequence[str | Path], *, out_dir: str | Path, seed: int = 0, n_boot: int = 2000,
                 **options: Any) -> RecipeVerdicts:  # fmt: skip
    """One verdict per recipe (into ``out_dir/<recipe name>``, with the same treatment and options), Holm
    across the recipes' primary metrics, and rliable's aggregate view across them: the interquartile mean
    (IQM) of the per-seed differences as a share of each recipe's baseline mean, turned so that positive is
    better, and the probability of improvement averaged over recipes, both with stratified bootstrap
    intervals (seeds resampled within each recipe). Writes ``out_dir/verdicts.json``.

    Without a treatment each recipe is compared with its ``baseline`` recipe, or with the recipe it extends:
    a grid of recipes that each add one term to a common base. Runs that two verdicts share (the base, at
    the same seed) are trained once and linked into the others (see ``shared_runs`` in :func:`run_verdict`).

    Raises:
        ValueError: fewer than two recipes, or two with the same name.
    """
    names = [recipe_name(r) for r in recipes]
    if len(recipes) < 2:
        raise ValueError("--recipes needs at least two recipes (one recipe: contrastlab verdict RECIPE)")
    if len(set(names)) != len(names):
        raise ValueError(f"--recipes: two recipes share a name ({names}); each gets out_dir/<name>")
    out = Path(out_dir)
    primaries: list[tuple[Verdict, PairedComparison]] = []
    shared: dict[str, Path] = {}
    for recipe, name in zip(recipes, names, strict=True):
        verdict = run_verdict(recipe, out_dir=out / name, shared_runs=shared, **options)
        if verdict.primary_comparison is None:
            raise ValueError(f"recipe {name}: no primary metric to aggregate (its early-stopping metric)")
        primaries.append((verdict, verdict.primary_comparison))
    adjusted = holm_adjust([c.p_value for _, c in primaries])
    rows = []
    for name, (verdict, c), p_adj in zip(names, primaries, adjusted, strict=True):
        call: str = c.verdict
        if call in ("helped", "hurt", "increased", "decreased") and p_adj >= verdict.alpha:
            call = "no detectable effect after Holm across recipes"
        rows.append(RecipeCall(recipe=name, metric=c.metric, mean_difference=c.mean_difference,
                               p_value=c.p_value, p_holm_recipes=p_adj, verdict=c.verdict, call=call,
                               sentence=c.sentence(), treatment=verdict.treatment, baseline=verdict.baseline,
                               seeds=len(verdict.seeds)))  # fmt: skip
    result = RecipeVerdicts(
        recipes=[r if isinstance(r, dict) else str(r) for r in recipes], per_recipe=rows,
        aggregate=aggregate([(c.baseline, c.treatment, c.higher_is_better) for _, c in primaries], seed=seed,
                            n_boot=n_boot),
    )  # fmt: skip
    write_json(result.to_dict(), out / "verdicts.json")
    return result
