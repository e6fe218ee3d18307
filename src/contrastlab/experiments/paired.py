"""The paired experiment behind ``contrastlab verdict``: baseline and treatment, seed by seed.

For each seed both arms train from the same recipe, the same split and the same initial weights (the
trainer seeds everything before building the model); they differ only by the treatment override. The
baseline switches the treated term off (its weight set to 0) when the treatment sets a weight, and is the
recipe as written otherwise. Then every task metric on the test split and every embedding diagnostic gets
a :func:`paired_comparison`, and the two arms' best checkpoints are compared stage by stage with CKA.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from contrastlab.experiments.verdict import PairedComparison, adjust_family, paired_comparison
from contrastlab.train import load_config, train
from contrastlab.train.checkpoint import write_json

__all__ = ["baseline_override", "run_verdict"]

#: Task metrics where lower is better; every other task metric is higher-is-better.
_LOWER_IS_BETTER = {"loss", "mae", "rmse"}
#: Diagnostics with a better direction; the rest are reported as increased / decreased.
_DIAGNOSTIC_DIRECTIONS: dict[str, bool | None] = {
    "probes.logistic.accuracy": True,
    "probes.ridge.r2": True,  # regression tasks
    "probes.ridge.mae": False,
    "probes.knn1_accuracy": True,
    "clustering.ari": True,
    "clustering.nmi": True,
    "geometry.class_cosine.gap": True,
    "geometry.uniformity": None,
    "geometry.rankme": None,
    "geometry.collapse_std": None,
}


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
    recipe: str | Path,
    *,
    treatment: list[str],
    seeds: int,
    out_dir: str | Path,
    overrides: list[str] | None = None,
    first_seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Trains both arms for ``seeds`` seeds into ``out_dir/{baseline,treatment}/seed<k>`` and writes
    ``out_dir/verdict.json``; returns its content.

    Raises:
        ValueError: fewer than 2 seeds, or no treatment.
    """
    from contrastlab.train.diagnose import diagnose_run

    if seeds < 2:
        raise ValueError(f"a paired verdict needs at least 2 seeds, got {seeds}")
    if not treatment:
        raise ValueError("give at least one --treatment override, e.g. objective.supcon.weight=0.2")
    out = Path(out_dir)
    base_overrides = [o for t in treatment if (o := baseline_override(t)) is not None]
    arms = {"baseline": [*(overrides or []), *base_overrides], "treatment": [*(overrides or []), *treatment]}
    per_arm: dict[str, list[dict[str, float]]] = {"baseline": [], "treatment": []}
    stage_cka: list[dict[str, float]] = []
    show = sys.stderr.isatty() if progress is None else progress
    bar = _VerdictBar(2 * seeds, enabled=show)
    for k in range(first_seed, first_seed + seeds):
        for arm, arm_overrides in arms.items():
            config, raw = load_config(recipe, [*arm_overrides, f"trainer.seed={k}"])
            run_dir = out / arm / f"seed{k}"
            bar.start(f"{arm} seed {k}", config.trainer.epochs)
            if not show:
                print(f"[verdict] {arm} seed {k}: {' '.join(arm_overrides) or '(recipe as written)'}",
                      file=sys.stderr)  # fmt: skip
            result = train(config, run_dir, raw_config=raw, override_note=arm_overrides, progress=False,
                           quiet=show, on_epoch=bar.epoch)  # fmt: skip
            values = {f"test.{m}": v for m, v in result.test.items()}
            values.update({f"best_val.{result.best['metric']}": result.best["value"]})
            diag = diagnose_run(run_dir, split="test", plots=False)
            flat: dict[str, float] = {}
            _flatten("", diag["embedding"], flat)
            values.update({f"diagnostics.{k2}": v for k2, v in flat.items() if k2 in _DIAGNOSTIC_DIRECTIONS})
            per_arm[arm].append(values)
            bar.done()
        diag = diagnose_run(
            out / "treatment" / f"seed{k}", split="test", against=out / "baseline" / f"seed{k}"
        )
        stage_cka.append(diag["comparison"]["stage_cka"])
    bar.close()

    # Two families, each Holm-corrected: the task metrics (the question asked) and the diagnostics.
    families: dict[str, list[PairedComparison]] = {"task": [], "diagnostic": []}
    for name in per_arm["baseline"][0]:
        if not all(name in row for rows in per_arm.values() for row in rows):
            continue
        tail = name.split(".", 1)[1]
        if name.startswith("diagnostics."):
            direction = _DIAGNOSTIC_DIRECTIONS[tail]
        else:
            direction = tail.split("/")[-1] not in _LOWER_IS_BETTER
        families["diagnostic" if name.startswith("diagnostics.") else "task"].append(
            paired_comparison(
                [r[name] for r in per_arm["baseline"]],
                [r[name] for r in per_arm["treatment"]],
                metric=name,
                higher_is_better=direction,
            )
        )
    comparisons = [c.to_dict() for family, members in families.items()
                   for c in adjust_family(members, family=family)]  # fmt: skip
    config, _ = load_config(recipe, overrides)
    primary = f"test.{config.trainer.early_stopping.monitor.split('/')[-1]}"
    stages = list(stage_cka[0])
    verdict = {
        "recipe": str(recipe),
        "treatment": treatment,
        "baseline": base_overrides or ["(recipe as written)"],
        "seeds": list(range(first_seed, first_seed + seeds)),
        "primary": primary if any(c["metric"] == primary for c in comparisons) else None,
        "comparisons": comparisons,
        "stage_cka_baseline_vs_treatment": {s: [row[s] for row in stage_cka] for s in stages},
        "stage_cka_mean": {s: float(np.mean([row[s] for row in stage_cka])) for s in stages},
    }
    write_json(verdict, out / "verdict.json")
    return verdict


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
        call = c["verdict"]
        if call == "no detectable effect":
            call += f" (MDE ±{c['minimum_detectable_effect']:.2g})"
        interval = f"{c['mean_difference']:+.3g} [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]"
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
