"""CKA between the named stages of two models on the same inputs, from forward hooks.

This is how the fusion study judged whether fusion survived to the last layer: the same inputs through twin
models (or two checkpoints of one), stage by stage. Activations are flattened per sample (per-token
outputs pooled first, when the caller says how) and streamed
batch by batch into :class:`StreamingLinearCKA`, so memory does not grow with the number of inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor, nn

from contrastlab.diagnostics.cka import StreamingLinearCKA
from contrastlab.errors import UnknownNameError

__all__ = ["layer_cka", "plot_cka_heatmap"]


def _capture(
    model: nn.Module, names: Sequence[str], store: dict[str, Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise UnknownNameError(
            f"no module named {missing} in the model; named modules include {list(modules)[:20]}"
        )

    def hook(name: str):  # type: ignore[no-untyped-def]
        def save(_: nn.Module, __: object, output: object) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if not isinstance(out, Tensor):
                raise TypeError(f"module {name!r} returned {type(out).__name__}, not a tensor")
            store[name] = out.detach()

        return save

    return [modules[n].register_forward_hook(hook(n)) for n in names]


@torch.no_grad()
def layer_cka(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Tensor],
    *,
    layers_a: Sequence[str],
    layers_b: Sequence[str] | None = None,
    debiased: bool = False,
    pool: Callable[[Tensor, Any], Tensor] | None = None,
) -> np.ndarray:
    """Linear CKA between every stage of ``model_a`` and every stage of ``model_b``.

    Args:
        model_a, model_b: Models to compare (put into eval mode here).
        batches: Input batches, fed identically to both models.
        layers_a: Names (``named_modules``) of ``model_a``'s stages.
        layers_b: Names of ``model_b``'s stages; defaults to ``layers_a`` (twin models).
        debiased: Use the unbiased HSIC estimator.
        pool: Turns a stage's per-token output (N, L, H) into per-sample features (N, H) given the batch
            (a text encoder's masked mean over its tokens); without it every output is flattened, which for
            tokens would mix in padding and change width from batch to batch.

    Returns:
        (len(layers_a), len(layers_b)) matrix; the diagonal compares matching stages of twins. Stages whose
        outputs have different rows for the same batch (a graph encoder's per-atom blocks vs its
        per-molecule readout) measure different units and get NaN.

    Raises:
        KeyError: a stage name that is not a module of its model.
    """
    layers_b = list(layers_a if layers_b is None else layers_b)
    model_a.eval()
    model_b.eval()
    acts_a: dict[str, Tensor] = {}
    acts_b: dict[str, Tensor] = {}
    handles = _capture(model_a, layers_a, acts_a) + _capture(model_b, layers_b, acts_b)
    stats = [[StreamingLinearCKA(debiased=debiased) for _ in layers_b] for _ in layers_a]
    same_units = np.ones((len(layers_a), len(layers_b)), dtype=bool)
    try:
        for batch in batches:
            model_a(batch)
            model_b(batch)
            feats_a = {k: _features(v, batch, pool) for k, v in acts_a.items()}
            feats_b = {k: _features(v, batch, pool) for k, v in acts_b.items()}
            for i, la in enumerate(layers_a):
                for j, lb in enumerate(layers_b):
                    if feats_a[la].shape[0] != feats_b[lb].shape[0]:
                        same_units[i, j] = False
                    elif same_units[i, j]:
                        stats[i][j].update(feats_a[la], feats_b[lb])
    finally:
        for h in handles:
            h.remove()
    return np.array([[s.compute() if ok else float("nan") for s, ok in zip(row, oks, strict=True)]
                     for row, oks in zip(stats, same_units, strict=True)])  # fmt: skip


def _features(output: Tensor, batch: Any, pool: Callable[[Tensor, Any], Tensor] | None) -> np.ndarray:
    """(batch, features) float64 rows of one stage's output."""
    if pool is not None and output.ndim == 3:
        output = pool(output, batch)
    return output.flatten(1).double().cpu().numpy()


def plot_cka_heatmap(
    matrix: np.ndarray,
    labels_a: Sequence[str],
    labels_b: Sequence[str],
    path: str | BinaryIO,
    *,
    title: str = "CKA",
    name_a: str = "model A",
    name_b: str = "model B",
) -> None:
    """Writes the stage-by-stage CKA matrix as an annotated PNG heatmap (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels_b), 1.0 + 0.7 * len(labels_a)))
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(labels_b)), labels_b, rotation=45, ha="right")
    ax.set_yticks(range(len(labels_a)), labels_a)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center",
                    color="white" if matrix[i, j] < 0.6 else "black", fontsize=8)  # fmt: skip
    ax.set_title(title)
    ax.set_ylabel(f"{name_a} (rows)")
    ax.set_xlabel(f"{name_b} (columns)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
