"""Evaluating a model: its outputs on rows of a dataset, two views of them, and the task metrics (plus
verification metrics for identity tasks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from contrastlab.metrics import classification_metrics, dataset_regression_metrics
from contrastlab.models import ContrastiveModel, ModelOutput
from contrastlab.train.build import augment_view, batch_inputs, view_generator
from contrastlab.train.config import TrainConfig
from contrastlab.train.objective import task_loss
from contrastlab.train.split import TargetScale

__all__ = ["VERIFICATION_MAX", "VERIFICATION_METRICS", "evaluate", "metric_names", "predict", "predict_views"]


@torch.no_grad()
def predict(model: ContrastiveModel, data: Any, idx: Tensor, device: torch.device) -> ModelOutput:
    """The eval-mode model's outputs on rows ``idx``, in chunks, on the CPU."""
    model.eval()
    outs = [model(batch_inputs(data, idx[i : i + 512], device)) for i in range(0, idx.shape[0], 512)]
    logits, embedding, projection = (torch.cat([getattr(o, f).float().cpu() for o in outs])
                                     for f in ("logits", "embedding", "projection"))  # fmt: skip
    heads = [o.auxiliary for o in outs if o.auxiliary is not None]
    aux = torch.cat([a.float().cpu() for a in heads]) if heads else None
    return ModelOutput(logits, embedding, projection, auxiliary=aux)


@torch.no_grad()
def predict_views(
    model: ContrastiveModel, data: Any, idx: Tensor, device: torch.device, augment: Any, seed: int
) -> tuple[Tensor, Tensor]:
    """Two views of rows ``idx`` through the eval-mode model, as training makes them: two seeded
    augmentations of each input, or (without augmentations) two dropout masks (dropout alone is switched
    on: BatchNorm keeps its running statistics). Returns their embeddings, (N, E) each, on the CPU."""
    model.eval()
    if augment is None:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.train()
    views: tuple[list[Tensor], list[Tensor]] = ([], [])
    try:
        for i in range(0, idx.shape[0], 512):
            host = batch_inputs(data, idx[i : i + 512], torch.device("cpu"))
            for v, out in enumerate(views):
                g = view_generator(seed, -1, i, v)  # epoch -1: draws no training step makes
                x = augment_view(augment, host, g) if augment is not None else host
                out.append(model(x.to(device)).embedding.float().cpu())
    finally:
        model.eval()
    return torch.cat(views[0]), torch.cat(views[1])


@torch.no_grad()
def evaluate(
    model: ContrastiveModel,
    data: Any,
    idx: Tensor,
    cfg: TrainConfig,
    scale: TargetScale | None = None,
    device: torch.device | None = None,
    part: str | None = None,
) -> dict[str, float]:
    """Task metrics of the clean (eval-mode) model on a subset (none when the task is "none", but for the
    verification metrics of identity data).
    The loss is on the training scale; regression metrics are in the targets' own units.

    Identity tasks (arcface, cosface) and identity data (an open-set split, whatever the task: a supervised
    cross-entropy baseline is judged alike) add verification metrics of the embeddings on val and test
    (``cosine_similarity``: the mean over same-identity pairs; ``tar@far=0.001``, ``eer``, ``rank1``; at most
    :data:`VERIFICATION_MAX` samples, a fixed draw). An open-set split (identities never trained on, e.g.
    Fashion-MNIST's held-out classes) has verification metrics only. A model with an auxiliary head adds
    ``auxiliary_mae`` against the dataset's auxiliary targets on every split. A regression dataset with
    named subsets of its records (``data.subsets``, e.g. MoleculeACE's activity cliffs) adds
    ``rmse_<name>`` and ``mae_<name>`` over the rows in each.
    """
    open_set = getattr(data, "open_set", ())
    if idx.numel() == 0 or (cfg.objective.task == "none" and not open_set):
        return {}
    scale = scale or TargetScale()
    out = predict(model, data, idx, device or torch.device("cpu"))
    y = data.targets[idx]
    metrics: dict[str, float] = {}
    if out.auxiliary is not None:  # an auxiliary target (a pose) is defined on every split
        metrics["auxiliary_mae"] = float((out.auxiliary - data.auxiliary[idx]).abs().mean())
    if (cfg.objective.task in ("arcface", "cosface") or open_set) and part in ("val", "test"):
        metrics.update(verification(out.embedding, y))
    if part in open_set or cfg.objective.task == "none":  # no trained head to score
        return metrics
    logits = out.logits
    metrics["loss"] = float(task_loss(cfg.objective, logits, scale.encode(y)))
    if data.task == "classification":
        metrics.update(classification_metrics(logits, y))
    else:
        metrics.update(dataset_regression_metrics(logits.squeeze(-1) * scale.sd + scale.mean, data, idx))
    return metrics


def metric_names(model: ContrastiveModel, data: Any, idx: Tensor, cfg: TrainConfig, part: str) -> list[str]:
    """The names :func:`evaluate` returns for rows ``idx`` of ``part``, without running the model: what the
    metric names a config uses are checked against before a run starts (the trainer checks, every epoch,
    that each of them was logged)."""
    open_set = getattr(data, "open_set", ())
    if idx.numel() == 0 or (cfg.objective.task == "none" and not open_set):
        return []
    names = ["auxiliary_mae"] if model.auxiliary_head is not None else []
    if (cfg.objective.task in ("arcface", "cosface") or open_set) and part in ("val", "test"):
        names += VERIFICATION_METRICS
    if part in open_set or cfg.objective.task == "none":
        return names
    names.append("loss")
    if data.task == "classification":  # the functions name their metrics: asked on a stand-in input
        names += classification_metrics(torch.zeros(2, max(data.num_classes, 2)), torch.tensor([0, 1]))
    else:
        names += dataset_regression_metrics(torch.zeros(idx.shape[0]), data, idx)
    return names


#: What :func:`verification` reports.
VERIFICATION_METRICS = ["cosine_similarity", "impostor_cosine", "tar@far=0.001", "tar@far=0.01", "eer",
                        "rank1"]  # fmt: skip

#: Verification scores all N(N-1)/2 pairs; larger splits are evaluated on a fixed draw of this many samples.
VERIFICATION_MAX = 4000


def verification(embedding: Tensor, identities: Tensor) -> dict[str, float]:
    """Verification metrics of embeddings by cosine (the first VERIFICATION_MAX of a fixed draw)."""
    from contrastlab.diagnostics.verification import verification_metrics

    if embedding.shape[0] > VERIFICATION_MAX:
        draw = torch.randperm(embedding.shape[0], generator=torch.Generator().manual_seed(0))
        embedding, identities = embedding[draw[:VERIFICATION_MAX]], identities[draw[:VERIFICATION_MAX]]
    m = verification_metrics(embedding.numpy(), identities.numpy(), far_targets=(1e-3, 1e-2))
    m["cosine_similarity"] = m["genuine_cosine"]  # the name validation monitors (higher is better)
    return {name: m[name] for name in VERIFICATION_METRICS}
