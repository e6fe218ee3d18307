"""A small convolutional encoder for datasets whose rows are flattened images (``image_shape``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["ConvEncoder"]


class ConvEncoder(nn.Module):
    """VGG-style stages (two ``3x3 conv → BatchNorm → GELU``, then a 2x2 max-pool), global average pooling,
    dropout and a linear map to the embedding.

    Args:
        num_features: Row width C·H·W.
        embedding_dim: Output width E.
        hidden_dims: Channels of each stage, bottom to top (each halves the resolution while it is > 1).
        image_shape: (C, H, W) of each row (the dataset's ``image_shape``; the trainer passes it).
        dropout: Before the final linear map.

    Shape:
        - x: (N, C·H·W); returns (N, E).
    """

    def __init__(
        self,
        *,
        num_features: int,
        embedding_dim: int,
        hidden_dims: Sequence[int],
        image_shape: Sequence[int],
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3 or math.prod(self.image_shape) != num_features:
            raise ValueError(f"image_shape={list(image_shape)} does not fit rows of {num_features} values; "
                             "expected (C, H, W) with C·H·W equal to the row width")  # fmt: skip
        if not hidden_dims:
            raise ValueError("model.hidden_dims must list at least one stage's channels (model.name=convnet)")
        blocks: list[nn.Module] = []
        channels, side = self.image_shape[0], min(self.image_shape[1:])
        for width in hidden_dims:
            stage: list[nn.Module] = []
            for c_in in (channels, width):
                stage += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.GELU()]
            if side > 1:
                stage.append(nn.MaxPool2d(2))
                side //= 2
            blocks.append(nn.Sequential(*stage))
            channels = width
        blocks.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                    nn.Linear(channels, embedding_dim)))  # fmt: skip
        self.layers = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(-1, *self.image_shape)
        for layer in self.layers:
            x = layer(x)
        return x
