"""The model contract the trainer relies on."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.errors import UnknownNameError

__all__ = [
    "ContrastiveModel",
    "EncoderOutput",
    "ModelOutput",
    "build_model",
    "check_encoder_output",
    "model_names",
    "register_model",
    "wrap_encoder",
]


@dataclass
class ModelOutput:
    """What one forward pass gives the objective.

    Shape:
        - logits: (N, C) for classification, (N, 1) for regression.
        - embedding: (N, E), the representation diagnostics look at.
        - projection: (N, P), L2-normalised, what contrastive terms see (keeps their gradients bounded).
        - extras: further views of each sample from the same forward (text encoders, on request), through
          the projection head and L2-normalised: "layer:i" (N, P), "tokens:i" and "clusters" (N, k, P),
          with their masks "tokens_mask" and "clusters_mask" (N, k) bool.
        - auxiliary: (N, A), the auxiliary regression head's output (the identity study's pose), if any.
    """

    logits: Tensor
    embedding: Tensor
    projection: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    auxiliary: Tensor | None = None

    def rows(self, start: int, stop: int) -> ModelOutput:
        """The outputs of samples ``start:stop`` (one view of a one-stage forward)."""
        aux = None if self.auxiliary is None else self.auxiliary[start:stop]
        return ModelOutput(self.logits[start:stop], self.embedding[start:stop], self.projection[start:stop],
                           {k: v[start:stop] for k, v in self.extras.items()}, aux)  # fmt: skip


@dataclass
class EncoderOutput:
    """What an encoder returns when it has more than the embedding to give (else a plain (N, E) tensor).

    Shape:
        - embedding: (N, E); extras: as in :class:`ModelOutput`, before the projection head (masks as is).
    """

    embedding: Tensor
    extras: dict[str, Tensor]


class ContrastiveModel(nn.Module):
    """An encoder, a task head on its embedding and a projection head for the contrastive terms.

    Args:
        encoder: The encoder contract: ``forward(batch)`` receives what the dataset's ``take(rows)`` builds
            (or its ``features[rows]`` tensor) and returns an (N, E) tensor, or an :class:`EncoderOutput`
            with extra views. Optional: ``layers`` (bottom to top, for freezing, layer-wise LR decay and
            stage CKA; without them the encoder is one layer) and ``output_dim`` (E).
        embedding_dim: E.
        num_outputs: Classes, or 1 for regression.
        projection_dim: P.
        head: "linear", or "cosine" (logits are cosines between the embedding and each class's weight
            vector: what ArcFace / CosFace margins act on).
        num_auxiliary: Width of an auxiliary regression head on the embedding (the identity study's pose
            head); 0: none.
    """

    def __init__(
        self,
        encoder: nn.Module,
        embedding_dim: int,
        num_outputs: int,
        projection_dim: int,
        head: str = "linear",
        num_auxiliary: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.embedding_dim = embedding_dim
        if head not in ("linear", "cosine"):
            raise ValueError(f"head={head!r}; expected 'linear' or 'cosine'")
        self.head: nn.Module = nn.Linear(embedding_dim, num_outputs) if head == "linear" else CosineHead(
            embedding_dim, num_outputs
        )
        self.projection = nn.Sequential(
            nn.Linear(embedding_dim, embedding_dim), nn.ReLU(), nn.Linear(embedding_dim, projection_dim)
        )
        self.auxiliary_head = nn.Linear(embedding_dim, num_auxiliary) if num_auxiliary > 0 else None

    def forward(self, x: Any) -> ModelOutput:
        encoded = check_encoder_output(self.encoder, self.encoder(x))  # (N, E) plus extra views, if any
        embedding = encoded.embedding
        extras = {k: v if k.endswith("_mask") else F.normalize(self.projection(v), dim=-1)
                  for k, v in encoded.extras.items()}  # fmt: skip
        return ModelOutput(
            logits=self.head(embedding),
            embedding=embedding,
            projection=F.normalize(self.projection(embedding), dim=-1),
            extras=extras,
            auxiliary=None if self.auxiliary_head is None else self.auxiliary_head(embedding),
        )

    def encoder_layers(self) -> list[nn.Module]:
        """The encoder's layers, bottom to top (freezing and layer-wise LR decay count from the top): its
        ``layers`` (an ``nn.ModuleList`` or a list of modules) when it has them, else the whole encoder as
        one layer (then ``freeze_all_but_last`` can only freeze all or none, and ``layer_decay`` has one
        layer to act on)."""
        layers = getattr(self.encoder, "layers", None)
        if layers is None:
            return [self.encoder]
        if not isinstance(layers, nn.ModuleList | list | tuple) or not all(
            isinstance(m, nn.Module) for m in layers
        ):
            raise TypeError(
                f"{type(self.encoder).__name__}.layers must be an nn.ModuleList (bottom to top) of its "
                f"blocks, got {type(layers).__name__}; rename the attribute if it is something else"
            )
        return list(layers)

    def head_modules(self) -> list[nn.Module]:
        heads = [self.head, self.projection]
        return heads if self.auxiliary_head is None else [*heads, self.auxiliary_head]


class CosineHead(nn.Module):
    """Logits = cos(embedding, w_c) for each class c (both L2-normalised); in [-1, 1].

    Shape:
        - x: (N, E); returns (N, C).
    """

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).T


#: Built-in encoders by name, as import paths (domain encoders import their extras only when built).
_MODELS: dict[str, str | Callable[..., nn.Module]] = {
    "mlp": "contrastlab.models.mlp:MLPEncoder",
    "convnet": "contrastlab.models.conv:ConvEncoder",
    "gine": "contrastlab.models.graph:GINEEncoder",
    "graphormer": "contrastlab.models.graph:GraphormerEncoder",
    "transformer": "contrastlab.models.text:TextEncoder",
    "fusion": "contrastlab.models.fusion:FusionEncoder",
}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Makes ``model.name=<name>`` build your encoder (from recipes, the CLI with ``--plugin``, and Python).

    ``factory`` is called as ``factory(num_features=F, embedding_dim=E, hidden_dims=..., dropout=...,
    **model.options)`` (it may leave out any of these it does not take) and returns an encoder: see
    :class:`ContrastiveModel` for what its ``forward`` receives and returns. Registering a name again
    replaces it, with a warning (a notebook re-running its cell).
    """
    if name in _MODELS:
        warnings.warn(f"register_model: {name!r} was registered already; the new factory replaces it",
                      stacklevel=2)  # fmt: skip
    _MODELS[name] = factory


def model_names() -> list[str]:
    return sorted(_MODELS)


def build_model(
    name: str,
    *,
    num_features: int,
    num_outputs: int,
    head: str = "linear",
    num_auxiliary: int = 0,
    example: Callable[[], Any] | None = None,
    **options: Any,
) -> ContrastiveModel:
    """Builds a registered model by name (configs never name an import path).

    A registered factory's encoder may choose its own width (one that ignores ``embedding_dim``): the
    encoder's ``output_dim``, else one forward of ``example()`` (a batch of two inputs) tells it. A factory
    whose signature names ``embedding_dim`` and returns another width is refused.

    Raises:
        UnknownNameError: unknown model name.
        ValueError: options the encoder does not take; a factory that takes ``embedding_dim`` and returns
            an encoder of another width (naming both).
    """
    if name not in _MODELS:
        raise UnknownNameError(f"no model named {name!r} (available: {', '.join(model_names())}; your own: "
                               "contrastlab.register_model, and --plugin on the command line)")  # fmt: skip
    entry = _MODELS[name]
    if isinstance(entry, str):
        module, _, cls = entry.partition(":")
        factory: Callable[..., nn.Module] = getattr(importlib.import_module(module), cls)
    else:
        factory = entry
    embedding_dim = int(options.pop("embedding_dim"))
    projection_dim = int(options.pop("projection_dim"))
    kwargs = {"num_features": num_features, "embedding_dim": embedding_dim, **options}
    if not isinstance(entry, str):  # a user's factory may not take every standard argument
        kwargs = _accepted(factory, kwargs, _STANDARD)
    try:
        encoder = factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"model.name={name!r} does not accept these options: {exc}") from None
    # A registered factory's encoder is as wide as what it returns (it may ignore embedding_dim): one
    # forward of the example tells, as for an encoder passed from Python.
    own_width = not isinstance(entry, str) and getattr(encoder, "output_dim", None) is None
    model = wrap_encoder(encoder, num_outputs=num_outputs, projection_dim=projection_dim, head=head,
                         num_auxiliary=num_auxiliary, embedding_dim=embedding_dim,
                         example=example() if own_width and example is not None else None)  # fmt: skip
    if own_width and model.embedding_dim != embedding_dim and _names_parameter(factory, "embedding_dim"):
        raise ValueError(
            f"model.name={name!r}: the registered factory {getattr(factory, '__qualname__', factory)!r} "
            f"takes embedding_dim={embedding_dim} but returned an encoder whose embeddings are "
            f"{model.embedding_dim} wide; make it honour embedding_dim (or set model.embedding_dim="
            f"{model.embedding_dim})"
        )
    return model


def _names_parameter(factory: Callable[..., Any], name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False


_STANDARD = ("num_features", "embedding_dim", "hidden_dims", "dropout")


def _accepted(factory: Callable[..., Any], kwargs: dict[str, Any], standard: Sequence[str]) -> dict[str, Any]:
    """``kwargs`` without the standard arguments ``factory``'s signature does not take."""
    import inspect

    params = inspect.signature(factory).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params or k not in standard}


def wrap_encoder(
    encoder: nn.Module,
    *,
    num_outputs: int,
    projection_dim: int,
    head: str = "linear",
    num_auxiliary: int = 0,
    embedding_dim: int | None = None,
    example: Any = None,
) -> ContrastiveModel:
    """Your encoder with the task head and projection head the trainer adds.

    The embedding width E is the encoder's ``output_dim`` attribute when it has one, else what one forward
    of ``example`` (a batch of inputs) returns, else ``embedding_dim``.

    Raises:
        TypeError: the encoder's output on ``example`` is not an (N, E) tensor or an EncoderOutput.
    """
    width = getattr(encoder, "output_dim", None)
    if width is None and example is not None:
        was_training = encoder.training
        encoder.eval()
        with torch.no_grad():
            width = int(check_encoder_output(encoder, encoder(example)).embedding.shape[1])
        encoder.train(was_training)
    if width is None:
        width = embedding_dim
    if width is None:
        raise ValueError(f"the width of {type(encoder).__name__}'s embedding is unknown: give it an "
                         "output_dim attribute or pass an example batch")  # fmt: skip
    return ContrastiveModel(encoder, int(width), num_outputs, projection_dim, head=head,
                            num_auxiliary=num_auxiliary)  # fmt: skip


def check_encoder_output(encoder: nn.Module, out: Any) -> EncoderOutput:
    """An encoder's output as an EncoderOutput, or a TypeError saying what the contract is."""
    if isinstance(out, Tensor):
        out = EncoderOutput(out, {})
    if not isinstance(out, EncoderOutput) or out.embedding.ndim != 2:
        if isinstance(out, Tensor):
            got = f"a tensor of shape {tuple(out.shape)}"
        elif isinstance(out, EncoderOutput):
            got = f"an EncoderOutput with embedding {tuple(out.embedding.shape)}"
        else:
            got = type(out).__name__
        raise TypeError(
            f"{type(encoder).__name__}.forward(batch) must return one embedding per sample, an (N, E) "
            f"tensor (or an EncoderOutput holding one), got {got}; pool token or node states to one vector "
            "per sample"
        )
    return out
