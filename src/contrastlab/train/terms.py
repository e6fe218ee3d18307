"""The loss terms of an objective, one registry entry each: its config, what it needs, and its loss call.

A term is a :class:`Term`: ``loss(batch, cfg) -> scalar`` on the batch's outputs (:class:`BatchOutputs`),
the config class of ``objective.<name>``, and :class:`Needs`, which tell the trainer what to compute for it
(a momentum encoder and its queue, a frozen reference model, layer and token views of a text encoder, the
dataset's auxiliary targets) and tell the config what to check (class labels, two views). The trainer
composes those companions in its loop; the objective only weighs and schedules the terms.

Your own term is one call: ``register_term`` makes ``objective.<name>: {weight: ..., <your keys>}`` a term
weighted, scheduled, logged and checkpointed like the built-in ones.

>>> import torch
>>> from contrastlab.train.terms import register_term
>>> from contrastlab.train.config import TermConfig, validate
>>> class SpreadConfig(TermConfig):
...     target: float = 1.0
>>> def spread(batch, cfg):  # the mean squared distance of the projections' norms from cfg.target
...     return (batch.views[0].projection.norm(dim=-1) - cfg.target).pow(2).mean()
>>> register_term("spread", spread, config=SpreadConfig)
>>> validate({"objective": {"spread": {"weight": 0.1, "target": 0.5}}}).objective.terms()["spread"].target
0.5
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.losses import (
    clip_loss,
    focal_supcon,
    info_nce,
    margin_contrastive,
    nt_xent,
    rdrop_kl,
    similarity_protection,
    supcon,
)
from contrastlab.train.config import (
    AuxiliaryTermConfig,
    ClipTermConfig,
    ContrastiveTermConfig,
    FocalSupConTermConfig,
    LayerSupConTermConfig,
    MarginTermConfig,
    MoCoTermConfig,
    ProtectionTermConfig,
    SupConTermConfig,
    TermConfig,
    TokenSupConTermConfig,
)

if TYPE_CHECKING:
    from contrastlab.models import ModelOutput
    from contrastlab.models.text import ViewRequest

__all__ = ["BUILT_IN_TERMS", "BatchOutputs", "Needs", "Term", "get_term", "register_term", "registered_term"]


@dataclass
class BatchOutputs:
    """What one micro-batch gave: the model's outputs on each view and what the terms compare them with.

    Attributes:
        views: The V views' outputs (``projection`` (N, P) L2-normalised, ``embedding``, ``logits``,
            ``extras``); empty when the trainer skipped the views (every term's weight 0, task on clean).
        targets: The task targets (N,) (class indices, or standardised regression targets).
        labels: The class labels when the task is a classification, else None (self-supervised pairs).
        supervised: What the task loss reads: the clean input's output when the task is on it, else the views.
        keys: The momentum encoder's output on the second view (terms that need ``momentum``).
        queue: Earlier micro-batches' keys (K, P), the queue's negatives, or None while it is empty.
        reference: The frozen starting model's output on the first view (terms that need ``reference``).
        auxiliary: The dataset's auxiliary targets (N, A) (terms that need ``auxiliary``).
        gather_distributed: Under torchrun: gather every process's rows as negatives.
    """

    views: Sequence[ModelOutput]
    targets: Tensor
    labels: Tensor | None = None
    supervised: Sequence[ModelOutput] = ()
    keys: ModelOutput | None = None
    queue: Tensor | None = None
    reference: ModelOutput | None = None
    auxiliary: Tensor | None = None
    gather_distributed: bool = False

    def __post_init__(self) -> None:
        if not self.supervised:
            self.supervised = self.views


@dataclass(frozen=True)
class Needs:
    """What a term needs beyond the views' outputs.

    Attributes:
        views: The least number of views it compares (``trainer.views.count`` must reach it).
        labels: Class labels: the task must be a classification.
        momentum: A momentum copy of the model run on the second view, and a queue of its earlier keys.
        reference: A frozen copy of the starting model, run on the first view.
        auxiliary: The dataset's auxiliary targets.
        supervised: Computed on the supervised outputs (like the task), also when the views are skipped.
        text_views: The layer and token views of a text encoder that the term reads, from its config.
    """

    views: int = 1
    labels: bool = False
    momentum: bool = False
    reference: bool = False
    auxiliary: bool = False
    supervised: bool = False
    text_views: Callable[[Any, ViewRequest], None] | None = None


#: ``loss(batch, cfg)``: a scalar tensor from the batch's outputs and the term's validated config.
LossCall = Callable[[BatchOutputs, Any], Tensor]


@dataclass(frozen=True)
class Term:
    """A registry entry: the loss call, the config class of ``objective.<name>``, and what it needs."""

    loss: LossCall
    config: type[TermConfig] = TermConfig
    needs: Needs = field(default_factory=Needs)


# --- the built-in terms: how each reads the batch ----------------------------------------------------------


def _extra(output: ModelOutput, key: str) -> Tensor:
    if key not in output.extras:
        raise ValueError(f"the model gave no {key!r} view; layer and token views need a text encoder")
    return output.extras[key]


def _stacked(batch: BatchOutputs, layers: Sequence[int] = ()) -> Tensor:
    """(N, V, P): each view's projection, then (``layers``) the first view's pooled-layer projections."""
    extra = [_extra(batch.views[0], f"layer:{i}") for i in layers]
    return torch.stack([o.projection for o in batch.views] + extra, dim=1)


def _token_rows(output: ModelOutput, key: str, mask_key: str, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """Token (or cluster) views as rows with their sentence's label (its index when there are no labels)."""
    from contrastlab.views.text import flatten_views

    views = _extra(output, key)
    labels = labels if labels is not None else torch.arange(views.shape[0], device=views.device)
    return flatten_views(views, output.extras[mask_key], labels)


def _supcon(batch: BatchOutputs, cfg: SupConTermConfig) -> Tensor:
    return supcon(_stacked(batch, cfg.layers or ()), batch.labels, temperature=cfg.temperature,
                  base_temperature=cfg.base_temperature, chunk_size=cfg.chunk_size,
                  gather_distributed=batch.gather_distributed)  # fmt: skip


def _supcon_views(cfg: SupConTermConfig, request: ViewRequest) -> None:
    request.layers.update(cfg.layers or ())


def _focal_supcon(batch: BatchOutputs, cfg: FocalSupConTermConfig) -> Tensor:
    return focal_supcon(_stacked(batch), batch.labels, temperature=cfg.temperature, gamma=cfg.gamma,
                        chunk_size=cfg.chunk_size, gather_distributed=batch.gather_distributed)  # fmt: skip


def _token_supcon(batch: BatchOutputs, cfg: TokenSupConTermConfig) -> Tensor:
    key, mask = ("clusters", "clusters_mask") if cfg.select == "kmeans" else ("tokens:-1", "tokens_mask")
    rows, labels = _token_rows(batch.views[0], key, mask, batch.labels)
    return supcon(rows, labels, temperature=cfg.temperature, chunk_size=cfg.chunk_size,
                  gather_distributed=batch.gather_distributed)  # fmt: skip


def _token_views(cfg: TokenSupConTermConfig, request: ViewRequest) -> None:
    request.k = cfg.k
    if cfg.select == "kmeans":
        request.clusters = cfg.clusters
    else:
        request.token_layers.add(-1)


def _layer_supcon(batch: BatchOutputs, cfg: LayerSupConTermConfig) -> Tensor:
    total = batch.views[0].projection.new_zeros(())
    for layer in cfg.layers:
        if cfg.level == "sentence":
            rows = torch.stack([_extra(o, f"layer:{layer}") for o in batch.views], dim=1)
            labels = batch.labels
        else:
            rows, labels = _token_rows(batch.views[0], f"tokens:{layer}", "tokens_mask", batch.labels)
        total = total + supcon(rows, labels, temperature=cfg.temperature, chunk_size=cfg.chunk_size,
                               gather_distributed=batch.gather_distributed)  # fmt: skip
    return total


def _layer_views(cfg: LayerSupConTermConfig, request: ViewRequest) -> None:
    if cfg.level == "sentence":
        request.layers.update(cfg.layers)
    else:
        request.token_layers.update(cfg.layers)
        request.k = cfg.k


def _margin(batch: BatchOutputs, cfg: MarginTermConfig) -> Tensor:
    assert batch.labels is not None  # Needs(labels=True): the config checked the task
    return margin_contrastive(_stacked(batch), batch.labels, margin=cfg.margin)


def _nt_xent(batch: BatchOutputs, cfg: ContrastiveTermConfig) -> Tensor:
    return nt_xent(batch.views[0].projection, batch.views[1].projection, temperature=cfg.temperature,
                   gather_distributed=batch.gather_distributed)  # fmt: skip


def _rdrop(batch: BatchOutputs, cfg: TermConfig) -> Tensor:
    a, b = batch.views[0].logits, batch.views[1].logits
    if batch.labels is not None:  # classification: symmetric KL between the two predictive distributions
        return rdrop_kl(a, b)
    return F.mse_loss(a.float(), b.float())


def _moco(batch: BatchOutputs, cfg: MoCoTermConfig) -> Tensor:
    if batch.keys is None:
        raise ValueError("objective.moco needs the momentum encoder's output on the second view (keys)")
    return info_nce(batch.views[0].projection, batch.keys.projection.detach().float(), negatives=batch.queue,
                    temperature=cfg.temperature, chunk_size=cfg.chunk_size,
                    gather_distributed=batch.gather_distributed)  # fmt: skip


def _clip(batch: BatchOutputs, cfg: ClipTermConfig) -> Tensor:
    extras = batch.views[0].extras
    if "graph" not in extras or "text" not in extras:
        raise ValueError("objective.clip compares a two-tower model's graph and text views, and this model "
                         f"gave {sorted(extras) or 'no'} views (no text view with model.options."
                         "text_tower=false); use model.name=fusion on a paired graph+text dataset, or drop "
                         "the term: objective.clip=null")  # fmt: skip
    return clip_loss(extras["graph"], extras["text"], temperature=cfg.temperature, normalize=False,
                     chunk_size=cfg.chunk_size, gather_distributed=batch.gather_distributed)  # fmt: skip


def _protection(batch: BatchOutputs, cfg: ProtectionTermConfig) -> Tensor:
    """Similarity protection over the batch's same-identity pairs (i < j)."""
    if batch.reference is None:
        raise ValueError("objective.similarity_protection needs the reference model's output")
    assert batch.labels is not None
    e = F.normalize(batch.views[0].embedding.float(), dim=-1)
    r = F.normalize(batch.reference.embedding.float(), dim=-1)
    y = batch.labels
    pairs = (y[:, None] == y[None, :]).triu(1)
    if not bool(pairs.any()):
        return e.sum() * 0.0  # no two samples of one identity in this batch
    return similarity_protection((e @ e.T)[pairs], (r @ r.T)[pairs], margin=cfg.margin)


def _auxiliary(batch: BatchOutputs, cfg: AuxiliaryTermConfig) -> Tensor:
    """MSE of the auxiliary head against the auxiliary targets, averaged over the supervised outputs."""
    if batch.auxiliary is None or any(o.auxiliary is None for o in batch.supervised):
        raise ValueError("objective.auxiliary needs a model with an auxiliary head and the dataset's "
                         "auxiliary targets (e.g. fashion_mnist with pose_degrees > 0)")  # fmt: skip
    target = batch.auxiliary.float()
    return torch.stack([F.mse_loss(o.auxiliary.float(), target)  # type: ignore[union-attr]
                        for o in batch.supervised]).mean()  # fmt: skip


#: The built-in terms, in the order they are evaluated and logged. Each name is a field of ObjectiveConfig
#: typed with the entry's config class (tests/train/test_terms.py checks that they agree).
_BUILT_IN: dict[str, Term] = {
    "supcon": Term(_supcon, SupConTermConfig, Needs(text_views=_supcon_views)),
    "focal_supcon": Term(_focal_supcon, FocalSupConTermConfig),
    "margin": Term(_margin, MarginTermConfig, Needs(labels=True)),
    "nt_xent": Term(_nt_xent, ContrastiveTermConfig, Needs(views=2)),
    "rdrop": Term(_rdrop, TermConfig, Needs(views=2)),
    "moco": Term(_moco, MoCoTermConfig, Needs(views=2, momentum=True)),
    "token_supcon": Term(_token_supcon, TokenSupConTermConfig, Needs(text_views=_token_views)),
    "layer_supcon": Term(_layer_supcon, LayerSupConTermConfig, Needs(text_views=_layer_views)),
    "similarity_protection": Term(_protection, ProtectionTermConfig, Needs(labels=True, reference=True)),
    "clip": Term(_clip, ClipTermConfig),
    "auxiliary": Term(_auxiliary, AuxiliaryTermConfig, Needs(auxiliary=True, supervised=True)),
}

#: The built-in terms' names (ObjectiveConfig's fields); a registered term may not take one.
BUILT_IN_TERMS = tuple(_BUILT_IN)

_REGISTERED: dict[str, Term] = {}


def register_term(name: str, loss: LossCall, *, config: type[TermConfig] | None = None,
                  needs: Needs | None = None) -> None:  # fmt: skip
    """Registers a loss term under ``objective.<name>``.

    Args:
        name: The config key (not a built-in term's name).
        loss: ``loss(batch, cfg) -> scalar tensor``; ``batch`` is a :class:`BatchOutputs` (``batch.views``:
            the V views' ModelOutputs with ``projection``, ``embedding``, ``logits``; ``batch.labels``: the
            class labels or None), ``cfg`` the term's validated config.
        config: A subclass of ``TermConfig`` with your keys and their defaults (``weight``, ``schedule``
            and ``auto_ratio`` come with it); default: TermConfig itself.
        needs: What the term needs beyond the views (:class:`Needs`): e.g. ``Needs(views=2)`` makes a recipe
            with one view an error naming the term, ``Needs(labels=True)`` a regression task one.

    Registering a name again replaces it, with a warning (a notebook re-running its cell).

    Raises:
        ValueError: a built-in term's name, or a config that is not a TermConfig.
    """
    if name in _BUILT_IN:
        raise ValueError(f"register_term: {name!r} is a built-in term; choose another name")
    config = config or TermConfig
    if not (isinstance(config, type) and issubclass(config, TermConfig)):
        raise ValueError(f"register_term: config must be a subclass of TermConfig, got {config!r}")
    if not callable(loss):
        raise ValueError(f"register_term: loss must be callable as loss(batch, cfg), got {loss!r}")
    if name in _REGISTERED:
        warnings.warn(f"register_term: {name!r} was registered already; the new term replaces it",
                      stacklevel=2)  # fmt: skip
    _REGISTERED[name] = Term(loss, config, needs or Needs())


def registered_term(name: str) -> Term | None:
    """The term registered under ``name`` with :func:`register_term`, or None."""
    return _REGISTERED.get(name)


def get_term(name: str) -> Term:
    """The built-in or registered term called ``name``.

    Raises:
        KeyError: no such term.
    """
    found = _BUILT_IN.get(name) or _REGISTERED.get(name)
    if found is None:
        raise KeyError(f"no objective term named {name!r}")
    return found
