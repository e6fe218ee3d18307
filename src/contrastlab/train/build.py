"""From a config to the objects a run needs: the data with its split and target scale (``split.py``), the
model (built-in or yours), the optimiser and its schedule (``optim.py``), the batch sampler,
augmentations, the objective and the companions its terms need (a momentum encoder and its queue, a frozen
reference), and the model inputs of a batch. :func:`build_parts` calls
them in order and gives the loop (``loop.py``) everything it trains with, as :class:`Parts`.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from contrastlab import distributed
from contrastlab.data import ClassBalancedBatchSampler, RandomBatchSampler, get_dataset
from contrastlab.losses import MemoryQueue, momentum_copy
from contrastlab.models import ContrastiveModel, ModelOutput, build_model
from contrastlab.train.checkpoint import CheckpointError, load_checkpoint
from contrastlab.train.config import TrainConfig, TrainerConfig
from contrastlab.train.objective import CLASSIFICATION_TASKS, Objective
from contrastlab.train.optim import make_scheduler, param_groups
from contrastlab.train.rundir import RunDir
from contrastlab.train.split import TargetScale, make_split
from contrastlab.train.terms.moco import MoCoTermConfig

__all__ = [
    "Parts",
    "augment_view",
    "batch_inputs",
    "build_parts",
    "check_batch_size",
    "check_task",
    "forward_views",
    "load_pretrained_encoder",
    "make_augmentation",
    "make_model",
    "make_sampler",
    "own_model",
    "seed_everything",
    "view_generator",
]


@dataclass
class Parts:
    """Everything the loop trains with, built once per run (:func:`build_parts`).

    ``momentum`` (a frozen copy of the model that follows it by an exponential moving average), ``queue``
    (its earlier keys) and ``reference`` (a frozen copy of the starting model) exist when a configured term
    needs them (:class:`~contrastlab.train.terms.Needs`); the loop runs them and updates them.
    """

    data: Any
    split: dict[str, Tensor]
    scale: TargetScale
    augment: Any
    model: ContrastiveModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    sampler: Any
    objective: Objective
    momentum: nn.Module | None
    momentum_rate: float
    queue: MemoryQueue | None
    reference: nn.Module | None
    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int
    world: int

    def __post_init__(self) -> None:
        self.train_idx = self.split["train"]
        self.local_batch = self.sampler.batch_size // self.world
        self.classifying = self.data.task == "classification"
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.encoder_params = [p for n, p in self.model.named_parameters()
                               if n.startswith("encoder.") and p.requires_grad]  # fmt: skip


def build_parts(config: TrainConfig, device: torch.device, rank: int, world: int,
                encoder: nn.Module | None = None, dataset: Any = None) -> Parts:  # fmt: skip
    """Builds a run from its config (seeded first, so every arm of a comparison gets the same split and the
    same initial weights); ``encoder`` and ``dataset`` replace ``model.name`` and ``data.name``.

    Raises:
        ValueError: a batch that does not divide over the processes, auto-λ on several processes, a sampler,
            task or term that does not fit the data or model (each naming the keys to change).
    """
    tc = config.trainer
    if tc.batch_size % world:
        raise ValueError(f"trainer.batch_size={tc.batch_size} must divide evenly over {world} processes")
    adaptive = [n for n, t in config.objective.terms().items() if t.auto_ratio is not None]
    if world > 1 and adaptive:
        raise ValueError(
            f"objective term(s) {adaptive} set auto_ratio, which adapts λ from per-term gradient norms "
            "measured on one process only; run on one process or fix their weights"
        )
    seed_everything(tc.resolved_init_seed)
    # Data: the split depends only on the data config, so every arm of a comparison sees the same rows.
    data = dataset if dataset is not None else get_dataset(config.data.name, **config.data.options)
    check_task(config, data)
    split = make_split(config, data)
    train_idx = split["train"]
    scale = TargetScale.fit(config, data, train_idx)
    augment = make_augmentation(config, data)

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
    check_batch_size(tc.batch_size, int(train_idx.shape[0]), world)
    sampler = make_sampler(tc, data, train_idx)
    steps_per_epoch = max(1, math.ceil(len(sampler) / tc.accumulate))
    # Under torchrun each rank holds 1/W of every batch: the gradients are averaged over ranks once per
    # optimiser step and the contrastive terms gather negatives from every rank, which together give
    # exactly the single-process gradient (distributed.average_gradients says why not DDP's reducer).
    distributed.broadcast_module(model)

    # Class labels reach the terms whenever the data has them, also without a task head (SupCon alone).
    objective = Objective(config.objective, classification=data.task == "classification")
    # The companions the terms need, copied from the model as it starts (before it is asked for text views).
    needs = objective.needs
    moco = config.objective.terms().get("moco")
    moco = moco if isinstance(moco, MoCoTermConfig) else MoCoTermConfig()
    momentum = queue = None
    if needs.momentum:
        momentum = momentum_copy(model)
        last = model.projection[-1]
        assert isinstance(last, nn.Linear)
        queue = MemoryQueue(moco.queue_size, last.out_features)
    reference = copy.deepcopy(model).eval().requires_grad_(False) if needs.reference else None
    request = objective.view_request()
    if request:
        if not hasattr(model.encoder, "request_views"):
            raise ValueError(
                "objective.supcon.layers, objective.token_supcon and objective.layer_supcon read layer and "
                f"token views of a text encoder (model.name=transformer), which model.name="
                f"{config.model.name!r} is not"
            )
        model.encoder.request_views(request)  # type: ignore[operator]
    return Parts(
        data=data, split=split, scale=scale, augment=augment, model=model, optimizer=optimizer,
        scheduler=make_scheduler(optimizer, tc, steps_per_epoch),
        scaler=torch.amp.GradScaler(device.type, enabled=tc.amp == "fp16"), sampler=sampler,
        objective=objective, momentum=momentum, momentum_rate=moco.momentum, queue=queue, reference=reference,
        device=device, amp_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp), rank=rank,
        world=world,
    )  # fmt: skip


def make_sampler(tc: TrainerConfig, data: Any, train_idx: Tensor) -> Any:
    """The batches of the training rows: class-balanced (``m_per_class`` rows of each class drawn) or
    random, in the order the run's order seed fixes."""
    if tc.sampler.name == "class_balanced":
        if data.task != "classification":
            raise ValueError("trainer.sampler.name=class_balanced needs a classification dataset")
        return ClassBalancedBatchSampler(data.targets[train_idx], tc.batch_size, tc.sampler.m_per_class,
                                         seed=tc.resolved_order_seed)  # fmt: skip
    return RandomBatchSampler(train_idx.shape[0], tc.batch_size, seed=tc.resolved_order_seed)


def check_batch_size(batch_size: int, train_rows: int, world: int = 1) -> None:
    """An epoch has ``train_rows // batch_size`` batches: the last partial batch is dropped (contrastive
    losses and ``gather_distributed`` want equal batches), so a batch larger than the training set would
    make epochs with no optimiser step.

    Raises:
        ValueError: naming ``trainer.batch_size``, the training rows and the largest batch that trains.

    Example:
        >>> try:
        ...     check_batch_size(512, 480)
        ... except ValueError as error:
        ...     print(str(error).split(";")[-1])
         the largest batch that trains is 480
    """
    if batch_size > train_rows:
        largest = train_rows - train_rows % world
        raise ValueError(
            f"trainer.batch_size={batch_size} is larger than the {train_rows} training rows, so an epoch "
            "would have no optimiser step (the last partial batch of an epoch is dropped); the largest batch "
            f"that trains is {largest}" + (f" (a multiple of the {world} processes)" if world > 1 else "")
        )


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
    if extra.get("descriptors", ...) is None:  # written out as null: no descriptors
        del extra["descriptors"]
    if "descriptors" in extra:
        extra["num_descriptors"] = _descriptors(config, data, extra.pop("descriptors"))
    if config.model.name == "convnet":
        if getattr(data, "image_shape", None) is None:
            raise ValueError(
                f"model.name='convnet' needs rows that are images; dataset {config.data.name!r} has no "
                "image_shape (an ArrayDataset's image_shape=(C, H, W) declares one)"
            )
        extra["image_shape"] = data.image_shape
    num_auxiliary = 0
    if "auxiliary" in config.objective.terms():
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
        example=lambda: batch_inputs(data, torch.arange(2), torch.device("cpu")),  # for a width it chooses
        **extra,
    )
    if hasattr(data, "tokenize"):
        data.tokenize(model.encoder.tokenizer, model.encoder.max_length)  # cached per tokenizer and length
    return model


def _descriptors(config: TrainConfig, data: Any, kind: Any) -> int:
    """Adds ``model.options.descriptors`` (a kind or a list of kinds) to a molecule dataset; the width the
    model reads."""
    from contrastlab.data.molecules import descriptor_kinds

    peptides = getattr(data, "kind", None) == "sequence"
    strings: Literal["smiles", "sequence"] = "sequence" if peptides else "smiles"
    kinds = descriptor_kinds(kind, strings=strings, where="model.options.descriptors")
    if config.model.name != "gine":
        raise ValueError(f"model.options.descriptors is read by GINE's readout (model.name=gine), not by "
                         f"model.name={config.model.name!r}")  # fmt: skip
    if not hasattr(data, "add_descriptors"):
        raise ValueError(f"model.options.descriptors needs molecules; dataset {config.data.name!r} has none")
    if config.trainer.views.augment is not None:
        raise ValueError(
            "model.options.descriptors with trainer.views.augment: every view of a molecule would carry the "
            "same descriptors, so a contrastive term could match views by them alone; use descriptors in "
            "supervised recipes (fine-tuning a pretrained encoder without them)"
        )
    return int(data.add_descriptors(kinds))


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
    targets = getattr(data, "targets", None)
    if config.objective.task != "none" and isinstance(targets, Tensor) and targets.is_floating_point():
        missing = ~torch.isfinite(targets)
        if bool(missing.any()):
            first, count = int(missing.nonzero()[0]) + 1, int(missing.sum())
            raise ValueError(
                f"objective.task={config.objective.task!r} needs a label on every row, but {count} of the "
                f"{targets.numel()} targets of dataset {data.name!r} are NaN or infinite (the first in row "
                f"{first}); fill or drop those rows, or pretrain without labels: objective.task: none"
            )


def load_pretrained_encoder(model: ContrastiveModel, source: str | Path) -> None:
    """Copies the encoder weights of a pretrained run (its directory: best weights) or checkpoint file. A
    module of the encoder with an ``adapt_pretrained(state, prefix)`` method first adapts the pretrained
    state to itself: a graph encoder fine-tuned with descriptors (``model.options.descriptors``) loads one
    pretrained without them, the descriptors' weights starting at zero (``GraphPooling.adapt_pretrained``).

    Raises:
        CheckpointError: no checkpoint there.
        ValueError: the checkpoint's encoder does not match this model's (names the first mismatch).
    """
    path = Path(source)
    if path.is_dir():
        path = RunDir(path).best
    state = load_checkpoint(path).get("model")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no model weights; model.init_from takes a run directory or the "
                              "checkpoint of one")  # fmt: skip
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    # a module may take a pretrained state of another shape (under each of its names: the state has them all)
    for name, module in model.encoder.named_modules(remove_duplicate=False):
        adapt = getattr(module, "adapt_pretrained", None)
        if callable(adapt):
            adapt(encoder, f"{name}." if name else "")
    try:
        model.encoder.load_state_dict(encoder)
    except RuntimeError as e:  # torch lists missing and unexpected keys, then each shape mismatch
        problems = [line.strip() for line in str(e).splitlines()[1:] if line.strip()] or [str(e)]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(
            f"model.init_from={str(source)!r}: its encoder does not match this model's: {problems[0]}{more}; "
            "use the same model settings"
        ) from e


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
    """One augmented view of a batch (image rows, or a collated graph batch: all at once; the batch is not
    modified)."""
    from contrastlab.views.image import ImageViews

    if isinstance(augment, ImageViews):
        return augment(batch, generator)
    from contrastlab.views.graph import augment_batch

    return augment_batch(augment, batch, generator)


def view_generator(seed: int, epoch: int, step: int, view: int) -> torch.Generator:
    """The generator of one view's augmentations: a function of (seed, epoch, step, view) only, so a
    resumed run draws exactly the views an uninterrupted one would."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + step) * 17 + view)


def make_augmentation(config: TrainConfig, data: Any) -> Any:
    """The configured view augmentation, or None: image augmentations (contrastlab.views.image) for a
    dataset whose rows are images (its ``image_shape``), graph augmentations for graphs; refused up front
    for other data."""
    spec = config.trainer.views.augment
    if spec is None:
        return None
    shape = getattr(data, "image_shape", None)
    if shape is not None:
        from contrastlab.views.image import ImageViews, build_image_augmentation

        return ImageViews(build_image_augmentation(spec, "trainer.views.augment"), shape)
    if not hasattr(data, "num_edge_features") or hasattr(data, "tokenize"):
        raise ValueError(
            f"trainer.views.augment needs graph or image inputs; dataset {data.name!r} is neither (text "
            "views come from dropout (trainer.views.count), layers and tokens: see objective.token_supcon; a "
            "paired graph+text sample's second view is its other modality: see objective.clip)"
        )
    from contrastlab.views.graph import build_augmentation

    return build_augmentation(spec, "trainer.views.augment")


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
