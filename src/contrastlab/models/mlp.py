"""A multilayer perceptron encoder for tabular features (and the trainer's end-to-end tests)."""

from __future__ import annotations

import itertools

from torch import Tensor, nn

__all__ = ["MLPEncoder"]


class MLPEncoder(nn.Module):
    """``Linear → GELU → Dropout`` blocks, then a linear map to the embedding.

    Args:
        num_features: Input width F.
        embedding_dim: Output width E.
        hidden_dims: Width of each hidden block, bottom to top.
        dropout: Dropout after each hidden block (the source of R-Drop and dropout views).

    Shape:
        - x: (N, F); returns (N, E).
    """

    def __init__(
        self, *, num_features: int, embedding_dim: int, hidden_dims: list[int], dropout: float = 0.1
    ) -> None:
        super().__init__()
        widths = [num_features, *hidden_dims]
        blocks: list[nn.Module] = [
            nn.Sequential(nn.Linear(a, b), nn.GELU(), nn.Dropout(dropout))
            for a, b in itertools.pairwise(widths)
        ]
        blocks.append(nn.Linear(widths[-1], embedding_dim))
        self.layers = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
