"""An objective: a task loss plus named weighted terms, ``task + Σ_k λ_k(epoch) · term_k``.

Each term is a contrastlab loss fed from the model outputs of the V views of a batch. Terms with weight 0
are still evaluated (without gradient) so that a baseline run logs what the term would have been: the
curves of both arms of a comparison then show the same quantities.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab import distributed
from contrastlab.losses import (
    MemoryQueue,
    clip_loss,
    focal_supcon,
    info_nce,
    margin_contrastive,
    momentum_copy,
    momentum_update,
    nt_xent,
    rdrop_kl,
    similarity_protection,
    supcon,
)
from contrastlab.models import ContrastiveModel, ModelOutput

if TYPE_CHECKING:
    from contrastlab.models.text import ViewRequest
from contrastlab.train.config import (
    ClipTermConfig,
    FocalSupConTermConfig,
    LayerSupConTermConfig,
    MarginTermConfig,
    ObjectiveConfig,
    ScheduleConfig,
    SupConTermConfig,
    TermConfig,
    TokenSupConTermConfig,
)
from contrastlab.train.terms import registered_term

__all__ = ["Objective", "ObjectiveValue", "scheduled_weight", "task_loss"]

TermFn = Callable[[Sequence[ModelOutput], Tensor | None], Tensor]
CLASSIFICATION_TASKS = ("cross_entropy", "focal", "arcface", "cosface")


def scheduled_weight(weight: float, schedule: ScheduleConfig, epoch: int) -> float:
    """λ at ``epoch`` (0-based) under ``schedule``.

    Example:
        >>> from contrastlab.train.config import ScheduleConfig
        >>> warmup = ScheduleConfig(kind="linear_warmup", warmup_epochs=4)
        >>> [scheduled_weight(0.5, warmup, e) for e in range(5)]
        [0.125, 0.25, 0.375, 0.5, 0.5]
        >>> [scheduled_weight(1.0, ScheduleConfig(kind="start_at", start_epoch=2), e) for e in range(4)]
        [0.0, 0.0, 1.0, 1.0]
    """
    if schedule.kind == "constant":
        return weight
    if schedule.kind == "start_at":
        return weight if epoch >= schedule.start_epoch else 0.0
    if schedule.kind == "linear_warmup":
        if schedule.warmup_epochs == 0:
            return weight
        return weight * min(1.0, (epoch + 1) / schedule.warmup_epochs)
    # cosine_ramp: 0 before start_epoch, then a half cosine up to λ over warmup_epochs
    if epoch < schedule.start_epoch:
        return 0.0
    if schedule.warmup_epochs == 0:
        return weight
    progress = min(1.0, (epoch - schedule.start_epoch + 1) / schedule.warmup_epochs)
    return weight * (1.0 - math.cos(math.pi * progress)) / 2.0


def task_loss(cfg: ObjectiveConfig, logits: Tensor, targets: Tensor) -> Tensor:
    """The supervised loss on one view's logits, in float32.

    Shape:
        - logits: (N, C) for classification, (N, 1) for regression; targets: (N,).
    """
    logits = logits.float()
    if cfg.task == "cross_entropy":
        return F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
    if cfg.task == "focal":
        # Lin et al. 2017: -(1 - p_t)^γ log p_t, with label smoothing folded into the target distribution.
        log_p = F.log_softmax(logits, dim=-1)  # (N, C)
        n_classes = logits.shape[-1]
        target = F.one_hot(targets, n_classes).float()
        target = target * (1 - cfg.label_smoothing) + cfg.label_smoothing / n_classes
        focal = (1 - log_p.exp()).pow(cfg.focal_gamma)
        return -(target * focal * log_p).sum(dim=-1).mean()
    if cfg.task in ("arcface", "cosface"):
        margins = margin_logits(cfg, logits, targets)
        return F.cross_entropy(margins, targets, label_smoothing=cfg.label_smoothing)
    prediction = logits.squeeze(-1)
    if cfg.task == "mse":
        return F.mse_loss(prediction, targets.float())
    if cfg.task == "l1":
        return F.l1_loss(prediction, targets.float())
    return logits.sum() * 0.0  # "none": pretraining on the terms alone


def margin_logits(cfg: ObjectiveConfig, cosine: Tensor, targets: Tensor) -> Tensor:
    """ArcFace (Deng et al. 2019): s·cos(θ_y + m) for the true class; CosFace (Wang et al. 2018):
    s·(cos θ_y - m); s·cos θ for the others.

    The cosine is clamped inside (-1, 1) before the arccos-free ArcFace identity
    cos(θ + m) = cos θ cos m - sin θ sin m, so sin θ = sqrt(1 - cos²θ) and its gradient stay finite; past
    θ = π - m, where θ + m would wrap around and raise the logit, ArcFace's usual linear fallback
    cos θ - m sin m keeps it decreasing.

    Shape:
        - cosine: (N, C) in [-1, 1] (a cosine head's logits); targets: (N,); returns (N, C).
    """
    cos = cosine.float().clamp(-1.0 + 1e-7, 1.0 - 1e-7)
    target = F.one_hot(targets, cos.shape[-1]).bool()
    if cfg.task == "arcface":
        m = 0.5 if cfg.face_margin is None else cfg.face_margin
        sin = (1.0 - cos.pow(2)).sqrt()
        shifted = cos * math.cos(m) - sin * math.sin(m)
        shifted = torch.where(cos > math.cos(math.pi - m), shifted, cos - math.sin(math.pi - m) * m)
    else:
        m = 0.35 if cfg.face_margin is None else cfg.face_margin
        shifted = cos - m
    return cfg.face_scale * torch.where(target, shifted, cos)


def _views(outputs: Sequence[ModelOutput], layers: Sequence[int] | None = None) -> Tensor:
    """(N, V, P): each view's projection, then (``layers``) the first view's pooled-layer projections."""
    extra = [_extra(outputs[0], f"layer:{i}") for i in layers or ()]
    return torch.stack([o.projection for o in outputs] + extra, dim=1)


def _extra(output: ModelOutput, key: str) -> Tensor:
    if key not in output.extras:
        raise ValueError(f"the model gave no {key!r} view; layer and token views need a text encoder")
    return output.extras[key]


def _token_rows(output: ModelOutput, key: str, mask_key: str, y: Tensor | None) -> tuple[Tensor, Tensor]:
    """Token (or cluster) views as rows with their sentence's label (its index when there are no labels)."""
    from contrastlab.views.text import flatten_views

    views = _extra(output, key)
    labels = y if y is not None else torch.arange(views.shape[0], device=views.device)
    return flatten_views(views, output.extras[mask_key], labels)


def _term_fn(name: str, term: TermConfig, task: str, gather: bool) -> TermFn:
    classification = task in CLASSIFICATION_TASKS

    def labels_for(y: Tensor | None) -> Tensor | None:
        return y if classification else None

    if name == "supcon":
        assert isinstance(term, SupConTermConfig)
        return lambda outs, y: supcon(
            _views(outs, term.layers),
            labels_for(y),
            temperature=term.temperature,
            base_temperature=term.base_temperature,
            chunk_size=term.chunk_size,
            gather_distributed=gather,
        )
    if name == "token_supcon":
        assert isinstance(term, TokenSupConTermConfig)
        key, mask = ("clusters", "clusters_mask") if term.select == "kmeans" else ("tokens:-1", "tokens_mask")

        def token_term(outs: Sequence[ModelOutput], y: Tensor | None) -> Tensor:
            rows, labels = _token_rows(outs[0], key, mask, labels_for(y))
            return supcon(rows, labels, temperature=term.temperature, chunk_size=term.chunk_size,
                          gather_distributed=gather)  # fmt: skip

        return token_term
    if name == "layer_supcon":
        assert isinstance(term, LayerSupConTermConfig)

        def layer_term(outs: Sequence[ModelOutput], y: Tensor | None) -> Tensor:
            total = outs[0].projection.new_zeros(())
            for layer in term.layers:
                if term.level == "sentence":
                    views = torch.stack([_extra(o, f"layer:{layer}") for o in outs], dim=1)
                    total = total + supcon(views, labels_for(y), temperature=term.temperature,
                                           chunk_size=term.chunk_size, gather_distributed=gather)  # fmt: skip
                else:
                    rows, labels = _token_rows(outs[0], f"tokens:{layer}", "tokens_mask", labels_for(y))
                    total = total + supcon(rows, labels, temperature=term.temperature,
                                           chunk_size=term.chunk_size, gather_distributed=gather)  # fmt: skip
            return total

        return layer_term
    if name == "focal_supcon":
        assert isinstance(term, FocalSupConTermConfig)
        return lambda outs, y: focal_supcon(
            _views(outs),
            labels_for(y),
            temperature=term.temperature,
            gamma=term.gamma,
            chunk_size=term.chunk_size,
            gather_distributed=gather,
        )
    if name == "margin":
        assert isinstance(term, MarginTermConfig)
        if not classification:
            raise ValueError("objective.margin needs class labels; the task is not a classification")
        def margin_term(outs: Sequence[ModelOutput], y: Tensor | None) -> Tensor:
            assert y is not None
            return margin_contrastive(_views(outs), y, margin=term.margin)

        return margin_term
    if name == "nt_xent":
        t = getattr(term, "temperature", 0.1)
        return lambda outs, y: nt_xent(
            outs[0].projection, outs[1].projection, temperature=t, gather_distributed=gather
        )
    if name == "clip":
        assert isinstance(term, ClipTermConfig)

        def clip_term(outs: Sequence[ModelOutput], y: Tensor | None) -> Tensor:
            if "graph" not in outs[0].extras or "text" not in outs[0].extras:
                raise ValueError("objective.clip compares a two-tower model's graph and text views; "
                                 "use model.name=fusion on a paired graph+text dataset")  # fmt: skip
            graph, text = outs[0].extras["graph"], outs[0].extras["text"]  # L2-normalised already
            return clip_loss(graph, text, temperature=term.temperature, normalize=False,
                             chunk_size=term.chunk_size, gather_distributed=gather)  # fmt: skip

        return clip_term
    registered = registered_term(name)
    if registered is not None:
        user_fn = registered[0]
        return lambda outs, y: user_fn(outs, labels_for(y), term)
    if name == "rdrop":
        if classification:
            return lambda outs, y: rdrop_kl(outs[0].logits, outs[1].logits)
        return lambda outs, y: F.mse_loss(outs[0].logits.float(), outs[1].logits.float())
    raise KeyError(f"no objective term named {name!r}")  # pragma: no cover - the config forbids it


@dataclass
class ObjectiveValue:
    """One batch's objective: the total to optimise and every part, unweighted, for logging."""

    total: Tensor
    task: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, float]
    non_finite: list[str] = field(default_factory=list)


class Objective:
    """``task + Σ_k λ_k(epoch) · term_k`` built from an :class:`ObjectiveConfig`.

    ``base_weights`` start at the configured weights; automatic λ (``auto_ratio``) rescales them in
    :meth:`adapt` and they are part of the checkpointed state. A ``moco`` term owns a momentum copy of
    ``model`` (``key_model``, which the trainer runs on the second view) and the queue of keys; call
    :meth:`enqueue` with every micro-batch's keys after its loss, and :meth:`after_step` after every
    optimiser step to move the copy.
    """

    def __init__(
        self, cfg: ObjectiveConfig, *, gather_distributed: bool = False, model: ContrastiveModel | None = None
    ) -> None:
        self.cfg = cfg
        self.term_cfgs = cfg.terms()
        self.gather = gather_distributed
        self.fns = {
            name: _term_fn(name, t, cfg.task, gather_distributed)
            for name, t in self.term_cfgs.items()
            if name not in ("moco", "similarity_protection", "auxiliary")
        }
        self.base_weights = {name: t.weight for name, t in self.term_cfgs.items()}
        self.key_model: nn.Module | None = None
        self.queue: MemoryQueue | None = None
        if cfg.moco is not None:
            if model is None:
                raise ValueError("objective.moco needs the model, to make its momentum copy (model=)")
            self.key_model = momentum_copy(model)
            last = model.projection[-1]
            assert isinstance(last, nn.Linear)
            self.queue = MemoryQueue(cfg.moco.queue_size, last.out_features)
        self.reference_model: nn.Module | None = None
        if cfg.similarity_protection is not None:
            if model is None:
                raise ValueError("objective.similarity_protection needs the starting model (model=)")
            self.reference_model = copy.deepcopy(model).eval().requires_grad_(False)

    def _protection(
        self, outputs: Sequence[ModelOutput], targets: Tensor, reference: ModelOutput | None
    ) -> Tensor:
        """Similarity protection over the batch's same-identity pairs (i < j)."""
        term = self.cfg.similarity_protection
        assert term is not None
        if reference is None:
            raise ValueError("objective.similarity_protection needs the reference model's output")
        e = F.normalize(outputs[0].embedding.float(), dim=-1)
        r = F.normalize(reference.embedding.float(), dim=-1)
        n = e.shape[0]
        pairs = (targets[:, None] == targets[None, :]) & torch.ones(n, n, dtype=torch.bool,
                                                                     device=e.device).triu(1)  # fmt: skip
        if not bool(pairs.any()):
            return e.sum() * 0.0  # no two samples of one identity in this batch
        return similarity_protection((e @ e.T)[pairs], (r @ r.T)[pairs], margin=term.margin)

    @staticmethod
    def _auxiliary(outputs: Sequence[ModelOutput], targets: Tensor | None) -> Tensor:
        """MSE of the auxiliary head against the auxiliary targets, averaged over the supervised outputs."""
        if targets is None or any(o.auxiliary is None for o in outputs):
            raise ValueError("objective.auxiliary needs a model with an auxiliary head and the dataset's "
                             "auxiliary targets (e.g. fashion_mnist with pose_degrees > 0)")  # fmt: skip
        return torch.stack([F.mse_loss(o.auxiliary.float(), targets.float())  # type: ignore[union-attr]
                            for o in outputs]).mean()  # fmt: skip

    def view_request(self) -> ViewRequest:
        """The extra views (layers, tokens, clusters) this objective's terms read from a text encoder."""
        from contrastlab.models.text import ViewRequest

        request = ViewRequest()
        cfg = self.cfg
        if cfg.supcon is not None and cfg.supcon.layers:
            request.layers.update(cfg.supcon.layers)
        if cfg.token_supcon is not None:
            request.k = cfg.token_supcon.k
            if cfg.token_supcon.select == "kmeans":
                request.clusters = cfg.token_supcon.clusters
            else:
                request.token_layers.add(-1)
        if cfg.layer_supcon is not None:
            if cfg.layer_supcon.level == "sentence":
                request.layers.update(cfg.layer_supcon.layers)
            else:
                request.token_layers.update(cfg.layer_supcon.layers)
                request.k = cfg.layer_supcon.k
        return request

    def _moco(self, outputs: Sequence[ModelOutput], keys: ModelOutput | None) -> Tensor:
        term = self.cfg.moco
        assert term is not None and self.queue is not None
        if keys is None:
            raise ValueError("objective.moco needs the momentum encoder's outputs on the second view (keys=)")
        k = keys.projection.detach().float()
        negatives = self.queue.keys.to(k.device) if len(self.queue) else None
        return info_nce(
            outputs[0].projection, k, negatives=negatives, temperature=term.temperature,
            chunk_size=term.chunk_size, gather_distributed=self.gather,
        )  # fmt: skip

    @torch.no_grad()
    def enqueue(self, keys: ModelOutput | None) -> None:
        """MoCo: adds one micro-batch's keys (the momentum model's projections) to the queue, after the loss
        that used the queue (as in the paper); every rank's keys under DDP. A no-op without MoCo."""
        if self.queue is None or keys is None:
            return
        k = keys.projection.detach().float()
        self.queue.enqueue(distributed.all_gather(k) if self.gather else k)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """MoCo after an optimiser step: the momentum copy moves toward the model."""
        if self.key_model is None or self.cfg.moco is None:
            return
        momentum_update(self.key_model, model, momentum=self.cfg.moco.momentum)

    def weights(self, epoch: int) -> dict[str, float]:
        return {
            name: scheduled_weight(self.base_weights[name], t.schedule, epoch)
            for name, t in self.term_cfgs.items()
        }

    def __call__(
        self,
        outputs: Sequence[ModelOutput],
        targets: Tensor,
        epoch: int,
        keys: ModelOutput | None = None,
        clean: ModelOutput | None = None,
        reference: ModelOutput | None = None,
        auxiliary: Tensor | None = None,
    ) -> ObjectiveValue:
        """Evaluates the objective on the V views' outputs of one batch.

        The task loss is on ``clean`` (the unaugmented input's output) when given, otherwise averaged over
        the views (R-Drop's convention: every pass is supervised). ``keys``: the momentum model's output on
        view 2, for ``moco``; ``reference``: the frozen starting model's output on the first view's input,
        for ``similarity_protection``; ``auxiliary``: the batch's auxiliary targets (N, A), for the
        ``auxiliary`` head's term (supervised like the task, on the same outputs). With no view outputs (the
        trainer skips the views while every term's weight is 0 and the task is on ``clean``) the contrastive
        terms are not evaluated.
        """
        supervised = [clean] if clean is not None else outputs
        task = torch.stack([task_loss(self.cfg, o.logits, targets) for o in supervised]).mean()
        weights = self.weights(epoch)
        total = task
        terms: dict[str, Tensor] = {}
        fns: dict[str, Callable[[], Tensor]] = {
            name: functools.partial(fn, outputs, targets) for name, fn in self.fns.items()
        }
        if self.cfg.moco is not None:
            fns["moco"] = lambda: self._moco(outputs, keys)
        if self.cfg.similarity_protection is not None:
            fns["similarity_protection"] = lambda: self._protection(outputs, targets, reference)
        if not outputs:
            fns = {}
        if self.cfg.auxiliary is not None:  # supervised, like the task: on the same outputs
            fns["auxiliary"] = lambda: self._auxiliary(supervised, auxiliary)
        for name, compute in fns.items():
            if weights[name] > 0:
                terms[name] = compute()
                total = total + weights[name] * terms[name]
            else:
                with torch.no_grad():  # logged for comparison, not optimised
                    terms[name] = compute()
        parts = {"task": task, **terms}
        non_finite = [name for name, value in parts.items() if not bool(torch.isfinite(value))]
        return ObjectiveValue(total, task, terms, weights, non_finite)

    def adapt(self, ratios: dict[str, float]) -> None:
        """Moves each auto-λ term's weight toward its target gradient-norm ratio (damped: x0.5..x2)."""
        for name, ratio in ratios.items():
            target = self.term_cfgs[name].auto_ratio
            if target is None or ratio <= 0 or not math.isfinite(ratio):
                continue
            self.base_weights[name] *= min(2.0, max(0.5, target / ratio))

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"weights": dict(self.base_weights)}
        if self.key_model is not None and self.queue is not None:
            state["key_model"] = self.key_model.state_dict()
            state["queue"] = self.queue.state_dict()
        if self.reference_model is not None:
            state["reference_model"] = self.reference_model.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], *, configured: Set[str] = frozenset()) -> None:
        """Restores adapted weights (except those of the terms named in ``configured``: a resume that sets
        their weight, where the config wins) and MoCo's momentum model and queue."""
        weights = state["weights"]
        kept = {k: v for k, v in weights.items() if k in self.base_weights and k not in configured}
        self.base_weights.update(kept)
        if self.key_model is not None and self.queue is not None and "key_model" in state:
            self.key_model.load_state_dict(state["key_model"])
            self.queue.load_state_dict(state["queue"])
        if self.reference_model is not None and "reference_model" in state:
            self.reference_model.load_state_dict(state["reference_model"])  # the start, not the resume point
