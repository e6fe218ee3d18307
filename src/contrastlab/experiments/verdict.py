"""The paired experiment behind ``contrastlab verdict``: baseline and treatment, seed by seed.

For each seed both arms train from the same recipe, the same split and the same initial weights (the
trainer seeds everything before building the model); they differ only by the treatment override. The
baseline switches the treated term off (its weight set to 0) when the treatment sets a weight, and is the
recipe as written otherwise. Then every task metric on the test split and every embedding diagnostic gets
a :func:`paired_comparison`, and the two arms' best checkpoints are compared stage by stage with CKA.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from contrastlab.experiments.stats import PairedComparison, adjust_family, paired_comparison
from contrastlab.metrics import direction
from contrastlab.train import RunDir, RunDirError, load_config, train
from contrastlab.train.checkpoint import write_json

__all__ = ["arm_run", "baseline_override", "compare_arms", "run_verdict"]

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


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


def run_verdict(
    recipe: str | Path | dict[str, Any],
    *,
    treatment: list[str],
    seeds: int,
    out_dir: str | Path,
    overrides: list[str] | None = None,
    first_seed: int = 0,
    progress: bool | None = None,
    overwrite: bool = False,
    resume: bool = False,
    model: Any = None,
    dataset: Any = None,
) -> dict[str, Any]:
    """Trains both arms for ``seeds`` seeds into ``out_dir/{baseline,treatment}/seed<k>`` and writes
    ``out_dir/verdict.json``; returns its content.

    Args:
        overwrite: ``out_dir`` holds a verdict: delete it and start over.
        resume: ``out_dir`` holds a verdict that was interrupted: keep its complete runs, resume the run
            that was cut short, train the rest (the same recipe, treatment, seeds and overrides only).
        model, dataset: Your encoder and data for both arms (as in :func:`contrastlab.fit`): each run trains
            its own copy of the encoder, so both arms of a seed start from the same weights.

    Raises:
        ValueError: fewer than 2 seeds, or no treatment.
        RunDirError: ``out_dir`` holds a verdict and neither flag is given, or ``resume`` with a different
            request; another process is writing it.
    """
    if seeds < 2:
        raise ValueError(f"a paired verdict needs at least 2 seeds, got {seeds}")
    if not treatment:
        raise ValueError("give at least one --treatment override, e.g. objective.supcon.weight=0.2")
    if overwrite and resume:
        raise ValueError("--overwrite starts the verdict over and --resume finishes it: give one of them")
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset)
    out = RunDir(out_dir)
    with out.lock():
        request = {"recipe": _recipe_record(recipe), "treatment": treatment, "seeds": seeds,
                   "first_seed": first_seed, "overrides": overrides or []}  # fmt: skip
        _prepare(out, request, overwrite=overwrite, resume=resume)
        base_overrides = [o for t in treatment if (o := baseline_override(t)) is not None]
        arms = {"baseline": [*(overrides or []), *base_overrides],
                "treatment": [*(overrides or []), *treatment]}  # fmt: skip
        per_arm, stage_cka = _train_arms(recipe, out.path, arms, seeds, first_seed, progress, model, dataset)
        comparisons = compare_arms(per_arm)
        config, _ = load_config(recipe, overrides)
        primary = f"test.{config.trainer.early_stopping.monitor.split('/')[-1]}"
        stages = list(stage_cka[0])
        verdict = {
            "recipe": _recipe_record(recipe),
            "treatment": treatment,
            "baseline": base_overrides or ["(recipe as written)"],
            "seeds": list(range(first_seed, first_seed + seeds)),
            "primary": primary if any(c["metric"] == primary for c in comparisons) else None,
            "comparisons": comparisons,
            "stage_cka_baseline_vs_treatment": {s: [row[s] for row in stage_cka] for s in stages},
            "stage_cka_mean": {s: float(np.mean([row[s] for row in stage_cka])) for s in stages},
        }
        write_json(verdict, out.path / "verdict.json")
    return verdict


def _prepare(out: RunDir, request: dict[str, Any], *, overwrite: bool, resume: bool) -> None:
    """Refuses, clears or checks an existing verdict directory, then records what is asked of it."""
    recorded = out.path / "request.json"
    held = sorted(e.name for e in out.path.iterdir() if e.name != out.lock_file.name)
    if held:
        ours = recorded.is_file() or (out.path / "verdict.json").is_file()
        if not (overwrite or resume):
            raise RunDirError(
                f"{out.path} already holds {'a verdict' if ours else 'files'} ({', '.join(held[:4])});"
                " --resume finishes an interrupted verdict (complete seeds are kept), --overwrite deletes it "
                "and starts over, or choose another --out"
            )
        if not ours:
            raise RunDirError(f"{out.path} holds files that are not a verdict's; choose another --out")
        if overwrite:
            out.clear()
        elif recorded.is_file() and json.loads(recorded.read_text()) != request:
            raise RunDirError(
                f"--resume: {out.path} was started with {json.loads(recorded.read_text())}, not {request}; "
                "resume it with the same recipe, treatment, seeds and overrides, or use --overwrite"
            )
    write_json(request, recorded)


def _train_arms(
    recipe: str | Path | dict[str, Any],
    out: Path,
    arms: dict[str, list[str]],
    seeds: int,
    first_seed: int,
    progress: bool | None,
    model: Any = None,
    dataset: Any = None,
) -> tuple[dict[str, list[dict[str, float]]], list[dict[str, float]]]:
    """Every seed's two runs, each arm with its overrides (complete runs are read back, a cut-short one
    resumed), and their diagnostics."""
    from contrastlab.train.diagnose import diagnose_run

    per_arm: dict[str, list[dict[str, float]]] = {"baseline": [], "treatment": []}
    stage_cka: list[dict[str, float]] = []
    show = sys.stderr.isatty() if progress is None else progress
    bar = _VerdictBar(2 * seeds, enabled=show)
    for k in range(first_seed, first_seed + seeds):
        for arm, arm_overrides in arms.items():
            config, raw = load_config(recipe, [*arm_overrides, f"trainer.seed={k}"])
            run = arm_run(out, arm, k)
            bar.start(f"{arm} seed {k}", config.trainer.epochs)
            if run.is_complete():  # a resumed verdict keeps what finished
                metrics = json.loads(run.metrics.read_text())
                test, best = metrics["test"], metrics["best"]
            else:
                if not show:
                    print(f"[verdict] {arm} seed {k}: {' '.join(arm_overrides) or '(recipe as written)'}",
                          file=sys.stderr)  # fmt: skip
                result = train(config, run.path, raw_config=raw, override_note=arm_overrides, progress=False,
                               quiet=show, on_epoch=bar.epoch, resume=run.last.is_file(),
                               overwrite=run.holds_run(), model=model, dataset=dataset)  # fmt: skip
                test, best = result.test, result.best
            values = {f"test.{m}": v for m, v in test.items()}
            values.update({f"best_val.{best['metric']}": best["value"]})
            diag = diagnose_run(run.path, split="test", plots=False, dataset=dataset)
            flat: dict[str, float] = {}
            _flatten("", diag["embedding"], flat)
            values.update({f"diagnostics.{k2}": v for k2, v in flat.items() if k2 in _DIAGNOSTICS})
            per_arm[arm].append(values)
            bar.done()
        treated, baseline = arm_run(out, "treatment", k).path, arm_run(out, "baseline", k).path
        diag = diagnose_run(treated, split="test", against=baseline, model=model, dataset=dataset)
        stage_cka.append(diag["comparison"]["stage_cka"])
    bar.close()
    return per_arm, stage_cka


def compare_arms(per_arm: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Paired comparisons of every metric both arms have at every seed, in two Holm-corrected families: the
    task metrics (the question asked) and the diagnostics. Directions come from :mod:`contrastlab.metrics`."""
    families: dict[str, list[PairedComparison]] = {"task": [], "diagnostic": []}
    for name in per_arm["baseline"][0]:
        if not all(name in row for rows in per_arm.values() for row in rows):
            continue
        families["diagnostic" if name.startswith("diagnostics.") else "task"].append(
            paired_comparison(
                [r[name] for r in per_arm["baseline"]],
                [r[name] for r in per_arm["treatment"]],
                metric=name,
                higher_is_better=direction(name),
            )
        )
    return [c.to_dict() for family, members in families.items()
            for c in adjust_family(members, family=family)]  # fmt: skip


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
    rows = [("metric", "baseline", "treatment", "diff [95% CI]", "p", "p (Holm)", "verdict")]
    for c in verdict["comparisons"]:
        call = c.get("call", c["verdict"])
        if c["verdict"] == "no detectable effect":
            call += f" (MDE ±{c['minimum_detectable_effect']:.2g})" if c["minimum_detectable_effect"] else ""
        bounds = (f"[{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]" if c["ci_low"] is not None
                  else "[unbounded]")  # fmt: skip
        interval = f"{c['mean_difference']:+.3g} {bounds}"
        mean_b, mean_t = f"{np.mean(c['baseline']):.4g}", f"{np.mean(c['treatment']):.4g}"
        adjusted = "" if c.get("p_adjusted") is None else f"{c['p_adjusted']:.3g}"
        rows.append((c["metric"], mean_b, mean_t, interval, f"{c['p_value']:.3g}", adjusted, call))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    cka = ", ".join(f"{s} {v:.3f}" for s, v in verdict["stage_cka_mean"].items())
    lines.append(f"\nCKA baseline vs treatment per stage (mean over seeds): {cka}")
    primary = next((c for c in verdict["comparisons"] if c["metric"] == verdict.get("primary")), None)
    if primary is not None:
        lines.append(f"\nPrimary metric {primary['metric']}: {primary['sentence']}")
    return "\n".join(lines)
