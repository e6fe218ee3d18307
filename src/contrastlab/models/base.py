"""The model contract the trainer relies on."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.errors import UnknownNameError

__all__ = ["ContrastiveModel", "EncoderOutput", "ModelOutput", "build_model"]


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
        - auxiliary: (N, A), the auxiliary regression head's output (seed 003's pose), when the model has one.
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
        encoder: Maps inputs to (N, E) embeddings; must expose ``layers`` (bottom to top).
        embedding_dim: E.
        num_outputs: Classes, or 1 for regression.
        projection_dim: P.
        head: "linear", or "cosine" (logits are cosines between the embedding and each class's weight
            vector: what ArcFace / CosFace margins act on).
        num_auxiliary: Width of an auxiliary regression head on the embedding (seed 003's pose head); 0: none.
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
        encoded = self.encoder(x)  # (N, E), or an EncoderOutput with extra views
        embedding = encoded if isinstance(encoded, Tensor) else encoded.embedding
        extras = {} if isinstance(encoded, Tensor) else {
            k: v if k.endswith("_mask") else F.normalize(self.projection(v), dim=-1)
            for k, v in encoded.extras.items()
        }  # fmt: skip
        return ModelOutput(
            logits=self.head(embedding),
            embedding=embedding,
            projection=F.normalize(self.projection(embedding), dim=-1),
            extras=extras,
            auxiliary=None if self.auxiliary_head is None else self.auxiliary_head(embedding),
        )

    def encoder_layers(self) -> list[nn.Module]:
        """The encoder's layers, bottom to top (freezing and layer-wise LR decay count from the top)."""
        layers = self.encoder.layers
        assert isinstance(layers, nn.ModuleList), "an encoder exposes its layers as an nn.ModuleList"
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


def build_model(
    name: str,
    *,
    num_features: int,
    num_outputs: int,
    head: str = "linear",
    num_auxiliary: int = 0,
    **options: Any,
) -> ContrastiveModel:
    """Builds a registered model by name (configs never name an import path).

    Raises:
        KeyError: unknown model name.
    """
    registry = {
        "mlp": "contrastlab.models.mlp:MLPEncoder",
        "gine": "contrastlab.models.graph:GINEEncoder",
        "graphormer": "contrastlab.models.graph:GraphormerEncoder",
        "transformer": "contrastlab.models.text:TextEncoder",
        "fusion": "contrastlab.models.fusion:FusionEncoder",
    }
    if name not in registry:
        raise UnknownNameError(f"no model named {name!r} (available: {', '.join(sorted(registry))})")
    module, _, cls = registry[name].partition(":")
    encoder_cls = getattr(importlib.import_module(module), cls)  # domain encoders import their extras
    embedding_dim = int(options.pop("embedding_dim"))
    projection_dim = int(options.pop("projection_dim"))
    try:
        encoder = encoder_cls(num_features=num_features, embedding_dim=embedding_dim, **options)
    except TypeError as exc:
        raise ValueError(f"model.name={name!r} does not accept these options: {exc}") from None
    # Pretrained encoders have their own width (a transformer's hidden size); the heads follow it.
    embedding_dim = int(getattr(encoder, "output_dim", embedding_dim))
    return ContrastiveModel(encoder, embedding_dim, num_outputs, projection_dim, head=head,
                            num_auxiliary=num_auxiliary)  # fmt: skip
