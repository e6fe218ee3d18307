"""Molecule benchmark: featurization vs torch_geometric's own, and training throughput with augmentations.

    python -m bench.graphs            # writes its section of bench/RESULTS.md

- Featurization: the 1,282 solubility SMILES (plus MoleculeACE CHEMBL2835_Ki's 615) turned into graphs by
  ``contrastlab.data.molecules.smiles_to_graph`` (38 atom / 14 bond features, float) and by
  ``torch_geometric.utils.from_smiles`` (9 / 3 integer features). No cache on either side.
- Training: graphs/s of a GINE (3 x 128, mean+attention pooling) training step on solubility, batch 128,
  the trainer's own pieces (``batch_inputs``, ``view_generator``, ``Objective``): one view (supervised,
  MSE); two augmented views (GraphCL pool, NT-Xent only: SimCLR pretraining); and two augmented views plus
  the clean batch (MSE + λ·NT-Xent: the auxiliary-term recipe). Target: two-view <= 2.5x the one-view time.
Each case runs in a fresh subprocess (bench/_harness.py); the median of the repetitions is reported.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from bench._harness import measure, run_child, write_section

RESULTS = Path(__file__).with_name("RESULTS.md")
AUGMENT = {"random_choice": [{"name": "node_drop", "p": 0.15}, {"name": "edge_drop", "p": 0.15},
                             {"name": "subgraph", "keep": 0.8}, {"name": "node_mask", "p": 0.15}]}  # fmt: skip


def _smiles() -> list[str]:
    from contrastlab.data import get_dataset

    return list(get_dataset("solubility").strings) + list(get_dataset("moleculeace", target="CHEMBL2835_Ki").strings)


def _build_featurize(impl: str, n: int | None) -> Callable[[], None]:
    smiles = _smiles()[:n]
    if impl == "ours":
        from contrastlab.data.molecules import smiles_to_graph

        return lambda: [smiles_to_graph(s) for s in smiles] and None
    from torch_geometric.utils import from_smiles

    return lambda: [from_smiles(s) for s in smiles] and None


def _build_train(mode: str, batches: int | None) -> Callable[[], None]:
    import torch

    from contrastlab.data import get_dataset
    from contrastlab.train import validate_config
    from contrastlab.train.build import (
        augment_view,
        batch_inputs,
        make_augmentation,
        make_model,
        view_generator,
    )
    from contrastlab.train.objective import Objective

    raw = {
        "data": {"name": "solubility"},
        "model": {"name": "gine", "hidden_dims": [128, 128, 128], "embedding_dim": 128, "projection_dim": 64,
                  "options": {"pooling": ["mean", "attention"]}},
        "objective": {"task": "mse"},
        "trainer": {"batch_size": 128},
    }  # fmt: skip
    if mode != "one_view":
        raw["trainer"]["views"] = {"count": 2, "augment": AUGMENT}
        raw["objective"] = {"task": "none" if mode == "two_views" else "mse",
                            "nt_xent": {"weight": 1.0 if mode == "two_views" else 0.1, "temperature": 0.2}}  # fmt: skip
    config = validate_config(raw)
    data = get_dataset("solubility")
    torch.manual_seed(0)
    model = make_model(config, data)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    objective = Objective(config.objective, model=model)
    augment = make_augmentation(config, data)
    cpu = torch.device("cpu")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    chunks = [order[i : i + 128] for i in range(0, len(data) - 127, 128)][:batches]

    def epoch() -> None:
        model.train()
        for step, idx in enumerate(chunks):
            y = data.targets[idx]
            if augment is None:
                outputs, clean = [model(batch_inputs(data, idx, cpu))], None
            else:
                host = batch_inputs(data, idx, cpu)
                outputs = [model(augment_view(augment, host, view_generator(0, 0, step, v))) for v in (0, 1)]
                clean = model(host) if config.objective.task != "none" else None
            value = objective(outputs, (y - y.mean()) / y.std(), 0, clean=clean)
            value.total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return epoch


def _child(args: argparse.Namespace) -> None:
    if args.case == "featurize":
        measure(lambda: _build_featurize(args.impl, None), warmup=_build_featurize(args.impl, 20), reps=args.reps)
    else:
        measure(lambda: _build_train(args.impl, None), warmup=_build_train(args.impl, 1), reps=args.reps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    results = {}
    for case, impls in (("featurize", ("ours", "pyg")), ("train", ("one_view", "two_views", "aux_term"))):
        for impl in impls:
            results[(case, impl)] = run_child("bench.graphs", ["--case", case, "--impl", impl, "--reps", str(args.reps)],
                                              timeout=args.timeout)  # fmt: skip
            print(f"{case} {impl}: {results[(case, impl)]}", flush=True)
    text = _render(results, n_molecules=len(_smiles()), n_graphs=(1282 // 128) * 128)
    print(text)
    if not args.no_write:
        write_section("graphs", "cpu", text, RESULTS)


def _render(results: dict, n_molecules: int, n_graphs: int) -> str:  # type: ignore[type-arg]
    def rate(cell: dict, count: int, unit: str) -> str:  # type: ignore[type-arg]
        if cell["status"] != "ok":
            return cell["status"] + (f" ({cell['note']})" if cell.get("note") else "")
        return f"{count / cell['seconds']:,.0f} {unit} ({cell['seconds']:.2f} s)"

    def ratio(a: dict, b: dict) -> str:  # type: ignore[type-arg]
        return f"{a['seconds'] / b['seconds']:.2f}x" if a["status"] == b["status"] == "ok" else "n/a"

    ours, pyg = results[("featurize", "ours")], results[("featurize", "pyg")]
    one = results[("train", "one_view")]
    lines = [
        "<!-- graphs:cpu -->",
        "## Molecules on CPU (2 cores): featurization and GNN training throughput",
        "",
        "One run of `python -m bench.graphs`; median of the repetitions, each case in a fresh process.",
        "",
        f"Featurization of {n_molecules:,} SMILES (solubility + MoleculeACE CHEMBL2835_Ki), no cache:",
        "",
        "| featurizer | features (atom / bond) | throughput | time vs ours |",
        "|---|---|---|---|",
        f"| contrastlab `smiles_to_graph` | 38 / 14, float one-hot | {rate(ours, n_molecules, 'mol/s')} | 1.00x |",
        f"| torch_geometric `from_smiles` | 9 / 3, integer codes | {rate(pyg, n_molecules, 'mol/s')} | {ratio(pyg, ours)} |",
        "",
        f"GINE training step (3 x 128, batch 128, {n_graphs:,} solubility graphs per epoch, forward + backward + AdamW):",
        "",
        "| pipeline | forwards per batch | throughput | time vs one view (target two views <= 2.5x) |",
        "|---|---|---|---|",
    ]
    for impl, label, forwards in (("one_view", "one view, MSE (supervised)", 1),
                                  ("two_views", "two augmented views, NT-Xent (SimCLR pretraining)", 2),
                                  ("aux_term", "clean + two augmented views, MSE + 0.1 NT-Xent", 3)):  # fmt: skip
        cell = results[("train", impl)]
        lines.append(f"| {label} | {forwards} | {rate(cell, n_graphs, 'graphs/s')} | {ratio(cell, one)} |")
    lines += ["", "<!-- /graphs:cpu -->"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
