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
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contrastlab._io import read_json
from contrastlab.experiments.schemas import load_result
from contrastlab.experiments.stats import (
    PairedComparison,
    SequentialPlan,
    adjust_family,
    almost_stochastic_order,
    holm_adjust,
    improvement_share,
    paired_comparison,
    percent,
    probability_of_improvement,
    seeds_needed,
)
from contrastlab.metrics import direction
from contrastlab.train import RunDir, RunDirError, load_config, train
from contrastlab.train.checkpoint import write_json
from contrastlab.train.config import extended_recipe, flat_settings, recipe_name
from contrastlab.train.loggers import finish_group, tracking_group

__all__ = ["SOURCES", "arm_run", "baseline_override", "compare_arms", "flatten_numbers", "iqm", "plan_seeds",
           "run_verdict", "run_verdicts", "seed_overrides", "smallest_effects"]

#: The embedding diagnostics a verdict compares (their directions come from contrastlab.metrics).
_DIAGNOSTICS = (
    "probes.logistic.accuracy",
    "probes.ridge.r2",  # regression tasks
    "probes.ridge.mae",
    "probes.knn1_accuracy",
    "clustering.ari",
    "clustering.nmi",
    "geometry.class_cosine.gap",
    "geometry.uniformity",
    "geometry.alignment",  # runs with views only
    "geometry.rankme",
    "geometry.collapse_std",
)


def _recipe_record(recipe: str | Path | dict[str, Any]) -> str | dict[str, Any]:
    """What verdict.json records of the recipe: its path, or the mapping given from Python."""
    return recipe if isinstance(recipe, dict) else str(recipe)


def arm_run(out: str | Path, arm: str, seed: int) -> RunDir:
    """The run of one arm ("baseline" or "treatment") at one seed inside a verdict's directory."""
    return RunDir(Path(out) / arm / f"seed{seed}")


def baseline_override(treatment: str) -> str | None:
    """``objective.supcon.weight=0.2`` → ``objective.supcon.weight=0``; None for other treatments."""
    key = treatment.split("=", 1)[0]
    return f"{key}=0" if re.fullmatch(r"objective\.\w+\.weight", key) else None


def flatten_numbers(prefix: str, value: Any, out: dict[str, float]) -> None:
    """The numbers in a nested mapping, into ``out`` under dotted keys (booleans are not numbers here)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten_numbers(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


#: The sources of variance a verdict can draw anew at each seed (Bouthillier et al. 2021): the initial
#: weights and dropout, the batch order and augmentation draws, and the train/val/test split.
SOURCES = ("init", "order", "split")


def seed_overrides(seed: int, vary: Sequence[str]) -> list[str]:
    """What one seed sets for the sources of variance in ``vary`` (the rest stay the recipe's).

    Example:
        >>> seed_overrides(3, ["init", "order"]), seed_overrides(3, ["order", "split"])
        (['trainer.seed=3'], ['trainer.order_seed=3', 'data.split_seed=3'])
    """
    unknown = sorted(set(vary) - set(SOURCES))
    if unknown or not vary:
        raise ValueError(f"vary={list(vary)!r}; choose one or more of {', '.join(SOURCES)}")
    out = []
    if "init" in vary and "order" in vary:
        out.append(f"trainer.seed={seed}")
    elif "init" in vary:
        out.append(f"trainer.init_seed={seed}")
    elif "order" in vary:
        out.append(f"trainer.order_seed={seed}")
    if "split" in vary:
        out.append(f"data.split_seed={seed}")
    return out


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
    smallest_effect: float | str | dict[str, float] | Sequence[str] | None = None,
    vary: Sequence[str] = ("init", "order"),
    max_seeds: int = 10,
    storage: str | None = None,
    shared_runs: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Trains both arms seed by seed into ``out_dir/{baseline,treatment}/seed<k>`` and writes
    ``out_dir/verdict.json``; returns its content.

    Args:
        treatment: Overrides that make the treatment arm from the recipe (the baseline arm switches a
            treated weight off, see :func:`baseline_override`). None or empty: the recipe as written is the
            treatment and ``baseline`` (or else the recipe it extends) the baseline.
        baseline: The baseline arm's recipe, when it is not the recipe itself; it must use the same data.
        seeds: How many seed pairs, or "auto": add pairs (3 first) until the primary metric's call is
            decided (helped / hurt, or equivalent with ``smallest_effect``) or ``max_seeds`` are spent,
            each look testing at α/K (:class:`~contrastlab.experiments.stats.SequentialPlan`).
        smallest_effect: δ, the smallest difference that matters (see :func:`smallest_effects`): adds
            the equivalence test; the calls become helped / hurt / equivalent / inconclusive.
        vary: The sources of variance drawn anew at each seed (init, order, split; both arms of a seed
            share them).
        storage: An Optuna RDB URL (PostgreSQL) that several workers share: each seed pair is trained by
            exactly one of them (a silent worker's pair is run again after the sweep's grace period), and
            every worker then writes the same verdict.json. The verdict directory must be shared too.
        overwrite: ``out_dir`` holds a verdict: delete it and start over.
        resume: ``out_dir`` holds a verdict that was interrupted: keep its complete runs, resume the run
            that was cut short, train the rest (the same request only). Or a verdict with fewer seed pairs
            (the same request but a larger ``seeds``): keep its pairs and add the rest. The verdict records
            the extension (``extended``), and says when it came after a verdict had been written: a call
            made after looking at a smaller verdict is not covered by its p-values (``seeds="auto"`` adds
            pairs with the looks accounted for).
        model, dataset: Your encoder and data for both arms (as in :func:`contrastlab.fit`): each run trains
            its own copy of the encoder, so both arms of a seed start from the same weights.
        shared_runs: Complete runs by configuration, shared by several verdicts (:func:`run_verdicts`): an arm
            whose configuration and seed were already trained in another verdict is linked to that run
            (a relative symbolic link) instead of being trained again. Filled as runs complete.

    Raises:
        ValueError: fewer than 2 seeds, no treatment (and no baseline recipe), arms on different data, an
            unknown source of variance or metric.
        RunDirError: ``out_dir`` holds a verdict and neither flag is given, or ``resume`` with a different
            request (other than more seeds); another process is writing it.
    """
    plan = SequentialPlan(first=3, most=max_seeds) if seeds == "auto" else None
    if plan is None and (not isinstance(seeds, int) or seeds < 2):
        raise ValueError(f"a paired verdict needs at least 2 seeds (or seeds='auto'), got {seeds!r}")
    treatment = list(treatment or [])
    if baseline is None and not treatment:
        baseline = extended_recipe(recipe)
        if baseline is None:
            raise ValueError(
                "give at least one --treatment override (e.g. objective.supcon.weight=0.2), a --baseline "
                f"recipe, or a recipe that extends its baseline (extends: base.yaml); {recipe_name(recipe)} "
                "extends none"
            )
    if overwrite and resume:
        raise ValueError("--overwrite starts the verdict over and --resume finishes it: give one of them")
    seed_overrides(first_seed, vary)  # checks vary before any training
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset)
    config, _ = load_config(recipe, overrides)
    primary = f"test.{config.trainer.early_stopping.monitor.split('/')[-1]}"
    alpha = plan.alpha_per_look if plan is not None else 0.05
    if storage is not None and plan is not None:
        raise ValueError("--storage shares a fixed number of seeds among workers; give --seeds N, not auto")
    out = RunDir(out_dir)
    request = {"recipe": _recipe_record(recipe), "treatment": treatment, "seeds": seeds,
               "first_seed": first_seed, "overrides": overrides or [], "vary": sorted(vary),
               "max_seeds": max_seeds if plan is not None else None}  # fmt: skip
    if baseline is not None:
        request["baseline"] = _recipe_record(baseline)
    base_overrides = [o for t in treatment if (o := baseline_override(t)) is not None]
    arms = {"baseline": (recipe if baseline is None else baseline, [*(overrides or []), *base_overrides]),
            "treatment": (recipe, [*(overrides or []), *treatment])}  # fmt: skip
    # two recipes: what the treatment arm sets differently (and a check that both use the same data)
    changes = _changes(arms, seed_overrides(first_seed, vary)) if baseline is not None else treatment
    # Workers sharing --storage join the verdict their request matches, one after another: each holds the
    # lock only to check or write request.json, so a worker started at the same moment waits its turn.
    with out.lock(wait=0.0 if storage is None else 60.0):
        extended = _prepare(out, request, overwrite=overwrite, resume=resume or storage is not None)
    # One process at a time writes a verdict directory; workers sharing --storage write its runs together
    # (each run directory has its own lock) and each writes the same verdict.json at the end.
    with out.lock() if storage is None else contextlib.nullcontext(), tracking_group("verdict", out.path):
        trainer = _Arms(out.path, arms, vary, progress, model, dataset,
                        total=2 * (plan.most if plan is not None else int(seeds)),
                        shared=shared_runs)  # fmt: skip
        if storage is not None:
            _share_seeds(storage, out.path, list(range(first_seed, first_seed + int(seeds))), trainer)
        per_arm: dict[str, list[dict[str, float]]] = {"baseline": [], "treatment": []}
        stage_cka: list[dict[str, float]] = []
        decided = False
        for k in range(first_seed, first_seed + (plan.most if plan is not None else int(seeds))):
            values, cka_row = trainer.seed(k)
            for arm in per_arm:
                per_arm[arm].append(values[arm])
            stage_cka.append(cka_row)
            if plan is not None and len(stage_cka) >= plan.first:
                deltas = smallest_effects(smallest_effect, primary, _columns(per_arm["baseline"]))
                look = _primary_comparison(per_arm, primary, deltas, alpha)
                if look is not None and plan.decided(look):
                    decided = True
                    break
        trainer.close()
        deltas = smallest_effects(smallest_effect, primary, _columns(per_arm["baseline"]))
        comparisons = compare_arms(per_arm, smallest_effect=deltas, alpha=alpha, primary=primary)
        stages = list(stage_cka[0])
        seed_list = list(range(first_seed, first_seed + len(stage_cka)))
        verdict = {
            "recipe": _recipe_record(recipe),
            "treatment": changes,
            "baseline": ([f"recipe {_recipe_label(baseline)}", *base_overrides] if baseline is not None
                         else base_overrides or ["(recipe as written)"]),
            "seeds": seed_list,
            "vary": [v for v in SOURCES if v in vary],
            "smallest_effect": deltas,
            "alpha": alpha,
            "sequential": None if plan is None else {**plan.describe(), "stopped_at": len(seed_list),
                                                     "decided": decided},
            "primary": primary if any(c["metric"] == primary for c in comparisons) else None,
            "comparisons": comparisons,
            "stage_cka_baseline_vs_treatment": {s: [row[s] for row in stage_cka] for s in stages},
            "stage_cka_mean": {s: float(np.mean([row[s] for row in stage_cka])) for s in stages},
        }
        if extended:
            verdict["extended"] = extended
        diverged = [{**trainer.diverged[(arm, k)], "arm": arm, "seed": k}
                    for k in seed_list for arm in ("baseline", "treatment") if (arm, k) in trainer.diverged]
        if diverged:  # runs that stayed finite but did not learn: their values are in the table
            verdict["diverged"] = diverged
        write_json(verdict, out.path / "verdict.json")
        finish_group(config.trainer, out.path, _tracked(verdict), [out.path / "verdict.json"])
    return verdict


def _recipe_label(recipe: str | Path | dict[str, Any]) -> str:
    return str(recipe) if not isinstance(recipe, dict) else recipe_name(recipe)


def _changes(arms: dict[str, tuple[Any, list[str]]], seeded: list[str]) -> list[str]:
    """What the treatment arm sets differently from the baseline arm (recipe and overrides each), as
    ``key=value`` items (its name aside), when the arms come from two recipes; refuses arms that would
    train or test on different data.

    A term the baseline lacks is listed by the settings the treatment's recipe writes for it (not every
    default of the term), and a term only the baseline has as ``key=null``.
    """
    loaded = {arm: load_config(recipe, [*arm_overrides, *seeded])
              for arm, (recipe, arm_overrides) in arms.items()}  # fmt: skip
    base, treated = (flat_settings(loaded[arm][0].model_dump(mode="json"))
                     for arm in ("baseline", "treatment"))  # fmt: skip
    written = flat_settings(loaded["treatment"][1])
    keys = [k for k in sorted(set(base) | set(treated))
            if k != "name" and base.get(k, ...) != treated.get(k, ...)]  # fmt: skip
    data = [f"{k}: {base.get(k, '(not set)')!r} vs {treated.get(k, '(not set)')!r}" for k in keys
            if k.startswith("data.")]  # fmt: skip
    if data:
        raise ValueError(
            "a verdict compares its arms on the same data, but the baseline and treatment recipes set "
            f"{'; '.join(data)}: give both the same data settings (or as overrides to both arms)"
        )
    shown = [k for k in keys if k in treated and (k in base or k in written or (
        treated[k] is None and any(b.startswith(f"{k}.") for b in base)))]  # fmt: skip
    items = [f"{k}={treated[k] if isinstance(treated[k], str) else json.dumps(treated[k])}" for k in shown]
    return items or ["(the same settings as the baseline)"]


def _tracked(verdict: dict[str, Any]) -> dict[str, Any]:
    """What the trackers' group run shows of a verdict: the primary metric's call and numbers."""
    primary = next((c for c in verdict["comparisons"] if c["metric"] == verdict.get("primary")), None)
    summary: dict[str, Any] = {"treatment": " ".join(verdict["treatment"]), "seeds": len(verdict["seeds"])}
    if primary is not None:
        summary.update({"primary": primary["metric"], "verdict": primary["verdict"],
                        "sentence": primary["sentence"]})  # fmt: skip
        summary.update({k: primary[k] for k in ("mean_difference", "ci_low", "ci_high", "p_value")
                        if primary.get(k) is not None})  # fmt: skip
    return summary


def plan_seeds(directory: str | Path, smallest_effect: float | str | dict[str, float] | Sequence[str],
               *, power: float = 0.8, alpha: float = 0.05) -> list[dict[str, Any]]:  # fmt: skip
    """How many seed pairs would detect an effect of δ at ``power``, per task metric of a finished verdict
    (or a pilot one), from the spread of its per-seed differences.

    Raises:
        FileNotFoundError: no verdict.json in ``directory``.
    """
    path = Path(directory) / "verdict.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --plan reads a finished (or pilot) verdict")
    verdict = load_result(path, "verdict")
    task = [c for c in verdict["comparisons"] if c.get("family") == "task"]
    baseline = {c["metric"]: c["baseline"] for c in task}
    primary = verdict.get("primary") or (task[0]["metric"] if task else "")
    rows = []
    for metric, delta in smallest_effects(smallest_effect, primary, baseline).items():
        c = next(c for c in task if c["metric"] == metric)
        sd = float(np.std(c["differences"], ddof=1))
        needed = seeds_needed(sd, delta, alpha=alpha, power=power)
        rows.append({"metric": metric, "smallest_effect": delta, "sd_of_differences": sd,
                     "pilot_seeds": c["n"], "seeds_needed": needed, "power": power})  # fmt: skip
    return rows


def _share_seeds(storage: str, out: Path, seeds: list[int], trainer: _Arms) -> None:
    """Trains every seed pair exactly once across the workers sharing ``storage`` (the sweep's mechanism:
    an Optuna study whose trials are the seeds, claimed row-locked, with heartbeats)."""
    from contrastlab.experiments.sweep import _open_study, _run_grid

    study, rdb = _open_study(storage, name=f"verdict:{out.resolve()}", shared=True, direction="minimize")

    def objective(trial: Any) -> float:
        trainer.seed(int(trial.suggest_categorical("seed", seeds)))  # the enqueued seed
        return 0.0

    _run_grid(study, rdb, [{"seed": k} for k in seeds], objective, shared=True)


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


class _Arms:
    """Trains one seed's two runs (complete runs are read back, a cut-short one resumed), with their
    diagnostics and the stage CKA between them."""

    def __init__(self, out: Path, arms: dict[str, tuple[str | Path | dict[str, Any], list[str]]],
                 vary: Sequence[str], progress: bool | None, model: Any, dataset: Any,
                 total: int, shared: dict[str, Path] | None = None) -> None:  # fmt: skip
        self.out, self.arms, self.vary = out, arms, vary
        self.model, self.dataset = model, dataset
        # Runs given a model or dataset object cannot be matched by configuration: nothing is shared then.
        self.shared = shared if model is None and dataset is None else None
        self.show = sys.stderr.isatty() if progress is None else progress
        self.bar = _VerdictBar(total, enabled=self.show)
        # A seed this process already trained and diagnosed (a --storage worker reads every seed back at
        # the end) is not diagnosed again.
        self._done: dict[int, tuple[dict[str, dict[str, float]], dict[str, float]]] = {}
        #: (arm, seed) -> {"why": ...} for the runs that diverged though every step stayed finite.
        self.diverged: dict[tuple[str, int], dict[str, str]] = {}

    def seed(self, k: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        if k not in self._done:
            self._done[k] = self._seed(k)
        return self._done[k]

    def _seed(self, k: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        from contrastlab.train.diagnose import diagnose_run

        values: dict[str, dict[str, float]] = {}
        for arm, (recipe, arm_overrides) in self.arms.items():
            config, raw = load_config(recipe, [*arm_overrides, *seed_overrides(k, self.vary)])
            run = arm_run(self.out, arm, k)
            key = json.dumps(raw, sort_keys=True, default=str)
            self._link(run, key, f"{arm} seed {k}")
            self.bar.start(f"{arm} seed {k}", config.trainer.epochs)
            if run.is_complete():  # a resumed verdict keeps what finished (or another verdict did)
                metrics = load_result(run.metrics, "metrics")
                test, best, diverged = metrics["test"], metrics["best"], metrics.get("diverged")
            else:
                if not self.show:
                    print(f"[verdict] {arm} seed {k}: {' '.join([recipe_name(recipe), *arm_overrides])}",
                          file=sys.stderr)  # fmt: skip
                result = train(config, run.path, raw_config=raw, override_note=arm_overrides, progress=False,
                               quiet=self.show, on_epoch=self.bar.epoch, resume=run.last.is_file(),
                               overwrite=run.holds_run(), model=self.model, dataset=self.dataset)  # fmt: skip
                test, best, diverged = result.test, result.best, result.diverged
            if diverged:
                self.diverged[(arm, k)] = {"why": diverged}
            if self.shared is not None:
                self.shared.setdefault(key, run.path.resolve())
            row = {f"test.{m}": v for m, v in test.items()}
            row.update({f"best_val.{best['metric']}": best["value"]})
            diag = diagnose_run(run.path, split="test", plots=False, dataset=self.dataset)
            flat: dict[str, float] = {}
            flatten_numbers("", diag["embedding"], flat)
            row.update({f"diagnostics.{k2}": v for k2, v in flat.items() if k2 in _DIAGNOSTICS})
            values[arm] = row
            self.bar.done()
        treated, baseline = arm_run(self.out, "treatment", k).path, arm_run(self.out, "baseline", k).path
        diag = diagnose_run(treated, split="test", against=baseline, model=self.model, dataset=self.dataset)
        return values, diag["comparison"]["stage_cka"]

    def _link(self, run: RunDir, key: str, label: str) -> None:
        """Links ``run`` to the same configuration's complete run in another verdict, if there is one."""
        if self.shared is None or run.is_complete():
            return
        source = self.shared.get(key)
        if source is None or run.path.exists() or not RunDir(source).is_complete():
            return
        if run.path.is_symlink():  # a link left dangling by a deleted verdict
            run.path.unlink()
        run.path.parent.mkdir(parents=True, exist_ok=True)
        run.path.symlink_to(os.path.relpath(source, run.path.parent), target_is_directory=True)
        print(f"[verdict] {label}: the same configuration and seed as {source}, linked (not trained again)",
              file=sys.stderr)  # fmt: skip

    def close(self) -> None:
        self.bar.close()


def compare_arms(
    per_arm: dict[str, list[dict[str, float]]], *, smallest_effect: dict[str, float] | None = None,
    alpha: float = 0.05, primary: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Paired comparisons of every metric both arms have at every seed, in two Holm-corrected families: the
    task metrics (the question asked) and the diagnostics. Directions come from :mod:`contrastlab.metrics`.
    Each carries the probability of improvement (with its interval); the primary metric also ASO's ε_min
    (a bootstrap of about 2 s a metric)."""
    families: dict[str, list[PairedComparison]] = {"task": [], "diagnostic": []}
    deltas = smallest_effect or {}
    for name in per_arm["baseline"][0]:
        if not all(name in row for rows in per_arm.values() for row in rows):
            continue
        families["diagnostic" if name.startswith("diagnostics.") else "task"].append(
            paired_comparison(
                [r[name] for r in per_arm["baseline"]],
                [r[name] for r in per_arm["treatment"]],
                metric=name,
                higher_is_better=direction(name),
                alpha=alpha,
                confidence=1 - alpha,
                smallest_effect=deltas.get(name),
            )
        )
    out = []
    for family, members in families.items():
        for c in adjust_family(members, family=family, alpha=alpha):
            row = c.to_dict()
            better, pair = c.higher_is_better, (c.baseline, c.treatment)
            if better is not None:
                estimate, low, high = probability_of_improvement(*pair, higher_is_better=better)
                row["probability_of_improvement"] = {"estimate": estimate, "low": low, "high": high}
                if c.metric == primary:
                    row["aso_epsilon"] = almost_stochastic_order(*pair, higher_is_better=better)
            out.append(row)
    return out


class _VerdictBar:
    """One bar over the verdict's runs, its text naming the run and epoch in progress."""

    def __init__(self, runs: int, *, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=runs, desc="verdict", unit="run", dynamic_ncols=True)
        self.name, self.epochs = "", 0

    def start(self, name: str, epochs: int) -> None:
        self.name, self.epochs = name, epochs
        if self.bar is not None:
            self.bar.set_postfix_str(f"{name}: epoch 0/{epochs}")

    def epoch(self, epoch: int, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.name}: epoch {epoch}/{self.epochs}")

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_verdict(verdict: dict[str, Any]) -> str:
    """The verdict as a plain-text table, task metrics first, the primary metric's sentence last."""
    level = percent(1 - verdict.get("alpha", 0.05))
    header = ("metric", "baseline", "treatment", f"diff [{level} CI]", "p", "p (Holm)", "P(better)",
              "verdict")
    rows = [header]
    for c in verdict["comparisons"]:
        call = c.get("call", c["verdict"])
        if c["verdict"] in ("no detectable effect", "inconclusive"):
            call += f" (MDE ±{c['minimum_detectable_effect']:.2g})" if c["minimum_detectable_effect"] else ""
        bounds = (f"[{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]" if c["ci_low"] is not None
                  else "[unbounded]")  # fmt: skip
        interval = f"{c['mean_difference']:+.3g} {bounds}"
        mean_b, mean_t = f"{np.mean(c['baseline']):.4g}", f"{np.mean(c['treatment']):.4g}"
        adjusted = "" if c.get("p_adjusted") is None else f"{c['p_adjusted']:.3g}"
        better = c.get("probability_of_improvement")
        share = "" if better is None else f"{better['estimate']:.2f}"
        rows.append((c["metric"], mean_b, mean_t, interval, f"{c['p_value']:.3g}", adjusted, share, call))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    cka = ", ".join(f"{s} {v:.3f}" for s, v in verdict["stage_cka_mean"].items())
    lines.append(f"\nCKA baseline vs treatment per stage (mean over seeds): {cka}")
    lines.append(f"Varied per seed: {', '.join(verdict.get('vary', ['init', 'order']))}; seeds "
                 f"{verdict['seeds'][0]}..{verdict['seeds'][-1]}")  # fmt: skip
    sequential = verdict.get("sequential")
    if sequential:
        outcome = "decided" if sequential["decided"] else "budget spent, undecided"
        lines.append(f"Seeds added until decided: stopped at {sequential['stopped_at']} of at most "
                     f"{sequential['most']} ({outcome}); each of {sequential['looks']} looks tested at "
                     f"α={sequential['alpha_per_look']:.3g}")  # fmt: skip
    if verdict.get("extended"):
        lines.append(extension_sentence(verdict["extended"], len(verdict["seeds"])))
    for run in verdict.get("diverged", []):
        lines.append(f"WARNING: the {run['arm']} arm's seed {run['seed']} diverged ({run['why']}); its "
                     "values are in the table above")  # fmt: skip
    primary = next((c for c in verdict["comparisons"] if c["metric"] == verdict.get("primary")), None)
    if primary is not None:
        lines.append(f"\nPrimary metric {primary['metric']}: {primary['sentence']}")
    return "\n".join(lines)


def extension_sentence(extended: list[dict[str, Any]], seeds: int) -> str:
    """What a verdict's extensions (``verdict["extended"]``) mean for its p-values, in a sentence."""
    steps = " to ".join(str(e["from_seeds"]) for e in extended) + f" to {seeds}"
    looked = [e["from_seeds"] for e in extended if e["after_verdict"]]
    if not looked:
        return f"Extended from {steps} seed pairs before any verdict was written: no look was taken."
    return (f"Extended from {steps} seed pairs after the verdict on {', '.join(map(str, looked))} had been "
            "written: its p-values and intervals do not account for that look (--seeds auto adds pairs with "
            "the looks accounted for).")


def run_verdicts(recipes: Sequence[str | Path], *, out_dir: str | Path, seed: int = 0, n_boot: int = 2000,
                 **options: Any) -> dict[str, Any]:  # fmt: skip
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
    primaries: list[dict[str, Any]] = []
    shared: dict[str, Path] = {}
    for recipe, name in zip(recipes, names, strict=True):
        verdict = run_verdict(recipe, out_dir=out / name, shared_runs=shared, **options)
        primary = next((c for c in verdict["comparisons"] if c["metric"] == verdict["primary"]), None)
        if primary is None:
            raise ValueError(f"recipe {name}: no primary metric to aggregate (its early-stopping metric)")
        primaries.append({"recipe": name, **primary, "arms": {"treatment": verdict["treatment"],
                          "baseline": verdict["baseline"], "seeds": len(verdict["seeds"])}})  # fmt: skip
    adjusted = holm_adjust([c["p_value"] for c in primaries])
    alpha = 0.05
    rows = []
    for c, p_adj in zip(primaries, adjusted, strict=True):
        call = c["verdict"]
        if call in ("helped", "hurt", "increased", "decreased") and p_adj >= alpha:
            call = "no detectable effect after Holm across recipes"
        rows.append({"recipe": c["recipe"], "metric": c["metric"], "mean_difference": c["mean_difference"],
                     "p_value": c["p_value"], "p_holm_recipes": p_adj, "verdict": c["verdict"], "call": call,
                     "sentence": c["sentence"], **c["arms"]})  # fmt: skip
    aggregate = _aggregate(primaries, seed=seed, n_boot=n_boot)
    result = {"recipes": [str(r) if not isinstance(r, dict) else r for r in recipes], "per_recipe": rows,
              "aggregate": aggregate}  # fmt: skip
    write_json(result, out / "verdicts.json")
    return result


def _normalised(c: dict[str, Any]) -> np.ndarray:
    """A recipe's per-seed differences as a share of its baseline mean, positive = better."""
    scale = abs(float(np.mean(c["baseline"]))) or 1.0
    sign = -1.0 if c["higher_is_better"] is False else 1.0
    return sign * np.asarray(c["differences"], dtype=np.float64) / scale


def iqm(values: np.ndarray) -> float:
    """The interquartile mean: the mean of the middle 50% of the values (rliable; scipy's trim_mean 0.25).

    Example:
        >>> iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 1.5, 2.5]))
        1.75
    """
    from scipy.stats import trim_mean

    return float(trim_mean(values, 0.25))


def _aggregate(primaries: list[dict[str, Any]], *, seed: int, n_boot: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    diffs = [_normalised(c) for c in primaries]
    better = [float(improvement_share(np.asarray(c["baseline"]), np.asarray(c["treatment"]),
                                      c["higher_is_better"] is not False)) for c in primaries]  # fmt: skip
    boot_iqm, boot_poi = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):  # stratified: each recipe's seeds resampled within it
        picks = [rng.integers(0, d.size, d.size) for d in diffs]
        boot_iqm[b] = iqm(np.concatenate([d[i] for d, i in zip(diffs, picks, strict=True)]))
        shares = []
        for c, i in zip(primaries, picks, strict=True):
            base, treat = np.asarray(c["baseline"])[i], np.asarray(c["treatment"])[i]
            shares.append(float(improvement_share(base, treat, c["higher_is_better"] is not False)))
        boot_poi[b] = float(np.mean(shares))
    return {
        "iqm_normalised_difference": {"estimate": iqm(np.concatenate(diffs)),
                                      "low": float(np.quantile(boot_iqm, 0.025)),
                                      "high": float(np.quantile(boot_iqm, 0.975))},
        "probability_of_improvement": {"estimate": float(np.mean(better)),
                                       "low": float(np.quantile(boot_poi, 0.025)),
                                       "high": float(np.quantile(boot_poi, 0.975))},
        "recipes": len(primaries),
        "note": "differences as a share of each recipe's baseline mean, positive = better; intervals: "
                "stratified bootstrap (seeds within recipes), 95%",
    }  # fmt: skip
