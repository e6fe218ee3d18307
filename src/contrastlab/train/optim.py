"""The optimiser's parameter groups (layer-wise learning-rate decay, frozen layers, the heads' own
learning rate) with the check that they cover the model exactly, and the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from contrastlab.models import ContrastiveModel
from contrastlab.train.config import TrainerConfig

__all__ = ["check_param_groups", "make_scheduler", "param_groups"]


def param_groups(model: ContrastiveModel, cfg: TrainerConfig) -> list[dict[str, Any]]:
    """AdamW groups built from ``model.named_parameters()``, so that no trainable parameter is left out.

    Each parameter is assigned by name: encoder layer i from the top (``model.encoder_layers()``) trains at
    ``lr · layer_decay^i`` and is frozen below the last ``freeze_all_but_last`` layers; encoder parameters
    outside every layer (a Graphormer's degree and distance embeddings, DeBERTa's relative-position table:
    tensors every block shares) form the group ``encoder.shared`` at ``lr``, frozen only when the whole
    encoder is (``freeze_all_but_last=0``); everything else (task, projection and auxiliary heads) is
    ``head`` at ``head_lr``. A parameter two layers share belongs to the upper one. Parameters the model
    froze itself (a LoRA model's base weights) stay frozen. Each group lists its ``param_names``.

    Raises:
        RuntimeError: a trainable parameter is in no group or in two (a bug: the message names them).
    """
    layers = model.encoder_layers()
    layer_of: dict[int, int] = {}
    for i, layer in enumerate(layers):  # bottom to top: a shared parameter ends in the upper layer
        for p in layer.parameters():
            layer_of[id(p)] = i
    frozen_below = None if cfg.freeze_all_but_last is None else len(layers) - cfg.freeze_all_but_last
    groups: dict[str, dict[str, Any]] = {}

    def add(group: str, lr: float, name: str, p: nn.Parameter) -> None:
        entry = groups.setdefault(group, {"params": [], "param_names": [], "lr": lr, "name": group})
        entry["params"].append(p)
        entry["param_names"].append(name)

    for name, p in model.named_parameters():
        if not name.startswith("encoder."):
            if p.requires_grad:
                add("head", cfg.head_lr or cfg.lr, name, p)
            continue
        at = layer_of.get(id(p))
        shared_frozen = at is None and frozen_below is not None and frozen_below >= len(layers)
        if shared_frozen or (at is not None and frozen_below is not None and at < frozen_below):
            p.requires_grad_(False)
        if not p.requires_grad:
            continue
        if at is None:
            add("encoder.shared", cfg.lr, name, p)
        else:
            add(f"encoder.{at}", cfg.lr * cfg.layer_decay ** (len(layers) - 1 - at), name, p)
    order = [f"encoder.{i}" for i in reversed(range(len(layers)))] + ["encoder.shared", "head"]
    result = [groups[g] for g in order if g in groups]
    check_param_groups(model, result)
    return result


def check_param_groups(model: nn.Module, groups: Sequence[dict[str, Any]]) -> None:
    """Every parameter with ``requires_grad`` is in exactly one group, and no frozen one is in any.

    Raises:
        RuntimeError: naming the parameters left out, listed twice, or frozen but optimised.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[int, int] = {}
    for group in groups:
        for p in group["params"]:
            seen[id(p)] = seen.get(id(p), 0) + 1
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    twice = [names.get(k, "?") for k, c in seen.items() if c > 1]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and id(p) in seen]
    if missing or twice or frozen:
        raise RuntimeError(
            "optimiser parameter groups do not cover the model exactly: "
            + "; ".join(f"{what}: {found[:10]}" for what, found in (
                ("trainable but in no group (they would never train)", missing),
                ("in more than one group", twice), ("frozen but optimised", frozen)) if found)
        )


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig, steps_per_epoch: int) -> Any:
    s = cfg.scheduler
    if s.name == "warmup_cosine":
        warmup, total = s.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if s.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=s.mode or "min",  # always resolved for "plateau" by TrainConfig's validation
            factor=s.factor, patience=s.patience, min_lr=s.min_lr
        )
    return None
