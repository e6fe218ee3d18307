"""Image augmentations that make the views of a contrastive term (SimCLR-style), on batches of images.

Each augmentation draws its random choices per image from the ``torch.Generator`` it is given, so a view
is a function of (seed, epoch, step, view) and a resumed run draws what an uninterrupted one would. They
act on (N, C, H, W) float images in the dataset's own value range; :class:`ImageViews` applies one to a
dataset's flat (N, C·H·W) feature rows (Fashion-MNIST's 784 values), which is what ``trainer.views.augment``
builds for a dataset with an ``image_shape``::

    trainer:
      views:
        count: 2
        augment: [{name: affine, degrees: 15, translate: 0.1, scale: [0.85, 1.15]}, {name: erase, p: 0.5}]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Affine",
    "Erase",
    "HorizontalFlip",
    "ImageAugmentation",
    "ImageViews",
    "Noise",
    "affine_images",
    "build_image_augmentation",
]


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _probability(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}={p}; expected a probability in [0, 1]")
    return float(p)


class ImageAugmentation:
    """An augmentation of a batch of images: ``aug(images, generator)`` returns new (N, C, H, W) images
    (the input is not modified)."""

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError


class Affine(ImageAugmentation):
    """A random rotation (± ``degrees``), scaling (a factor in ``scale``) and shift (± ``translate`` of the
    image's size on each axis) about the centre, bilinear, with zeros coming in from outside."""

    def __init__(
        self, degrees: float = 15.0, translate: float = 0.1, scale: Sequence[float] = (0.9, 1.1)
    ) -> None:
        if not 0.0 <= degrees <= 180.0:
            raise ValueError(f"degrees={degrees}; expected 0..180")
        if not 0.0 <= translate < 1.0:
            raise ValueError(f"translate={translate}; expected a share of the image in [0, 1)")
        low, high = (float(s) for s in scale)
        if not 0.0 < low <= high:
            raise ValueError(f"scale={list(scale)}; expected [low, high] with 0 < low <= high")
        self.degrees, self.translate, self.scale = float(degrees), float(translate), (low, high)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        n = images.shape[0]
        degrees = _uniform(n, -self.degrees, self.degrees, generator)
        factor = _uniform(n, *self.scale, generator)
        shift = _uniform(2 * n, -self.translate, self.translate, generator).view(n, 2)
        return affine_images(images, degrees, factor, shift)


def affine_images(images: Tensor, degrees: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Each image rotated clockwise as displayed by its angle (as ``contrastlab.data.images.rotate_images``
    does), scaled about its centre by its factor (> 1 enlarges), then shifted by its (x, y) share of the image
    (x to the right, y down); bilinear, zeros from outside.

    Shape:
        - images: (N, C, H, W); degrees, scale: (N,); shift: (N, 2); returns (N, C, H, W).
    """
    theta = torch.deg2rad(degrees.double())
    cos, sin = torch.cos(theta), torch.sin(theta)
    # affine_grid maps each output point to where it samples the input: the inverse of (shift ∘ scale ∘
    # rotation). In grid units the image spans [-1, 1], so a shift of a share s is 2 s.
    rotation = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
    inverse = rotation / scale.double().view(-1, 1, 1)
    offset = -(inverse @ (2.0 * shift.double()).unsqueeze(-1))
    matrix = torch.cat([inverse, offset], 2).to(images.dtype)
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Erase(ImageAugmentation):
    """With probability ``p``, a random rectangle (``area`` share of the image, aspect ratio within
    ``ratio``) set to 0 (random erasing, Zhong et al. 2020)."""

    def __init__(
        self, p: float = 0.5, area: Sequence[float] = (0.02, 0.2), ratio: Sequence[float] = (0.3, 3.3)
    ) -> None:
        self.p = _probability("p", p)
        self.area = (float(area[0]), float(area[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not 0.0 < self.area[0] <= self.area[1] <= 1.0:
            raise ValueError(f"area={list(area)}; expected [low, high] with 0 < low <= high <= 1")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio={list(ratio)}; expected [low, high] with 0 < low <= high")

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = images.shape
        apply = torch.rand(n, generator=generator) < self.p
        area = _uniform(n, *self.area, generator) * h * w
        log_ratio = _uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), generator)
        eh = (area * torch.exp(log_ratio)).sqrt().round().clamp(1, h)
        ew = (area / torch.exp(log_ratio)).sqrt().round().clamp(1, w)
        top = (torch.rand(n, generator=generator) * (h - eh + 1)).floor()
        left = (torch.rand(n, generator=generator) * (w - ew + 1)).floor()
        rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
        inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
                  & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))  # fmt: skip
        mask = (inside & apply.view(n, 1, 1)).unsqueeze(1).to(images.device)
        return images.masked_fill(mask, 0.0)


class HorizontalFlip(ImageAugmentation):
    """Each image mirrored left to right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = _probability("p", p)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        flip = (torch.rand(images.shape[0], generator=generator) < self.p).to(images.device)
        return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


class Noise(ImageAugmentation):
    """Gaussian noise of standard deviation ``std`` added to every pixel."""

    def __init__(self, std: float = 0.05) -> None:
        if not std >= 0.0:
            raise ValueError(f"std={std}; expected >= 0")
        self.std = float(std)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(images.shape, generator=generator).to(images.device, images.dtype)
        return images + self.std * noise


class _Compose(ImageAugmentation):
    def __init__(self, parts: list[ImageAugmentation]) -> None:
        self.parts = parts

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        for part in self.parts:
            images = part(images, generator)
        return images


_BY_NAME: dict[str, type[ImageAugmentation]] = {
    "affine": Affine,
    "erase": Erase,
    "hflip": HorizontalFlip,
    "noise": Noise,
}


def build_image_augmentation(spec: Any, where: str = "augment") -> ImageAugmentation:
    """An augmentation from config data: a ``{name: ..., **options}`` mapping or a list of them (applied
    in order).

    Raises:
        ValueError: an unknown name, option or value, naming where in the config it is.
    """
    if isinstance(spec, list | tuple):
        if not spec:
            raise ValueError(f"{where}: an empty list; give at least one augmentation or leave it out")
        return _Compose([build_image_augmentation(s, f"{where}[{i}]") for i, s in enumerate(spec)])
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping like {{name: affine, degrees: 15}}, got {spec!r}")
    options = dict(spec)
    name = options.pop("name", None)
    if name not in _BY_NAME:
        raise ValueError(f"{where}.name={name!r}; expected one of {sorted(_BY_NAME)} for images")
    try:
        return _BY_NAME[name](**options)
    except TypeError as exc:
        raise ValueError(f"{where}: {name} does not take options {sorted(options)} ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"{where} ({name}): {exc}") from None


class ImageViews:
    """An image augmentation applied to flat feature rows: (N, C·H·W) → images of ``shape`` (C, H, W) →
    augmented → flat again."""

    def __init__(self, augmentation: ImageAugmentation, shape: Sequence[int]) -> None:
        self.augmentation, self.shape = augmentation, tuple(int(s) for s in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"image shape {list(shape)}; expected (channels, height, width)")

    def __call__(self, rows: Tensor, generator: torch.Generator) -> Tensor:
        width = math.prod(self.shape)
        if rows.dim() != 2 or rows.shape[1] != width:
            raise ValueError(f"image rows of shape {tuple(rows.shape)}; expected (N, {width}) for images "
                             f"of shape {self.shape}")  # fmt: skip
        images = rows.reshape(-1, *self.shape)
        return self.augmentation(images, generator).reshape(rows.shape[0], width)
