"""contrastlab's losses as sentence-transformers losses (the ``sentence-transformers`` extra).

Each is an ``nn.Module`` taking ``(sentence_features, labels)`` as sentence-transformers' own losses do, so
it drops into ``SentenceTransformerTrainer(loss=...)`` or ``model.fit``; the computation is contrastlab's
(tiled: exact at any batch size in memory that grows with the batch, not its square; ``gather_distributed``
for negatives from every process).

- :class:`SentenceInfoNCELoss`: (anchor, positive, *hard negatives) columns, each anchor against every
  positive and every hard negative of the batch: what ``MultipleNegativesRankingLoss`` computes (its
  ``scale`` is ``1 / temperature``), in one call at batch sizes its cached variant has to split into
  mini-batches.
- :class:`SentenceSupConLoss`: two or more views per row (columns) and a label per row: Khosla et al.'s
  SupCon.
- :class:`SentenceClipLoss`: (anchor, positive) pairs, both directions averaged (CLIP's symmetric InfoNCE).

In a training step the encoder's activations, not the loss, fill memory as the batch grows. With
``mini_batch_size=m`` each loss uses gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning
Batch Size under Memory Limited Setup", as ``CachedMultipleNegativesRankingLoss`` does): the columns are
embedded m rows at a time without a graph, the loss and its gradient with respect to the embeddings are
computed on the whole batch, and the backward pass embeds each mini-batch again (with the same dropout
masks) and back-propagates its share. Same value and gradients as the batch in one piece; memory of m rows
of activations; about one more forward pass. SupCon and CLIP get it too.

>>> import torch
>>> from contrastlab.integrations.sentence_transformers import SentenceInfoNCELoss
>>> class Tiny(torch.nn.Module):  # stands in for a SentenceTransformer
...     def forward(self, features):
...         return {"sentence_embedding": features["x"]}
>>> loss = SentenceInfoNCELoss(Tiny(), temperature=0.05)
>>> columns = [{"x": torch.eye(4)}, {"x": torch.eye(4)}]
>>> round(float(loss(columns, torch.zeros(4))), 4)  # each anchor equals its positive and nothing else
0.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from contrastlab.losses import clip_loss, info_nce, supcon
from contrastlab.losses.supcon import SUPCON_TEMPERATURE

__all__ = ["SentenceClipLoss", "SentenceInfoNCELoss", "SentenceSupConLoss"]

#: The names these losses had in 0.1.0 (the same names as contrastlab.losses' own modules: a reader
#: could not tell them apart); they still import, with a DeprecationWarning.
_RENAMED = {"InfoNCELoss": "SentenceInfoNCELoss", "SupConLoss": "SentenceSupConLoss",
            "CLIPLoss": "SentenceClipLoss"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        import warnings

        warnings.warn(f"contrastlab.integrations.sentence_transformers.{name} is now {_RENAMED[name]}",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _ColumnsLoss(nn.Module):
    """What the three share: embedding each text column with the model, and the config the trainer logs."""

    #: The temperature when none is given (sentence-transformers' default scale 20 is 0.05).
    default_temperature = 0.05

    def __init__(self, model: nn.Module, *, temperature: float | None = None,
                 chunk_size: int | str | None = "auto", gather_distributed: bool = False,
                 mini_batch_size: int | None = None) -> None:  # fmt: skip
        super().__init__()
        temperature = self.default_temperature if temperature is None else temperature
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r}; expected > 0")
        if mini_batch_size is not None and mini_batch_size < 1:
            raise ValueError(f"mini_batch_size={mini_batch_size!r}; expected >= 1 (None: no caching)")
        self.model = model
        self.temperature = temperature
        self.chunk_size = chunk_size
        self.gather_distributed = gather_distributed
        self.mini_batch_size = mini_batch_size

    def embed(self, sentence_features: Iterable[dict[str, Tensor]]) -> list[Tensor]:
        """Each column's (N, D) sentence embeddings."""
        return [self.model(features)["sentence_embedding"] for features in sentence_features]

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        if self.mini_batch_size is None or not torch.is_grad_enabled():
            return self.compute(self.embed(features), labels)
        return self._cached(features, labels, self.mini_batch_size)

    def compute(self, columns: list[Tensor], labels: Tensor | None) -> Tensor:
        """The loss on each column's (N, D) embeddings."""
        raise NotImplementedError

    def _cached(self, features: list[dict[str, Tensor]], labels: Tensor | None, size: int) -> Tensor:
        """Gradient caching: embed without a graph, take d loss / d embeddings, replay in the backward."""
        states: list[list[_RandomState]] = []
        columns = []
        with torch.no_grad():
            for column in features:
                pieces, column_states = [], []
                for piece in _mini_batches(column, size):
                    column_states.append(_RandomState(piece))
                    pieces.append(self.model(piece)["sentence_embedding"])
                columns.append(torch.cat(pieces))
                states.append(column_states)
        leaves = [c.detach().requires_grad_() for c in columns]
        with torch.enable_grad():
            loss = self.compute(leaves, labels)
            grads = torch.autograd.grad(loss, leaves)
        out = loss.detach().requires_grad_()
        out.register_hook(_replay(self.model, features, states, grads, size))  # type: ignore[no-untyped-call]
        return out

    def get_config_dict(self) -> dict[str, Any]:
        """What sentence-transformers writes into the model card."""
        return {"temperature": self.temperature, "chunk_size": self.chunk_size,
                "gather_distributed": self.gather_distributed,
                "mini_batch_size": self.mini_batch_size}  # fmt: skip


def _mini_batches(features: dict[str, Tensor], size: int) -> Iterator[dict[str, Tensor]]:
    """The column's features ``size`` rows at a time (every tensor split along its first dimension)."""
    rows = next(v.shape[0] for v in features.values() if isinstance(v, Tensor))
    for start in range(0, rows, size):
        yield {k: v[start : start + size] if isinstance(v, Tensor) else v for k, v in features.items()}


class _RandomState:
    """The random state before a mini-batch's forward (CPU, and its CUDA device), so that the replayed
    forward draws the same dropout masks."""

    def __init__(self, features: dict[str, Tensor]) -> None:
        tensors = [v for v in features.values() if isinstance(v, Tensor)]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=[self.device] if self.cuda is not None else []):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def _replay(model: nn.Module, features: list[dict[str, Tensor]], states: list[list[_RandomState]],
            grads: tuple[Tensor, ...], size: int) -> Callable[[Tensor], None]:  # fmt: skip
    """The loss's backward hook: each mini-batch embedded again with a graph, its share of the cached
    gradient (times the incoming one) back-propagated into the model."""

    def hook(upstream: Tensor) -> None:
        for column, column_states, grad in zip(features, states, grads, strict=True):
            start = 0
            for piece, state in zip(_mini_batches(column, size), column_states, strict=True):
                with state.restored(), torch.enable_grad():
                    embedding = model(piece)["sentence_embedding"]
                stop = start + embedding.shape[0]
                embedding.backward(grad[start:stop] * upstream)
                start = stop

    return hook


class SentenceInfoNCELoss(_ColumnsLoss):
    """InfoNCE over (anchor, positive, *hard negatives) columns; ``MultipleNegativesRankingLoss`` with
    ``scale = 1 / temperature`` computes the same value."""

    def compute(self, columns: list[Tensor], labels: Tensor | None) -> Tensor:
        if len(columns) < 2:
            raise ValueError(
                f"SentenceInfoNCELoss needs (anchor, positive[, negatives]) columns, got {len(columns)}"
            )
        negatives = torch.cat(columns[2:]) if len(columns) > 2 else None
        return info_nce(columns[0], columns[1], negatives=negatives, temperature=self.temperature,
                        chunk_size=self.chunk_size, gather_distributed=self.gather_distributed)  # fmt: skip


class SentenceSupConLoss(_ColumnsLoss):
    """SupCon over the rows' views (each text column a view of the row) and their labels."""

    default_temperature = SUPCON_TEMPERATURE

    def compute(self, columns: list[Tensor], labels: Tensor | None) -> Tensor:
        views = torch.stack(columns, dim=1)  # (N, V, D)
        return supcon(views, labels, temperature=self.temperature, chunk_size=self.chunk_size,
                      gather_distributed=self.gather_distributed)  # fmt: skip


class SentenceClipLoss(_ColumnsLoss):
    """CLIP's symmetric InfoNCE over (anchor, positive) pairs."""

    def compute(self, columns: list[Tensor], labels: Tensor | None) -> Tensor:
        if len(columns) != 2:
            raise ValueError(f"SentenceClipLoss needs (anchor, positive) columns, got {len(columns)}")
        return clip_loss(columns[0], columns[1], temperature=self.temperature, chunk_size=self.chunk_size,
                         gather_distributed=self.gather_distributed)  # fmt: skip
