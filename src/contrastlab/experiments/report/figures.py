"""The figures of a verdict's report, drawn with matplotlib: the forest plot of every metric, the arms'
training curves, and the arms' embeddings side by side."""

from __future__ import annotations

from typing import Any, BinaryIO

import numpy as np

from contrastlab.experiments.stats import PairedComparison

__all__ = ["plot_arm_curves", "plot_arm_projections", "plot_forest"]


def plot_forest(comparisons: list[PairedComparison], path: str | BinaryIO) -> None:
    """One forest plot: a row per metric, a panel per family (task, diagnostic) with one shared axis each:
    the difference and its interval in % of the baseline mean, turned so that right is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"helped": "#1b7f3b", "hurt": "#b3261e", "equivalent": "#1f5fa8"}
    grouped: dict[str, list[PairedComparison]] = {"task": [], "diagnostic": []}
    for c in comparisons:
        grouped[c.family or "task"].append(c)
    families = [(f, rows) for f, rows in grouped.items() if rows]
    heights = [max(1, len(rows)) for _, rows in families]
    fig, axes = plt.subplots(len(families), 1, figsize=(9.5, 0.34 * sum(heights) + 1.4 * len(families)),
                             squeeze=False, gridspec_kw={"height_ratios": heights})  # fmt: skip
    for ax, (family, rows) in zip(axes[:, 0], families, strict=True):
        labels = []
        for i, c in enumerate(reversed(rows)):
            scale = abs(float(np.mean(c.baseline)))
            sign = -1.0 if c.higher_is_better is False else 1.0
            unit = 100.0 * sign / scale if scale > 1e-12 else float("nan")
            color = colors.get(c.verdict, "#5d6678")
            mid = c.mean_difference * unit
            if np.isfinite(c.ci_low) and np.isfinite(c.ci_high) and np.isfinite(mid):
                low, high = sorted((c.ci_low * unit, c.ci_high * unit))
                ax.plot([low, high], [i, i], color=color, linewidth=2.2)
            if np.isfinite(mid):
                ax.plot([mid], [i], "o", color=color, markersize=5)
            arrow = {True: "↑", False: "↓", None: "·"}[c.higher_is_better]
            labels.append(f"{c.metric} {arrow}  {c.call()}")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), labels, fontsize=8.5)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.tick_params(axis="x", labelsize=8.5)
        ax.set_xlabel("treatment - baseline, % of the baseline mean   (worse ←   → better)", fontsize=9)
        ax.set_title(f"{family} metrics", fontsize=10, loc="left")
        ax.grid(axis="x", color="#e5e7eb", linewidth=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_arm_curves(histories: dict[str, list[list[dict[str, Any]]]], best: dict[str, list[int]],
                     path: str | BinaryIO) -> None:  # fmt: skip
    """Each arm's mean over seeds per epoch with a min-max band, and each seed's best epoch as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    first = histories["treatment"][0][0]
    columns = [
        k
        for k in first
        if (k.startswith(("train/", "val/")) or k == "lr")
        and not k.endswith(("positives_per_anchor", "no_positive_share", "duplicate_share"))
    ]
    cols = 3
    rows = max(1, -(-len(columns) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    colors = {"baseline": "#1f77b4", "treatment": "#ff7f0e"}
    for ax, column in zip(axes.flat, columns, strict=False):
        for arm, runs in histories.items():
            # Mean over seeds at each epoch, with a band from the lowest to the highest seed (seeds that
            # stopped early drop out of the later epochs).
            by_epoch: dict[int, list[float]] = {}
            for history in runs:
                for r in history:
                    value = r.get(column)
                    if isinstance(value, float) and np.isfinite(value):
                        by_epoch.setdefault(int(r["epoch"]), []).append(value)
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            values = [np.asarray(by_epoch[e]) for e in epochs]
            label = f"{arm} (mean of {len(runs)} seeds, band min-max)"
            ax.plot(epochs, [v.mean() for v in values], color=colors[arm], linewidth=1.6, label=label)
            ax.fill_between(epochs, [v.min() for v in values], [v.max() for v in values], color=colors[arm],
                            alpha=0.18, linewidth=0)  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        if column == "lr":
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    for ax in list(axes.flat)[: len(columns)]:
        for arm, epochs in best.items():  # each seed's best epoch, as ticks along the bottom
            ax.plot(epochs, [0.02] * len(epochs), "|", color=colors[arm], markersize=8,
                    transform=ax.get_xaxis_transform())  # fmt: skip
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_arm_projections(
    loaded: dict[str, tuple[np.ndarray, np.ndarray | None]], path: str | BinaryIO
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(loaded), figsize=(5 * len(loaded), 4.4), squeeze=False)
    for ax, (arm, (emb, targets)) in zip(axes.flat, loaded.items(), strict=True):
        x = emb - emb.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        xy = x @ vt[:2].T  # (n, 2)
        classes = targets is not None and targets.dtype.kind in "iub" and len(np.unique(targets)) <= 10
        points = ax.scatter(xy[:, 0], xy[:, 1], c=targets, s=8, cmap="tab10" if classes else "viridis")
        if targets is not None and not classes:
            fig.colorbar(points, ax=ax, fraction=0.046)
        elif classes:
            ax.legend(*points.legend_elements(), fontsize=7, title="class", title_fontsize=7)
        ax.set_title(arm)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
