"""Loss benchmark: contrastlab (dense and tiled) against the peers and the GEMM floor, in one run.

    python -m bench.losses                       # full table on this machine, writes bench/RESULTS.md
    python -m bench.losses --sizes 512 2048      # a subset
    python -m bench.losses --device cuda --dtype bfloat16

Each case (family x implementation x N) runs in a fresh subprocess, so peak memory is the case's own:
forward + backward, median wall time, and the peak extra memory above the inputs (RSS high-water mark on
CPU, ``max_memory_allocated`` on CUDA), measured after one warm-up call on a 64-sample batch so that
one-time library initialisation is charged to no one. On CPU each child gets an address-space limit, so a peer that
needs more memory than the machine has is reported as OOM instead of swapping the machine to death.

Families (D = 128 by default):
- clip: N pairs, the symmetric CLIP loss (an N x N matrix).
- nt_xent: N pairs, SimCLR's loss over 2N embeddings (a 2N x 2N matrix).
- supcon: N samples, 2 views, 100 classes (a 2N x 2N matrix with label masks).
The floor is only the matrix products a dense forward + backward needs (S = A·Cᵀ, S·C, Sᵀ·A), into a
reused output buffer, timed alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench._harness import measure, run_child, write_section

FAMILIES = ("clip", "nt_xent", "supcon")
IMPLS = {
    "clip": ("floor", "ours-dense", "ours-tiled", "open_clip"),
    "nt_xent": ("floor", "ours-dense", "ours-tiled", "lightly", "pml"),
    "supcon": ("floor", "ours-dense", "ours-tiled", "pml"),
}
RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Result:
    family: str
    impl: str
    n: int
    status: str  # "ok", "OOM", "timeout", "skip", "error"
    seconds: float | None = None
    extra_mib: float | None = None
    note: str = ""


# --- the child: build one case, run it, print one JSON line ---------------------------------------------


def _build(family: str, impl: str, n: int, d: int, device: str, dtype_name: str) -> Callable[[], None]:
    import torch

    from contrastlab.losses import clip_loss, nt_xent, supcon

    dtype = getattr(torch, dtype_name)
    g = torch.Generator(device=device).manual_seed(0)
    rows = n if family == "clip" else 2 * n

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device, dtype=dtype).requires_grad_()

    if impl == "floor":
        a = torch.randn(rows, d, generator=g, device=device, dtype=dtype)
        c = torch.randn(rows, d, generator=g, device=device, dtype=dtype)
        s = torch.empty(rows, rows, device=device, dtype=dtype)
        ga, gc = torch.empty_like(a), torch.empty_like(c)

        def floor() -> None:
            torch.mm(a, c.T, out=s)  # (R, C) logits
            torch.mm(s, c, out=ga)  # (R, D) d/dA
            torch.mm(s.T, a, out=gc)  # (C, D) d/dC

        return floor

    chunk = None if impl == "ours-dense" else "auto" if impl == "ours-tiled" else None
    if impl == "ours-tiled":
        from contrastlab.losses._tiled import _DEFAULT_TILE, _DEFAULT_TILE_ACCELERATOR

        chunk = _DEFAULT_TILE.get(device.split(":")[0], _DEFAULT_TILE_ACCELERATOR)

    if family == "clip":
        za, zb = leaf(n, d), leaf(n, d)
        if impl == "open_clip":
            from bench._peers import import_peer

            loss_fn = import_peer("open_clip", "loss").ClipLoss()
            scale = torch.tensor(1 / 0.07, device=device)
            return lambda: loss_fn(
                torch.nn.functional.normalize(za, dim=-1), torch.nn.functional.normalize(zb, dim=-1), scale
            ).backward()
        return lambda: clip_loss(za, zb, temperature=0.07, chunk_size=chunk).backward()

    if family == "nt_xent":
        za, zb = leaf(n, d), leaf(n, d)
        if impl == "lightly":
            from bench._peers import import_peer

            lightly_fn = import_peer("lightly", "loss.ntx_ent_loss").NTXentLoss(temperature=0.5)
            return lambda: lightly_fn(za, zb).backward()
        if impl == "pml":
            from pytorch_metric_learning.losses import NTXentLoss

            pml_fn = NTXentLoss(temperature=0.5)
            labels = torch.arange(n, device=device).repeat(2)
            return lambda: pml_fn(torch.cat([za, zb]), labels).backward()
        return lambda: nt_xent(za, zb, temperature=0.5, chunk_size=chunk).backward()

    views = leaf(n, 2, d)
    labels = torch.randint(0, 100, (n,), generator=g, device=device)
    if impl == "pml":
        from pytorch_metric_learning.losses import SupConLoss

        pml_supcon = SupConLoss(temperature=0.1)
        flat_labels = labels.repeat(2)
        return lambda: pml_supcon(views.transpose(0, 1).reshape(2 * n, d), flat_labels).backward()
    return lambda: supcon(views, labels, temperature=0.1, chunk_size=chunk).backward()


def _child(args: argparse.Namespace) -> None:
    # The warm-up runs the same case at 64 samples, for us and the peers alike.
    measure(
        lambda: _build(args.family, args.impl, args.n, args.dim, args.device, args.dtype),
        warmup=lambda: _build(args.family, args.impl, 64, args.dim, args.device, args.dtype)(),
        device=args.device,
        reps=args.reps,
    )


# --- the parent: run every case in its own process and write the table ---------------------------------


def run_case(family: str, impl: str, n: int, args: argparse.Namespace) -> Result:
    if impl in ("floor", "ours-dense") and n > args.dense_max:
        need = (n if family == "clip" else 2 * n) ** 2 * 4 / 2**30
        return Result(family, impl, n, "skip", note=f"dense {need:.0f} GiB matrix")
    if impl not in ("floor", "ours-dense", "ours-tiled") and n > args.peer_max:
        return Result(family, impl, n, "skip", note="peer not run at this size")
    child_args = ["--family", family, "--impl", impl, "--n", str(n), "--dim", str(args.dim)]
    child_args += ["--device", args.device, "--dtype", args.dtype, "--reps", str(args.reps)]
    data = run_child("bench.losses", child_args, timeout=args.timeout)
    return Result(family, impl, n, data["status"], data.get("seconds"), data.get("extra_mib"), data.get("note", ""))


def _cell(r: Result, floor: Result | None) -> str:
    if r.status != "ok" or r.seconds is None:
        return f"{r.status}" + (f" ({r.note})" if r.note and r.status != "skip" else "")
    ratio = f" ({r.seconds / floor.seconds:.2f}x)" if floor and floor.status == "ok" and floor.seconds else ""
    return f"{r.seconds:.3f} s{ratio}, {r.extra_mib:,.0f} MiB"


def render(results: list[Result], args: argparse.Namespace) -> str:
    import torch

    lines = [
        f"<!-- losses:{args.device} -->",
        f"## Losses on {args.device_name} ({args.dtype}, D={args.dim}, forward+backward)",
        "",
        f"Measured at commit {_commit()}. "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}; "
        "each cell: median seconds (ratio to the GEMM floor), peak extra memory. One run of "
        "`python -m bench.losses`" + (f" `{' '.join(args.argv)}`" if args.argv else "") + ".",
        "",
    ]
    by_key = {(r.family, r.impl, r.n): r for r in results}
    for family in args.families:
        impls = IMPLS[family]
        lines += [f"### {family}", "", "| N | " + " | ".join(impls) + " |", "|---" * (len(impls) + 1) + "|"]
        for n in args.sizes:
            floor = by_key.get((family, "floor", n))
            cells = [_cell(by_key[(family, i, n)], floor) for i in impls if (family, i, n) in by_key]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += (
        ["### Targets", ""]
        + [f"- {t}" for t in _targets(by_key, args)]
        + ["", f"<!-- /losses:{args.device} -->"]
    )
    return "\n".join(lines)


def _ratio(a: Result | None, b: Result | None, attr: str) -> float | None:
    if a is None or b is None or a.status != "ok" or b.status != "ok":
        return None
    x, y = getattr(a, attr), getattr(b, attr)
    return None if not y else x / y


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def _targets(by: dict[tuple[str, str, int], Result], args: argparse.Namespace) -> list[str]:
    def get(f: str, i: str, n: int) -> Result | None:
        return by.get((f, i, n))

    out = []
    tiled, floor, peer = (
        get("clip", "ours-tiled", 16384),
        get("clip", "floor", 16384),
        get("clip", "open_clip", 16384),
    )
    out.append(
        f"CLIP N=16384: tiled/floor time {_fmt(_ratio(tiled, floor, 'seconds'))}x (target <= 1.5), "
        f"tiled/open_clip time {_fmt(_ratio(tiled, peer, 'seconds'))}x (< 1), "
        f"memory {_fmt(_ratio(tiled, peer, 'extra_mib'), '.1%')} of open_clip's (<= 5%)"
    )
    ours, peer = get("nt_xent", "ours-tiled", 8192), get("nt_xent", "lightly", 8192)
    speed = _ratio(peer, ours, "seconds")
    out.append(
        f"NT-Xent N=8192 pairs: {_fmt(speed)}x faster than lightly (>= 3), "
        f"memory {_fmt(_ratio(ours, peer, 'extra_mib'), '.1%')} of lightly's (<= 2%)"
    )
    ours, peer = get("supcon", "ours-tiled", 8192), get("supcon", "pml", 8192)
    out.append(
        f"SupCon N=8192 x 2 views, 100 classes: {_fmt(_ratio(peer, ours, 'seconds'))}x faster than "
        f"pytorch-metric-learning (>= 5), memory {_fmt(_ratio(ours, peer, 'extra_mib'), '.1%')} of its (<= 2%)"
    )
    for family in ("clip", "supcon"):
        r = get(family, "ours-tiled", 65536)
        mem = "n/a" if r is None or r.status != "ok" else f"{r.extra_mib:,.0f} MiB in {r.seconds:.1f} s"
        out.append(f"{family} N=65536 tiled: {mem} (target < 1 GiB)")
    import torch

    from contrastlab.losses._tiled import resolve_chunk_size

    for n in (512, 2048):
        for family in args.families:
            rows = n if family == "clip" else 2 * n
            tiled = resolve_chunk_size("auto", rows, rows, torch.device(args.device)) is not None
            auto = "ours-tiled" if tiled else "ours-dense"
            peers = [get(family, i, n) for i in IMPLS[family] if i not in ("floor", "ours-dense", "ours-tiled")]
            times = [p.seconds for p in peers if p and p.status == "ok" and p.seconds]
            ours_r = get(family, auto, n)
            if times and ours_r and ours_r.status == "ok" and ours_r.seconds:
                out.append(
                    f"{family} N={n}: ours (chunk_size='auto' = {auto}) / fastest peer time "
                    f"{ours_r.seconds / min(times):.2f}x (<= 1)"
                )
    return out


def _commit() -> str:
    """The checkout's commit (with "+changes" when the tree differs from it), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192, 16384, 65536])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per case")
    parser.add_argument(
        "--dense-max", type=int, default=16384, help="largest N for dense cases and the floor"
    )
    parser.add_argument("--peer-max", type=int, default=16384, help="largest N at which peers run")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not touch RESULTS.md")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file to update (default: %(default)s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    args.argv = sys.argv[1:] if argv is None else argv
    args.device_name = _device_name(args.device)
    cases = [(f, i, n) for n in args.sizes for f in args.families for i in IMPLS[f]]
    results = []
    try:
        from tqdm import tqdm

        progress = tqdm(cases, desc="bench losses", unit="case")
    except ImportError:
        progress = cases
    for family, impl, n in progress:
        if hasattr(progress, "set_postfix_str"):
            progress.set_postfix_str(f"{family} {impl} N={n}")
        results.append(run_case(family, impl, n, args))
    text = render(results, args)
    print(text)
    if not args.no_write:
        write_section("losses", args.device, text, args.out)
        print(f"\nwrote {args.out}")


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
