"""The two arms of a verdict, trained seed by seed: both arms of a seed share its split, initial weights and
batch order (the sources of variance drawn anew at each seed, :data:`SOURCES`), a run cut short is resumed,
a complete one read back (or linked from another verdict that trained the same configuration), and each seed
gives every test metric, the embedding diagnostics and the stage CKA between the arms' models.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contrastlab.experiments.schemas import load_result
from contrastlab.train import RunDir, load_config, train
from contrastlab.train.keys import flat_settings
from contrastlab.train.recipes import recipe_name

__all__ = ["DIAGNOSTICS", "SOURCES", "ArmTrainer", "arm_changes", "arm_run", "flatten_numbers",
           "seed_overrides",
           "share_seeds"]  # fmt: skip

#: The embedding diagnostics a verdict compares (their directions come from contrastlab.metrics).
DIAGNOSTICS = (
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


def arm_run(out: str | Path, arm: str, seed: int) -> RunDir:
    """The run of one arm ("baseline" or "treatment") at one seed inside a verdict's directory."""
    return RunDir(Path(out) / arm / f"seed{seed}")


def flatten_numbers(prefix: str, value: Any, out: dict[str, float]) -> None:
    """The numbers in a nested mapping, into ``out`` under dotted keys (booleans are not numbers here)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten_numbers(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


def arm_changes(arms: dict[str, tuple[Any, list[str]]], seeded: list[str]) -> list[str]:
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


class ArmTrainer:
    """Trains one seed's two runs (complete runs are read back, a cut-short one resumed), with their
    diagnostics and the stage CKA between them.

    Args:
        out: The verdict's directory (the runs go to ``out/<arm>/seed<k>``).
        arms: Per arm ("baseline", "treatment"): its recipe and overrides.
        vary: The sources of variance each seed sets (:func:`seed_overrides`).
        model, dataset: A user's encoder and data for both arms (None: the recipe's).
        total: How many runs the progress bar counts.
        shared: Complete runs by configuration, shared by several verdicts (see ``run_verdict``).
    """

    def __init__(self, out: Path, arms: dict[str, tuple[str | Path | dict[str, Any], list[str]]],
                 vary: Sequence[str], progress: bool | None, model: Any, dataset: Any,
                 total: int, shared: dict[str, Path] | None = None) -> None:  # fmt: skip
        self.out, self.arms, self.vary = out, arms, vary
        self.model, self.dataset = model, dataset
        # Runs given a model or dataset object cannot be matched by configuration: nothing is shared then.
        self.shared = shared if model is None and dataset is None else None
        self.show = sys.stderr.isatty() if progress is None else progress
        self.bar = _ArmsBar(total, enabled=self.show)
        # A seed this process already trained and diagnosed (a --storage worker reads every seed back at
        # the end) is not diagnosed again.
        self._done: dict[int, tuple[dict[str, dict[str, float]], dict[str, float]]] = {}
        #: (arm, seed) -> why, for the runs that diverged though every step stayed finite.
        self.diverged: dict[tuple[str, int], str] = {}

    def seed(self, k: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        """Seed ``k``'s values per arm (metric -> value) and the stage CKA between its two runs."""
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
                self.diverged[(arm, k)] = diverged
            if self.shared is not None:
                self.shared.setdefault(key, run.path.resolve())
            row = {f"test.{m}": v for m, v in test.items()}
            row.update({f"best_val.{best['metric']}": best["value"]})
            diag = diagnose_run(run.path, split="test", plots=False, dataset=self.dataset)
            flat: dict[str, float] = {}
            flatten_numbers("", diag["embedding"], flat)
            row.update({f"diagnostics.{k2}": v for k2, v in flat.items() if k2 in DIAGNOSTICS})
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


class _ArmsBar:
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


def share_seeds(storage: str, out: Path, seeds: list[int], trainer: ArmTrainer) -> None:
    """Trains every seed pair exactly once across the workers sharing ``storage`` (the sweep's mechanism:
    an Optuna study whose trials are the seeds, claimed row-locked, with heartbeats)."""
    from contrastlab.experiments.sweep import run_each_once

    def run(point: dict[str, Any]) -> None:
        trainer.seed(int(point["seed"]))

    run_each_once(storage, f"verdict:{out.resolve()}", [{"seed": k} for k in seeds], run)
