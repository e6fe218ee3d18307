"""Writes the golden verdict directories the tests read, and what they are expected to render as.

``python -m tests.experiments.golden.regenerate`` trains them again (tiny blobs runs, about a minute) and
writes each directory's expected outputs; ``--expected-only`` re-renders the expected outputs from the
committed directories (after a deliberate change of what a report or table shows). The directories were
written by the code of their commit; the golden tests assert that every later version reads them and renders
them exactly as recorded: verdict.json files already on users' disks must keep loading.

Kinds: ``single`` (a verdict of 2 seed pairs), ``extended`` (2 pairs, then resumed with 3 after the verdict
was written), ``sequential`` (``seeds="auto"`` with a smallest effect), ``recipes`` (one verdict per recipe
and the aggregate) and ``curve`` (a curve of two of those verdicts). What the report does not read
(checkpoints, figures, the split, the train/val embeddings) is left out of the committed files.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
KINDS = ("single", "extended", "sequential", "recipes", "curve")
#: The committed recipes, recorded in verdict.json by this path (relative to the repository root).
RECIPE = "tests/experiments/golden/tiny.yaml"
RECIPE_B = "tests/experiments/golden/tiny_b.yaml"

TINY = {
    "name": "tiny",
    "data": {"name": "blobs", "options": {"n_samples": 240, "n_features": 8, "n_classes": 3}},
    "model": {"hidden_dims": [16], "embedding_dim": 8, "projection_dim": 8, "dropout": 0.1},
    "objective": {"supcon": {"weight": 0.2, "temperature": 0.2}},
    "trainer": {"epochs": 2, "batch_size": 24, "lr": 0.01, "views": {"count": 2},
                "sampler": {"name": "class_balanced", "m_per_class": 4},
                "early_stopping": {"monitor": "val/accuracy", "mode": "max"}},
}  # fmt: skip


def rendered(directory: Path) -> dict[str, Any]:
    """What a report of ``directory`` shows, as plain data: every section's text, tables and links, and
    each figure's caption (the images themselves depend on matplotlib's version and are not compared)."""
    from contrastlab.experiments.report import build_report

    report = build_report(directory)
    sections = []
    for section in report.sections:
        data = asdict(section)
        data["figures"] = [figure["caption"] for figure in data["figures"]]
        sections.append(data)
    return {"title": report.title, "kind": report.kind, "sections": sections}


def table(directory: Path) -> str | None:
    """What ``contrastlab verdict`` prints for the verdict in ``directory`` (None for other kinds)."""
    from contrastlab.experiments.results import Verdict

    path = directory / "verdict.json"
    return str(Verdict.from_json(path)) + "\n" if path.is_file() else None


def write_expected(directory: Path) -> None:
    expected = directory.parent / f"{directory.name}.expected"
    expected.mkdir(exist_ok=True)
    (expected / "report.json").write_text(json.dumps(rendered(directory), indent=1, sort_keys=True) + "\n")
    text = table(directory)
    if text is not None:
        (expected / "table.txt").write_text(text)


def _strip(directory: Path) -> None:
    """Leaves out what the report does not read: checkpoints, locks, TensorBoard events, figures, the split
    and the train/val embeddings."""
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_symlink():
            continue
        if path.is_dir() and path.name in ("checkpoints", "events"):
            shutil.rmtree(path)
        elif path.is_file() and (path.suffix in (".pt", ".png") or path.name.endswith(".lock")
                                 or path.name in ("split.json", "train.npz", "val.npz")):
            path.unlink()


def train_all() -> None:
    from contrastlab.experiments.curve import CurvePoint, write_curve
    from contrastlab.experiments.verdict import run_verdict, run_verdicts

    (ROOT / RECIPE).write_text(yaml.safe_dump(TINY, sort_keys=False))
    (ROOT / RECIPE_B).write_text(yaml.safe_dump({**TINY, "name": "tiny_b", "trainer": {**TINY["trainer"],
                                                 "lr": 0.02}}, sort_keys=False))  # fmt: skip
    for kind in KINDS:
        shutil.rmtree(HERE / kind, ignore_errors=True)
    treat = ["objective.supcon.weight=0.4"]
    run_verdict(RECIPE, treatment=treat, seeds=2, out_dir=HERE / "single", progress=False)
    run_verdict(RECIPE, treatment=treat, seeds=2, out_dir=HERE / "extended", progress=False)
    run_verdict(RECIPE, treatment=treat, seeds=3, out_dir=HERE / "extended", progress=False, resume=True)
    run_verdict(RECIPE, treatment=treat, seeds="auto", max_seeds=4, smallest_effect="test.accuracy=0.05",
                out_dir=HERE / "sequential", progress=False)  # fmt: skip
    run_verdicts([RECIPE, RECIPE_B], treatment=treat, seeds=2, out_dir=HERE / "recipes", progress=False,
                 n_boot=200)  # fmt: skip
    write_curve(HERE / "curve", title="golden curve", metric="test.accuracy", x_label="seed pairs",
                points=[CurvePoint("2", 2, "../single"), CurvePoint("3", 3, "../extended")],
                arms=("CE", "CE + SupCon"), notes="Two verdicts of the golden set.")  # fmt: skip
    for kind in KINDS:
        _strip(HERE / kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expected-only", action="store_true",
                        help="re-render the expected outputs from the committed directories")  # fmt: skip
    args = parser.parse_args()
    import os

    os.chdir(ROOT)  # the recipes are recorded relative to the repository root
    if not args.expected_only:
        train_all()
    for kind in KINDS:
        write_expected(HERE / kind)


if __name__ == "__main__":
    main()
