"""Diagnostics benchmark: streaming linear CKA and chunked kNN accuracy at 50,000 samples, in one run.

    python -m bench.diagnostics            # writes its section of bench/RESULTS.md

- CKA: 50,000 x 768 vs 50,000 x 768 float32 features. Ours streams 4,096-row batches into float64
  sufficient statistics (StreamingLinearCKA); the naive implementation builds both n x n Gram matrices
  (float32, torch), centres one and takes the Frobenius products (Kornblith et al.'s reference form).
- kNN: 5-fold 1-NN accuracy (cosine) on 50,000 x 384; ours compares 1,024 held-out rows at a time, the
  naive form holds each fold's whole (n/5 x 4n/5) similarity block.
Each case runs in a fresh subprocess (bench/_harness.py): median seconds and peak extra memory.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from bench._harness import measure, run_child, write_section

RESULTS = Path(__file__).with_name("RESULTS.md")


def _features(n: int, d: int):  # type: ignore[no-untyped-def]
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = (x @ rng.standard_normal((d, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
    y += 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    return x, y, rng.integers(0, 10, size=n)


def _build(case: str, impl: str, n: int, d: int) -> Callable[[], None]:
    import numpy as np
    import torch

    x, y, labels = _features(n, d)
    if case == "cka" and impl == "ours":
        from contrastlab.diagnostics import StreamingLinearCKA

        def streaming() -> None:
            stats = StreamingLinearCKA()
            for i in range(0, n, 4096):
                stats.update(x[i : i + 4096], y[i : i + 4096])
            stats.compute()

        return streaming
    if case == "cka":
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def naive() -> None:
            k = xt @ xt.T  # (n, n)
            l_gram = yt @ yt.T  # (n, n)
            k -= k.mean(dim=0, keepdim=True)  # H K H, in place
            k -= k.mean(dim=1, keepdim=True)
            hsic_kl = float(torch.dot(k.view(-1), l_gram.view(-1)))  # no n x n temporary
            del l_gram
            hsic_kk = float(torch.dot(k.view(-1), k.view(-1)))
            float(hsic_kl / np.sqrt(hsic_kk))  # (the L-L term costs the same again)

        return naive
    if impl == "ours":
        from contrastlab.diagnostics.probes import knn_accuracy

        return lambda: knn_accuracy(y[:, :d], labels, k=1)
    from sklearn.model_selection import StratifiedKFold

    yt = torch.nn.functional.normalize(torch.from_numpy(y), dim=1)

    def naive_knn() -> None:
        # The same 5 folds as ours, each held-out fold against all training rows in one block.
        hits = 0
        for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(y, labels):
            sims = yt[test] @ yt[train].T  # (n/5, 4n/5) at once
            hits += int((labels[train][sims.argmax(dim=1).numpy()] == labels[test]).sum())
        hits / n

    return naive_knn


def _child(args: argparse.Namespace) -> None:
    measure(lambda: _build(args.case, args.impl, args.n, args.dim), warmup=_build(args.case, args.impl, 256, args.dim),
            reps=args.reps)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cka-sizes", type=int, nargs="+", default=[10000, 30000, 50000])
    parser.add_argument("--knn-sizes", type=int, nargs="+", default=[50000])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    rows = []
    for case, sizes, dim in (("cka", args.cka_sizes, 768), ("knn", args.knn_sizes, 384)):
        for n in sizes:
            cells = {}
            for impl in ("ours", "naive"):
                cells[impl] = run_child("bench.diagnostics", ["--case", case, "--impl", impl, "--n", str(n),
                                        "--dim", str(dim), "--reps", str(args.reps)], timeout=args.timeout)  # fmt: skip
                print(f"{case} {impl} n={n}: {cells[impl]}", flush=True)
            rows.append((case, n, dim, cells))
    text = _render(rows)
    print(text)
    if not args.no_write:
        write_section("diagnostics", "cpu", text, RESULTS)


def _cell(c: dict) -> str:  # type: ignore[type-arg]
    if c["status"] != "ok":
        return c["status"] + (f" ({c['note']})" if c.get("note") else "")
    return f"{c['seconds']:.2f} s, {c['extra_mib']:,.0f} MiB"


def _render(rows: list) -> str:  # type: ignore[type-arg]
    lines = [
        "<!-- diagnostics:cpu -->",
        "## Diagnostics on CPU (2 cores): streaming linear CKA and chunked kNN",
        "",
        "One run of `python -m bench.diagnostics`; median seconds and peak extra memory per case.",
        "",
        "| case | n x d | ours | naive (n x n matrices) | naive / ours time |",
        "|---|---|---|---|---|",
    ]
    for case, n, dim, cells in rows:
        ours, naive = cells["ours"], cells["naive"]
        ratio = (
            f"{naive['seconds'] / ours['seconds']:.1f}x"
            if ours["status"] == naive["status"] == "ok"
            else "n/a"
        )
        label = "linear CKA" if case == "cka" else "1-NN accuracy, 5-fold, cosine"
        lines.append(f"| {label} | {n:,} x {dim} | {_cell(ours)} | {_cell(naive)} | {ratio} |")
    lines += ["", "<!-- /diagnostics:cpu -->"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
