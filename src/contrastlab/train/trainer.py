"""The training loop: read it top to bottom.

``train(config, run_dir)`` builds data, model, optimiser and objective from the config, then for each
epoch: batches from a sampler seeded by (seed, epoch), V views per batch, the objective, a guard against
non-finite values, backward (with a GradScaler under fp16), clipping, the step; then evaluation on train
and val, one history row, schedulers and early stopping, and an atomic checkpoint. A run killed at any
moment resumes from its last checkpoint with the same history as an uninterrupted run (on CPU; the
``seconds`` column aside).
"""

from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastlab import distributed, plugins
from contrastlab.data import (
    ClassBalancedBatchSampler,
    RandomBatchSampler,
    batch_statistics,
    get_dataset,
    stratified_split,
)
from contrastlab.models import ContrastiveModel, ModelOutput, build_model
from contrastlab.train.checkpoint import (
    atomic_write,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    write_history,
    write_json,
    write_yaml,
)
from contrastlab.train.config import ConfigError, TrainConfig, TrainerConfig
from contrastlab.train.metrics import classification_metrics, regression_metrics
from contrastlab.train.objective import CLASSIFICATION_TASKS, Objective, ObjectiveValue, task_loss
from contrastlab.train.rundir import RunDir, RunDirError

__all__ = ["RunResult", "StepState", "TrainingDiverged", "train"]


class TrainingDiverged(RuntimeError):
    """Raised after ``max_consecutive_skips`` non-finite steps; ``report`` says what went wrong where."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        super().__init__(
            f"training stopped after {report['consecutive_skips']} consecutive non-finite steps "
            f"(epoch {report['epoch']}, step {report['step']}): non-finite {report['non_finite']}; "
            f"max |logit| {report['max_logit']:.3g} at temperature {report['temperature']}, "
            f"feature norms up to {report['max_feature_norm']:.3g}"
        )


@dataclass
class StepState:
    """What a step callback sees (used by tests to interrupt a run at a chosen step)."""

    epoch: int
    step: int
    global_step: int
    loss: float


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    stopped_early: bool
    test: dict[str, float] = field(default_factory=dict)
    #: The trained model (best weights) on the process that wrote the run; None elsewhere.
    model: ContrastiveModel | None = None


# --- building blocks -------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the global RNG user code may draw from
    torch.manual_seed(seed)


def make_model(config: TrainConfig, data: Any) -> ContrastiveModel:
    """The model a config describes, sized for its dataset (graph datasets add their edge features)."""
    extra: dict[str, Any] = dict(config.model.options)
    paired = hasattr(data, "tokenize") and hasattr(data, "num_edge_features")  # graph + text pairs
    wanted = "fusion" if paired else "transformer" if hasattr(data, "tokenize") else None
    if (config.model.name in ("transformer", "fusion") or wanted is not None) and config.model.name != wanted:
        raise ValueError(
            f"data.name={config.data.name!r} and model.name={config.model.name!r} do not fit: text datasets "
            "need a text encoder (model.name=transformer), paired graph+text datasets a two-tower model "
            "(model.name=fusion), and each of those models needs its kind of dataset"
        )
    if hasattr(data, "num_edge_features"):
        extra["num_edge_features"] = data.num_edge_features
    num_auxiliary = 0
    if config.objective.auxiliary is not None:
        auxiliary = getattr(data, "auxiliary", None)
        if auxiliary is None:
            raise ValueError(
                f"objective.auxiliary needs auxiliary targets, which dataset {config.data.name!r} does not "
                "have (fashion_mnist has them with data.options.pose_degrees > 0)"
            )
        num_auxiliary = int(auxiliary.shape[1])
    model = build_model(
        config.model.name,
        num_features=data.num_features,
        num_outputs=max(data.num_classes, 1),
        hidden_dims=config.model.hidden_dims,
        embedding_dim=config.model.embedding_dim,
        projection_dim=config.model.projection_dim,
        dropout=config.model.dropout,
        head="cosine" if config.objective.task in ("arcface", "cosface") else "linear",
        num_auxiliary=num_auxiliary,
        **extra,
    )
    if hasattr(data, "tokenize"):
        data.tokenize(model.encoder.tokenizer, model.encoder.max_length)  # cached per tokenizer and length
    return model


def own_model(encoder: nn.Module, config: TrainConfig, data: Any, train_idx: Tensor) -> ContrastiveModel:
    """A copy of the user's encoder with the trainer's heads (built now, after seeding, so every arm of a
    comparison starts from the same weights; the caller's encoder is never trained in place)."""
    from contrastlab.models import wrap_encoder

    encoder = copy.deepcopy(encoder)
    if hasattr(data, "tokenize"):
        if not (hasattr(encoder, "tokenizer") and hasattr(encoder, "max_length")):
            raise TypeError(
                f"dataset {data.name!r} holds texts: your encoder needs .tokenizer and .max_length (the "
                "dataset tokenises its texts with them) and a forward taking a TokenBatch"
            )
        data.tokenize(encoder.tokenizer, encoder.max_length)
    example = batch_inputs(data, train_idx[:2], torch.device("cpu"))
    return wrap_encoder(
        encoder, num_outputs=max(data.num_classes, 1), projection_dim=config.model.projection_dim,
        head="cosine" if config.objective.task in ("arcface", "cosface") else "linear",
        embedding_dim=config.model.embedding_dim, example=example,
    )  # fmt: skip


def check_task(config: TrainConfig, data: Any) -> None:
    """The objective's task loss fits the dataset's task.

    Raises:
        ValueError: e.g. cross-entropy on regression targets, naming both and the fix.
    """
    classifying = config.objective.task in CLASSIFICATION_TASKS
    regressing = config.objective.task in ("mse", "l1")
    if (data.task == "regression" and classifying) or (data.task == "classification" and regressing):
        fit_task = "mse or l1" if data.task == "regression" else "cross_entropy (or focal, arcface, cosface)"
        raise ValueError(
            f"objective.task={config.objective.task!r} does not fit dataset {data.name!r}, whose targets are "
            f"{data.task}; set objective.task to {fit_task}"
        )


def load_pretrained_encoder(model: ContrastiveModel, source: str | Path) -> None:
    """Copies the encoder weights of a pretrained run (its directory: best weights) or checkpoint file.

    Raises:
        CheckpointError: no checkpoint there.
        ValueError: the checkpoint's encoder does not match this model's (names the first mismatch).
    """
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    state = load_checkpoint(path)["model"]
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    own = model.encoder.state_dict()
    problems = sorted(set(own) ^ set(encoder)) or [
        f"{k}: {tuple(encoder[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if encoder[k].shape != v.shape
    ]
    if problems:
        raise ValueError(
            f"model.init_from={str(source)!r}: its encoder does not match this model's "
            f"({len(problems)} differences, first: {problems[0]}); use the same model settings"
        )
    model.encoder.load_state_dict(encoder)


def make_split(config: TrainConfig, data: Any) -> dict[str, Tensor]:
    """Train/val/test indices: stratified random, or the dataset's own split (``data.split: dataset``), with
    val carved from its train part when it has no val part of its own.

    Raises:
        ValueError: no split of its own with ``data.split=dataset``; an empty train, val or test part (test
            may be empty only when ``data.test_fraction=0`` asks for that).
    """
    dc = config.data
    stratify = data.task == "classification"
    if dc.split == "dataset":
        own = getattr(data, "predefined_split", None)
        if not own or "train" not in own:
            raise ValueError(
                f"data.split=dataset but dataset {config.data.name!r} has no split of its own; use "
                "data.split=random (a recipe: `data: {split: random, val_fraction: 0.1, test_fraction: 0.1}`)"
            )
        split = {"train": own["train"], "val": own.get("val"), "test": own.get("test")}
        if split["val"] is None:
            part = own["train"]
            inner = stratified_split(
                data.targets[part], val_fraction=dc.val_fraction, test_fraction=0.0, seed=dc.split_seed,
                stratify=stratify,
            )  # fmt: skip
            split["train"], split["val"] = part[inner["train"]], part[inner["val"]]
        where = f"dataset {config.data.name!r}'s own split (data.split=dataset)"
    else:
        split = stratified_split(
            data.targets, val_fraction=dc.val_fraction, test_fraction=dc.test_fraction, seed=dc.split_seed,
            stratify=stratify,
        )  # fmt: skip
        where = (f"the random split of dataset {config.data.name!r} ({len(data.targets)} rows, "
                 f"data.val_fraction={dc.val_fraction}, data.test_fraction={dc.test_fraction})")  # fmt: skip
    if dc.max_rows_per_split is not None:  # a seeded draw of each part, so every class can appear
        g = torch.Generator().manual_seed(dc.split_seed)
        split = {k: v if v is None or v.numel() <= dc.max_rows_per_split else
                 v[torch.randperm(v.numel(), generator=g)[: dc.max_rows_per_split]].sort().values
                 for k, v in split.items()}  # fmt: skip
    for name in ("train", "val", "test"):
        rows = split[name]
        if (rows is None or rows.numel() == 0) and not (name == "test" and dc.split == "random"
                                                         and dc.test_fraction == 0):  # fmt: skip
            raise ValueError(f"{where} has no {name} rows; a run needs train, val and test rows")
    return {k: v for k, v in split.items() if v is not None}


@dataclass(frozen=True)
class TargetScale:
    """Regression targets are trained on as ``(y - mean) / sd`` (training split statistics)."""

    mean: float = 0.0
    sd: float = 1.0

    @classmethod
    def fit(cls, config: TrainConfig, data: Any, train_idx: Tensor) -> TargetScale:
        if data.task != "regression" or not config.data.standardize_targets:
            return cls()
        y = data.targets[train_idx].double()
        sd = float(y.std()) if y.numel() > 1 else 1.0
        return cls(float(y.mean()), sd if sd > 0 else 1.0)

    def encode(self, y: Tensor) -> Tensor:
        return (y - self.mean) / self.sd if y.is_floating_point() else y


def batch_inputs(
    data: Any, idx: Tensor, device: torch.device, transform: Any = None, generator: Any = None
) -> Any:
    """The model input for rows ``idx``: a tensor slice, or a graph batch (augmented when ``transform``)."""
    if hasattr(data, "take"):
        inputs = data.take(idx, transform, generator) if transform is not None else data.take(idx)
    else:
        if transform is not None:
            raise ValueError(f"trainer.views.augment needs graph inputs; dataset {data.name!r} has tensors")
        inputs = data.features[idx]
    return inputs.to(device)


def augment_view(augment: Any, batch: Any, generator: torch.Generator) -> Any:
    """One augmented view of a collated graph batch (all graphs at once; the batch is not modified)."""
    from contrastlab.views.graph import augment_batch

    return augment_batch(augment, batch, generator)


def view_generator(seed: int, epoch: int, step: int, view: int) -> torch.Generator:
    """The generator of one view's augmentations: a function of (seed, epoch, step, view) only, so a
    resumed run draws exactly the views an uninterrupted one would."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + step) * 17 + view)


def make_augmentation(config: TrainConfig, data: Any) -> Any:
    """The configured view augmentation, or None; refused up front for data that is not graphs."""
    spec = config.trainer.views.augment
    if spec is None:
        return None
    if not hasattr(data, "num_edge_features") or hasattr(data, "tokenize"):
        raise ValueError(
            f"trainer.views.augment needs graph inputs; dataset {data.name!r} is not graphs alone (text "
            "views come from dropout (trainer.views.count), layers and tokens: see objective.token_supcon; a "
            "paired graph+text sample's second view is its other modality: see objective.clip)"
        )
    from contrastlab.views.graph import build_augmentation

    return build_augmentation(spec, "trainer.views.augment")


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


def forward_views(model: nn.Module, x: Any, views: int, one_stage: bool) -> list[ModelOutput]:
    """V outputs per sample; dropout differs between them (R-Drop, dropout views). ``x`` is one input
    (the views then differ by dropout) or a list of V inputs (augmented views)."""
    if isinstance(x, list):
        if len(x) != views:
            raise ValueError(f"forward_views: {len(x)} inputs for views={views}")
        return [model(xv) for xv in x]
    if views == 1:
        return [model(x)]
    if not one_stage:
        return [model(x) for _ in range(views)]
    if isinstance(x, Tensor):
        stacked: Any = x.repeat(views, *([1] * (x.ndim - 1)))
    elif hasattr(x, "repeat_batch"):
        stacked = x.repeat_batch(views)  # token batches
    else:
        raise ValueError("trainer.views.mode=one_stage duplicates tensor or token batches; graphs: two_stage")
    out: ModelOutput = model(stacked)  # (V·N, ...) in one forward, a different dropout mask per copy
    n = out.logits.shape[0] // views
    return [out.rows(v * n, (v + 1) * n) for v in range(views)]


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
    """Task metrics of the clean (eval-mode) model on a subset (none when the task is "none").
    The loss is on the training scale; regression metrics are in the targets' own units.

    Identity tasks (arcface, cosface) add verification metrics of the embeddings on val and test
    (``cosine_similarity``: the mean over same-identity pairs; ``tar@far=0.001``, ``eer``, ``rank1``; at most
    :data:`VERIFICATION_MAX` samples, a fixed draw). An open-set split (identities never trained on, e.g.
    Fashion-MNIST's held-out classes) has verification metrics only. A model with an auxiliary head adds
    ``auxiliary_mae`` against the dataset's auxiliary targets on every split.
    """
    if cfg.objective.task == "none" or idx.numel() == 0:
        return {}
    scale = scale or TargetScale()
    out = predict(model, data, idx, device or torch.device("cpu"))
    y = data.targets[idx]
    metrics: dict[str, float] = {}
    if out.auxiliary is not None:  # an auxiliary target (a pose) is defined on every split
        metrics["auxiliary_mae"] = float((out.auxiliary - data.auxiliary[idx]).abs().mean())
    if cfg.objective.task in ("arcface", "cosface") and part in ("val", "test"):
        metrics.update(_verification(out.embedding, y))
    if part in getattr(data, "open_set", ()):
        return metrics
    logits = out.logits
    metrics["loss"] = float(task_loss(cfg.objective, logits, scale.encode(y)))
    if data.task == "classification":
        metrics.update(classification_metrics(logits, y))
    else:
        metrics.update(regression_metrics(logits.squeeze(-1) * scale.sd + scale.mean, y))
    return metrics


#: Verification scores all N(N-1)/2 pairs; larger splits are evaluated on a fixed draw of this many samples.
VERIFICATION_MAX = 4000


def _verification(embedding: Tensor, identities: Tensor) -> dict[str, float]:
    from contrastlab.diagnostics.verification import verification_metrics

    if embedding.shape[0] > VERIFICATION_MAX:
        draw = torch.randperm(embedding.shape[0], generator=torch.Generator().manual_seed(0))
        embedding, identities = embedding[draw[:VERIFICATION_MAX]], identities[draw[:VERIFICATION_MAX]]
    m = verification_metrics(embedding.numpy(), identities.numpy(), far_targets=(1e-3, 1e-2))
    return {"cosine_similarity": m["genuine_cosine"], "impostor_cosine": m["impostor_cosine"],
            "tar@far=0.001": m["tar@far=0.001"], "tar@far=0.01": m["tar@far=0.01"], "eer": m["eer"],
            "rank1": m["rank1"]}  # fmt: skip


def _grad_norm(params: Sequence[Tensor]) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) if grads else 0.0


def _term_grad_norms(
    value: Any, weights: dict[str, float], encoder_params: Sequence[Tensor]
) -> dict[str, float]:
    """||∇ task|| and ||∇(λ_k · term_k)|| on the shared encoder, one autograd pass per part."""
    parts = {"task": value.task, **{k: weights[k] * t for k, t in value.terms.items() if weights[k] > 0}}
    norms = {}
    for name, part in parts.items():
        grads = torch.autograd.grad(part, encoder_params, retain_graph=True, allow_unused=True)
        flat = [g.norm() for g in grads if g is not None]
        norms[name] = float(torch.linalg.vector_norm(torch.stack(flat))) if flat else 0.0
    return norms


def overridden_weights(overrides: Sequence[str]) -> set[str]:
    """The terms whose weight an override sets (``objective.supcon.weight=0.1`` or ``objective.supcon=...``):
    on resume their configured weight replaces the adapted one; every other term keeps its adapted λ.

    Example:
        >>> sorted(overridden_weights(["trainer.epochs=9", "objective.supcon.weight=0.1", "objective.x={}"]))
        ['supcon', 'x']
    """
    names = set()
    for text in overrides:
        path = text.split("=", 1)[0].split(".")
        if path[0] == "objective" and (len(path) == 2 or (len(path) == 3 and path[2] == "weight")):
            names.add(path[1])
    return names


def _forward_batch(
    net: nn.Module,
    objective: Objective,
    data: Any,
    idx: Tensor,
    scale: TargetScale,
    augment: Any,
    config: TrainConfig,
    epoch: int,
    step: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> tuple[ObjectiveValue, list[ModelOutput], ModelOutput | None, ModelOutput | None]:
    """One micro-batch through the model: its views, the clean input, MoCo's keys and the reference model,
    then the objective. Returns (value, view outputs, keys, clean output)."""
    tc = config.trainer
    y = scale.encode(data.targets[idx]).to(device)
    aux = data.auxiliary[idx].to(device) if config.objective.auxiliary is not None else None
    on_clean = augment is not None and tc.views.task_on_clean and config.objective.task != "none"
    # With the task on clean inputs and every term's weight 0 (a verdict's baseline arm, or before a term
    # starts), the augmented views would only feed unweighted terms, yet their forward passes would still
    # move BatchNorm statistics: they are skipped, so the run is the plain task run.
    use_views = not on_clean or any(w > 0 for w in objective.weights(epoch).values())
    # Every view is drawn from the one collated clean batch, on the CPU (the generators live there).
    host = batch_inputs(data, idx, torch.device("cpu"))
    x_clean = host.to(device)
    x: Any = x_clean
    if augment is not None and use_views:
        x = [augment_view(augment, host, view_generator(tc.seed, epoch, step, v)).to(device)
             for v in range(tc.views.count)]  # fmt: skip
    one_stage = tc.views.mode == "one_stage"
    keys = clean = reference = None
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        outputs = forward_views(net, x, tc.views.count, one_stage) if use_views else []
        with torch.no_grad():
            if objective.key_model is not None and use_views:
                keys = objective.key_model(x[1] if isinstance(x, list) else x)
            if objective.reference_model is not None and use_views:
                reference = objective.reference_model(x[0] if isinstance(x, list) else x)
        if on_clean:
            clean = net(x_clean)
    return objective(outputs, y, epoch, keys, clean, reference, aux), outputs, keys, clean


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


# --- the loop --------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    raw_config: dict[str, Any] | None = None,
    resume: bool = False,
    override_note: list[str] | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    on_step: Callable[[StepState], None] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    model: nn.Module | None = None,
    dataset: Any = None,
) -> RunResult:
    """Trains ``config`` into ``run_dir`` (created), or resumes the run there.

    Args:
        config: The validated configuration.
        run_dir: Where config.yaml, history.csv, checkpoints/, metrics.json and embeddings/ go.
        raw_config: The mapping the config came from, recorded in config.yaml.
        resume: Continue from ``checkpoints/last.pt``; ``config`` may differ (e.g. a new λ) and the change
            is recorded in config.yaml's ``overrides`` history. A run killed before its first checkpoint
            starts over; files of interrupted atomic writes are removed.
        override_note: The overrides that produced ``config``, for the record.
        progress: Show a progress bar (default: when stderr is a terminal; otherwise one line per epoch).
        quiet: Neither bar nor epoch lines (a caller such as ``contrastlab verdict`` shows its own).
        on_step: Called after every optimiser step.
        on_epoch: Called with (epoch, history row) after each epoch is checkpointed; an exception it raises
            (e.g. a sweep pruning the trial) ends the run there, its files intact.
        overwrite: Start afresh where a run exists, removing it first (else that is an error).
        model: Your encoder instead of ``model.name`` (a copy is trained; see ContrastiveModel for the
            contract); the task and projection heads are added. Resume a run with the same encoder.
        dataset: Your dataset instead of ``data.name`` (see ``contrastlab.data.tables.as_dataset``).

    Raises:
        TrainingDiverged: ``max_consecutive_skips`` steps in a row had a non-finite loss or gradient.
        CheckpointError: resume from an unreadable checkpoint.
        RunDirError: another process is using ``run_dir``; a new run where one exists without
            ``overwrite``; resume where no run was ever started.
    """
    run = RunDir(run_dir)
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset)
        name = f"python:{getattr(dataset, 'name', type(dataset).__name__)}"
        config = config.model_copy(update={"data": config.data.model_copy(update={"name": name})})
    if model is not None:  # config.yaml records that the model came from Python
        name = f"python:{type(model).__qualname__}"
        config = config.model_copy(update={"model": config.model.model_copy(update={"name": name})})
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 owns the directory
        return _train(config, run, raw_config, resume, override_note, progress, quiet, on_step, on_epoch,
                      model, dataset)
    with run.lock():
        if resume:
            run.remove_temporaries()
            if not run.last.is_file():
                if not run.config.is_file():
                    raise RunDirError(f"{run.path} holds no run to resume (no config.yaml, no checkpoint)")
                print(f"note: {run.path} has no checkpoint yet (stopped during its first epoch): "
                      "starting it over", file=sys.stderr)  # fmt: skip
                run.clear()
                resume = False
        elif run.holds_run():
            if not overwrite:
                raise RunDirError(
                    f"{run.path} already holds a run; resume it (contrastlab resume {run.path}), choose "
                    "another name, or overwrite it (--overwrite; the old run is deleted)"
                )
            run.clear()
        return _train(config, run, raw_config, resume, override_note, progress, quiet, on_step, on_epoch,
                      model, dataset)


def _train(
    config: TrainConfig,
    run: RunDir,
    raw_config: dict[str, Any] | None,
    resume: bool,
    override_note: list[str] | None,
    progress: bool | None,
    quiet: bool,
    on_step: Callable[[StepState], None] | None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None,
    encoder: nn.Module | None = None,
    dataset: Any = None,
) -> RunResult:
    run_dir = run.path
    tc = config.trainer
    device = torch.device(tc.device)
    rank, world = _init_distributed(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if tc.batch_size % world:
        raise ValueError(f"trainer.batch_size={tc.batch_size} must divide evenly over {world} processes")
    adaptive = [n for n, t in config.objective.terms().items() if t.auto_ratio is not None]
    if world > 1 and adaptive:
        raise ValueError(
            f"objective term(s) {adaptive} set auto_ratio, which adapts λ from per-term gradient norms "
            "measured on one process only; run on one process or fix their weights"
        )
    local_batch = tc.batch_size // world
    is_main = rank == 0
    seed_everything(tc.seed)

    # Data: the split depends only on the data config, so every arm of a comparison sees the same rows.
    data = dataset if dataset is not None else get_dataset(config.data.name, **config.data.options)
    check_task(config, data)
    split = make_split(config, data)
    train_idx = split["train"]
    scale = TargetScale.fit(config, data, train_idx)
    augment = make_augmentation(config, data)
    views = tc.views.count

    # Model: built right after seeding, so the same seed gives the same initial weights in every arm.
    model = make_model(config, data) if encoder is None else own_model(encoder, config, data, train_idx)
    if config.model.init_from:
        load_pretrained_encoder(model, config.model.init_from)
    if world > 1:
        # BatchNorm over the whole batch of every rank: the run normalises as one process would, and every
        # rank's running statistics (hence its evaluation) stay equal.
        model = distributed.convert_batchnorm(model)  # type: ignore[assignment]
    model = model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, tc), weight_decay=tc.weight_decay)
    if tc.sampler.name == "class_balanced":
        if data.task != "classification":
            raise ValueError("trainer.sampler.name=class_balanced needs a classification dataset")
        sampler: Any = ClassBalancedBatchSampler(
            data.targets[train_idx], tc.batch_size, tc.sampler.m_per_class, seed=tc.seed
        )
    else:
        sampler = RandomBatchSampler(train_idx.shape[0], tc.batch_size, seed=tc.seed)
    steps_per_epoch = max(1, math.ceil(len(sampler) / tc.accumulate))
    scheduler = make_scheduler(optimizer, tc, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.amp == "fp16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp)
    # Under torchrun each rank holds 1/W of every batch: the gradients are averaged over ranks once per
    # optimiser step and the contrastive terms gather negatives from every rank, which together give
    # exactly the single-process gradient (distributed.average_gradients says why not DDP's reducer).
    distributed.broadcast_module(model)
    net: nn.Module = model
    objective = Objective(config.objective, gather_distributed=world > 1, model=model)
    request = objective.view_request()
    if request:
        if not hasattr(model.encoder, "request_views"):
            raise ValueError(
                "objective.supcon.layers, objective.token_supcon and objective.layer_supcon read layer and "
                f"token views of a text encoder (model.name=transformer), which model.name="
                f"{config.model.name!r} is not"
            )
        model.encoder.request_views(request)  # type: ignore[operator]
    encoder_params = [p for n, p in model.named_parameters() if n.startswith("encoder.") and p.requires_grad]
    trainable = [p for p in model.parameters() if p.requires_grad]

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    start_epoch, global_step, bad_epochs = 0, 0, 0
    overrides_log: list[dict[str, Any]] = []
    if resume:
        state = load_checkpoint(run.last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        objective.load_state_dict(state["objective"], configured=overridden_weights(override_note or []))
        history, best = state["history"], state["best"]
        start_epoch, global_step, bad_epochs = state["epoch"] + 1, state["global_step"], state["bad_epochs"]
        overrides_log = state["overrides_log"]
        restore_rng(state["rng"])
        for group, lr in zip(optimizer.param_groups, state["lrs"], strict=True):
            group["lr"] = lr  # the scheduler's current LR, not the config's initial one
    if override_note or not resume:
        overrides_log.append({"epoch": start_epoch, "resume": resume, "overrides": override_note or []})
    if is_main:
        recorded = {"config": config.model_dump(mode="json"), "raw": raw_config or {},
                    "overrides": overrides_log, "plugins": plugins.loaded()}  # fmt: skip
        write_yaml(recorded, run.config)
        write_json({k: v.tolist() for k, v in split.items()}, run.split)

    show_bar = (sys.stderr.isatty() if progress is None else progress) and is_main and not quiet
    events = _event_writer(run.events) if is_main else None
    es = tc.early_stopping
    consecutive_skips = 0
    # A run that stopped early (its checkpoint says so) stays stopped on resume, unless a new patience lets
    # it go on: it finishes exactly as the uninterrupted run did.
    stopped_early = es.patience is not None and bad_epochs >= es.patience
    for epoch in range(start_epoch, tc.epochs if not stopped_early else start_epoch):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}  # over the micro-batches whose optimiser step was applied
        logged_keys: dict[str, None] = {}  # every logged name, in order, also of dropped steps
        counted, skipped, optimizer_steps, grad_norm_total = 0, 0, 0, 0.0
        grad_norm_sums: dict[str, float] = {}
        grad_norm_count = 0
        batches = list(sampler)
        # One optimiser step per window of `accumulate` micro-batches; the epoch's last window may be
        # shorter and still steps, so no gradient carries into the next epoch (nor is lost on resume).
        n, acc = len(batches), tc.accumulate
        windows = [range(i, min(i + acc, n)) for i in range(0, n, acc)]
        bar = _progress(windows, f"epoch {epoch + 1}/{tc.epochs}", show_bar)
        for window in bar:
            window_sums: dict[str, float] = {}
            failure: list[str] | None = None
            norms: dict[str, float] = {}
            # Per-term gradient norms (and auto-λ) once per optimiser step, on its first micro-batch; they
            # need extra autograd passes, which each rank would take on its own share: one process only.
            measure = (world == 1 and tc.term_grad_norm_every > 0 and bool(encoder_params)
                       and global_step % tc.term_grad_norm_every == 0)  # fmt: skip
            for step in window:
                idx = train_idx[torch.tensor(batches[step][rank * local_batch : (rank + 1) * local_batch])]
                value, outputs, keys, clean = _forward_batch(
                    net, objective, data, idx, scale, augment, config, epoch, step, device, amp_dtype
                )
                logged = {"loss": value.total, "task": value.task, **value.terms}
                logged_keys.update(dict.fromkeys(logged))

                # Guard: a non-finite loss never reaches the weights. The whole optimiser step is dropped
                # (with the window's gradients and logged values); K dropped steps in a row end the run with
                # a report. (Every rank takes the same decision, or the gradient exchange would hang.)
                if _on_any_rank(bool(value.non_finite), world):
                    failure = value.non_finite or ["(another rank)"]
                    break
                if measure and step == window[0]:
                    norms = _term_grad_norms(value, value.weights, encoder_params)
                scaler.scale(value.total / len(window)).backward()  # type: ignore[no-untyped-call]
                objective.enqueue(keys)  # MoCo: every micro-batch's keys, after its loss
                classes = data.task == "classification"
                stats = batch_statistics(data.targets[idx], idx, views) if classes else {}
                for k, v in {**{n: float(t.detach()) for n, t in logged.items()}, **stats}.items():
                    window_sums[k] = window_sums.get(k, 0.0) + v

            if failure is None:
                distributed.average_gradients(trainable)
                scaler.unscale_(optimizer)  # a no-op without fp16; under fp16 it records the overflow
                if not all(bool(torch.isfinite(p.grad).all()) for p in trainable if p.grad is not None):
                    failure = ["gradient"]
                    if scaler.is_enabled():
                        scaler.update()  # lowers the scale, as GradScaler's own skipped step would
            if failure is not None:
                skipped += 1
                seen = outputs or ([clean] if clean is not None else [])
                report = partial(_divergence_report, failure, seen, config, epoch, window[-1])
                consecutive_skips = _skip_step(optimizer, consecutive_skips, tc.max_consecutive_skips, report)
                continue
            grad_norm = (
                float(torch.nn.utils.clip_grad_norm_(trainable, tc.grad_clip))
                if tc.grad_clip
                else _grad_norm(trainable)
            )
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            objective.after_step(model)
            if scheduler is not None and tc.scheduler.name == "warmup_cosine":
                scheduler.step()
            consecutive_skips = 0
            global_step += 1
            optimizer_steps += 1
            grad_norm_total += grad_norm
            counted += len(window)
            for k, v in window_sums.items():
                sums[k] = sums.get(k, 0.0) + v
            if norms:
                for k, v in norms.items():
                    grad_norm_sums[k] = grad_norm_sums.get(k, 0.0) + v
                grad_norm_count += 1
                if norms.get("task", 0.0) > 0:
                    objective.adapt({k: v / norms["task"] for k, v in norms.items() if k != "task"})
            if show_bar:
                bar.set_postfix(
                    {k: f"{v / counted:.3g}" for k, v in sums.items() if k in ("task", *value.terms)}
                )
            if on_step is not None:
                on_step(StepState(epoch, window[-1], global_step, float(value.total.detach())))

        # --- end of epoch: evaluate, log, schedule, stop, checkpoint ---
        sums = _mean_over_ranks(sums, world)
        row: dict[str, Any] = {"epoch": epoch + 1}
        # Means over the micro-batches that were applied (NaN when every step of the epoch was dropped).
        row.update({f"train/{k}": sums.get(k, 0.0) / counted if counted else math.nan
                    for k in [*logged_keys, *(k for k in sums if k not in logged_keys)]})  # fmt: skip
        row["train/grad_norm"] = grad_norm_total / max(optimizer_steps, 1)
        row.update({f"weight/{k}": w for k, w in objective.weights(epoch).items()})
        row.update({f"grad_norm/{k}": v / grad_norm_count for k, v in grad_norm_sums.items()})
        clean_train = evaluate(model, data, train_idx, config, scale, device, part="train")
        val = evaluate(model, data, split["val"], config, scale, device, part="val")
        row.update({f"train_eval/{k}": v for k, v in clean_train.items()})
        row.update({f"val/{k}": v for k, v in val.items()})
        for k in (k for k in val if k in clean_train):
            row[f"gap/{k}"] = clean_train[k] - val[k]
            row[f"gap_ratio/{k}"] = clean_train[k] / val[k] if val[k] else float("nan")
        row["lr"] = optimizer.param_groups[-1]["lr"]
        row["skipped_steps"] = skipped
        row["seconds"] = time.perf_counter() - started
        row = distributed.broadcast_object(row)  # every rank decides (LR, best, stop) on rank 0's numbers
        history.append(row)

        monitored = row.get(es.monitor)
        if monitored is None:
            raise ConfigError(
                f"trainer.early_stopping.monitor={es.monitor!r} is not logged; choose one of {sorted(row)}"
            )
        if scheduler is not None and tc.scheduler.name == "plateau":
            plateau_metric = row.get(tc.scheduler.monitor)
            if plateau_metric is None:
                raise ConfigError(
                    f"trainer.scheduler.monitor={tc.scheduler.monitor!r} is not logged; "
                    f"choose one of {sorted(row)}"
                )
            scheduler.step(plateau_metric)
        if _better(monitored, best.get("value"), es.resolved_mode):
            best = {"epoch": epoch + 1, "metric": es.monitor, "value": monitored}
            bad_epochs = 0
            if is_main:
                best_weights = {"model": model.state_dict(), "epoch": epoch}
                save_checkpoint(
                    {**best_weights, "config": config.model_dump(mode="json")}, run.best
                )
        else:
            bad_epochs += 1
        stopped_early = es.patience is not None and bad_epochs >= es.patience

        if is_main:  # only rank 0 writes
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else {},
                    "scaler": scaler.state_dict(),
                    "objective": objective.state_dict(),
                    "lrs": [g["lr"] for g in optimizer.param_groups],
                    "epoch": epoch,
                    "global_step": global_step,
                    "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early,
                    "history": history,
                    "best": best,
                    "overrides_log": overrides_log,
                    "rng": capture_rng(),
                    "config": config.model_dump(mode="json"),
                },
                run.last,
            )
            write_history(history, run.history)
            if events is not None:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, float | int) and math.isfinite(value):
                        events.add_scalar(key, value, epoch + 1)
                events.flush()
            if not show_bar and not quiet:
                print(_epoch_line(row, tc.epochs), file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
        if stopped_early:
            break

    if events is not None:
        events.close()
    if world > 1:
        torch.distributed.barrier()  # rank 0's checkpoints are on disk before anyone reads them
    if not is_main:
        return RunResult(run_dir, history, best, stopped_early)
    return _finish(run, model, data, split, config, history, best, stopped_early, scale, device, augment)


def _finish(
    run: RunDir,
    model: ContrastiveModel,
    data: Any,
    split: dict[str, Tensor],
    config: TrainConfig,
    history: list[dict[str, Any]],
    best: dict[str, Any],
    stopped_early: bool,
    scale: TargetScale,
    device: torch.device,
    augment: Any,
) -> RunResult:
    """Reloads the best weights, evaluates on test, saves embeddings (and two views of each split, when the
    run has views: what alignment is measured on) and metrics.json."""
    best_state = load_checkpoint(run.best)
    model.load_state_dict(best_state["model"])
    test = evaluate(model, data, split["test"], config, scale, device, part="test")
    with torch.no_grad():
        for name in ("train", "val", "test"):
            idx = split[name]
            if idx.numel() == 0:
                continue
            out = predict(model, data, idx, device)
            arrays = {"embedding": out.embedding.float().numpy(),
                      "projection": out.projection.float().numpy(), "targets": data.targets[idx].numpy()}
            if augment is not None or config.trainer.views.count > 1:  # alignment needs two views
                a, b = predict_views(model, data, idx, device, augment, config.trainer.seed)
                arrays.update(view_a=a.numpy(), view_b=b.numpy())
            with atomic_write(run.embeddings / f"{name}.npz") as handle:
                np.savez(handle, **arrays)
    final = history[-1] if history else {}
    write_json(
        {
            "best": best,
            "final": final,
            "test": test,
            "stopped_early": stopped_early,
            "epochs_run": len(history),
            "target_scale": {"mean": scale.mean, "sd": scale.sd},
        },
        run.metrics,
    )
    return RunResult(run.path, history, best, stopped_early, test, model)


def _event_writer(path: Path) -> Any:
    """A TensorBoard writer, or None (with one line saying why) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        note = "note: tensorboard is not installed; no events written (pip install tensorboard)"
        print(note, file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(path))


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """Joins the process group torchrun describes (WORLD_SIZE > 1); returns (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return distributed.rank(), distributed.world_size()


def _on_any_rank(flag: bool, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([float(flag)])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _mean_over_ranks(sums: dict[str, float], world: int) -> dict[str, float]:
    """Each rank summed its own local batches; the logged epoch means are over all ranks' batches."""
    if world == 1 or not sums:
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


def _skip_step(
    optimizer: torch.optim.Optimizer, consecutive: int, limit: int, report: Callable[[], dict[str, Any]]
) -> int:
    """Drops the step's gradients; returns the new run of consecutive skips, or stops the run at ``limit``."""
    optimizer.zero_grad(set_to_none=True)
    consecutive += 1
    if consecutive >= limit:
        raise TrainingDiverged({**report(), "consecutive_skips": consecutive})
    return consecutive


def _divergence_report(
    non_finite: list[str], outputs: list[ModelOutput], config: TrainConfig, epoch: int, step: int
) -> dict[str, Any]:
    proj = outputs[0].projection.detach().float()
    temps = [getattr(t, "temperature", None) for t in config.objective.terms().values()]
    temperature = min((t for t in temps if t is not None), default=None)
    sims = proj @ proj.T
    emb = outputs[0].embedding.detach().float()
    return {
        "epoch": epoch + 1,
        "step": step,
        "non_finite": non_finite,
        "temperature": temperature,
        "max_logit": float(sims.abs().max() / (temperature or 1.0)) if sims.numel() else float("nan"),
        "max_feature_norm": float(emb.norm(dim=-1).max()),
        "logits_finite": bool(torch.isfinite(outputs[0].logits).all()),
    }


def _progress(items: list[Any], desc: str, show: bool) -> Any:
    if not show:
        return _Quiet(items)
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, dynamic_ncols=True)


class _Quiet(list):  # type: ignore[type-arg]
    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    shown_prefixes = ("train/loss", "train/task", "val/")
    keys = [k for k in row if k.startswith(shown_prefixes) or k in ("lr", "skipped_steps")]
    shown = ", ".join(f"{k}={row[k]:.4g}" for k in keys if isinstance(row[k], float | int))
    return f"epoch {row['epoch']}/{epochs}: {shown}"
