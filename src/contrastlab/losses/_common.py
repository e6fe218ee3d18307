"""Input checks and numerics shared by every loss.

Every loss funnels its inputs through these helpers so that the error messages read the same everywhere
and the float32-softmax rule (STYLE.md, rule 11) is applied in exactly one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from contrastlab import distributed

__all__ = [
    "check_embeddings",
    "check_labels",
    "check_positive",
    "check_same_shape",
    "compute_dtype",
    "connected_zero",
    "full_precision",
    "gather_columns",
    "prepare",
]


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"


def check_embeddings(
    name: str, x: object, *, ndims: Sequence[int] | None = (2,), allow_empty: bool = False
) -> Tensor:
    """Checks that ``x`` is a floating tensor with one of ``ndims`` dimensions (None: any) and no empty axis.

    Raises:
        TypeError: ``x`` is not a tensor, or not floating point.
        ValueError: wrong number of dimensions or an empty axis.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got dtype {x.dtype}"
        )
    if ndims is not None and x.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {expected}, got shape {tuple(x.shape)}")
    if x.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return x


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Raises ValueError unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")


def check_labels(labels: object, n: int, *, name: str = "labels") -> Tensor:
    """Checks that ``labels`` is an integer tensor of shape ``(n,)``.

    Raises:
        TypeError: not a tensor or not an integer dtype.
        ValueError: wrong shape.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer class ids, got {_describe(labels)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype (e.g. torch.long), got {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the batch, got {tuple(labels.shape)}")
    return labels


def check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Checks that ``value`` is a finite real number > 0 (or >= 0) and returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    v = float(value)
    ok = v >= 0 if allow_zero else v > 0
    if not ok or not math.isfinite(v):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype logits are formed in: float64 stays float64, everything else becomes float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _CastNormalize(torch.autograd.Function):
    """y = x / max(|x|, eps) in the compute dtype, saving only y and the row norms for backward.

    ``F.normalize(x.float())`` would keep both the float32 copy of x and y alive until backward; at large
    batch that is a whole extra copy of the embeddings (512 MiB for two 262144 x 256 towers).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, dtype: torch.dtype) -> Tensor:
        x32 = x.to(dtype)
        norm = x32.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (..., 1), F.normalize's eps
        y: Tensor = x32 / norm
        ctx.save_for_backward(y, norm)
        ctx.input_dtype = x.dtype
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        y, norm = ctx.saved_tensors
        # d(x/|x|) = (g - y (y·g)) / |x|, with one (N, D) allocation: the row dots come from a batched
        # product rather than an elementwise y * g.
        if y.ndim == 2:
            dots = torch.bmm(y.unsqueeze(1), grad.unsqueeze(2)).squeeze(2)  # (N, 1)
        else:
            dots = (y * grad).sum(dim=-1, keepdim=True)
        dx = torch.addcmul(grad, y, dots, value=-1.0).div_(norm)
        return dx.to(ctx.input_dtype), None


def prepare(x: Tensor, *, normalize: bool) -> Tensor:
    """Casts to the compute dtype *before* normalising, so a half-precision norm cannot overflow."""
    dtype = compute_dtype(x)
    if not normalize:
        return x.to(dtype)
    out: Tensor = _CastNormalize.apply(x, dtype)  # type: ignore[no-untyped-call]
    return out


@contextmanager
def full_precision(x: Tensor) -> Iterator[None]:
    """Disables autocast on ``x``'s device, so similarity products stay in float32 under AMP."""
    device_type = x.device.type
    if device_type in ("cpu", "cuda", "xpu", "mps"):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:  # pragma: no cover - exotic backends without an autocast context
        yield


def connected_zero(*tensors: Tensor) -> Tensor:
    """A scalar zero that is still part of the autograd graph of ``tensors``.

    Losses return it for batches with nothing to contrast (no positives), so ``loss.backward()`` works and
    DDP sees every parameter used. The inputs must be finite; callers pass their prepared embeddings.
    """
    total = tensors[0].sum() * 0.0
    for t in tensors[1:]:
        total = total + t.sum() * 0.0
    return total


def gather_columns(x: Tensor, gather_distributed: bool) -> tuple[Tensor, int]:
    """The columns a loss contrasts its local rows against, and where the local rows sit among them.

    Without gathering (or without a process group) the columns are the local rows themselves (offset 0);
    with it they are every rank's rows, gradients flowing back to their owners, and the local rows start at
    ``rank · n``.

    Shape:
        - x: (n, D); returns ((W·n, D), offset).
    """
    if not gather_distributed or distributed.world_size() == 1:
        return x, 0
    return distributed.all_gather_with_grad(x), distributed.rank() * x.shape[0]
