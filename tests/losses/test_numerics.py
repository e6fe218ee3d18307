"""The "never NaN" promise: every loss and its gradient stay finite, in every input dtype, at every
temperature in [0.01, 1], with or without normalisation and with row norms up to 1e4; half-precision
results equal the float64 value of the same (rounded) inputs within 1e-2 relative."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from contrastlab import losses as L

Loss = Callable[[torch.Tensor, torch.Tensor, float, bool], torch.Tensor]

LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])  # every class has a positive

# Each loss sees x of shape (N, 2, D) (two views) and a queue (K, D) of the same dtype and scale.
LOSSES: dict[str, Loss] = {
    "nt_xent": lambda x, q, t, nz: L.nt_xent(x[:, 0], x[:, 1], temperature=t, normalize=nz),
    "info_nce": lambda x, q, t, nz: L.info_nce(x[:, 0], x[:, 1], negatives=q, temperature=t, normalize=nz),
    "clip_loss": lambda x, q, t, nz: L.clip_loss(x[:, 0], x[:, 1], temperature=t, normalize=nz),
    "supcon": lambda x, q, t, nz: L.supcon(x, LABELS, temperature=t, normalize=nz),
    "supcon_unlabelled": lambda x, q, t, nz: L.supcon(x, temperature=t, normalize=nz),
    "focal_supcon": lambda x, q, t, nz: L.focal_supcon(x, LABELS, temperature=t, normalize=nz),
    "margin_contrastive": lambda x, q, t, nz: L.margin_contrastive(x, LABELS, normalize=nz),
    "rdrop_kl": lambda x, q, t, nz: L.rdrop_kl(x[:, 0], x[:, 1]),  # logits up to the row scale
    "similarity_protection": lambda x, q, t, nz: L.similarity_protection(x[:, 0, 0], x[:, 1, 0]),
}

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FP16_MAX = torch.finfo(torch.float16).max


def _inputs(scale: float, aligned: bool, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(int(scale) + 17 * aligned)
    n, d = LABELS.shape[0], 16
    first = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    if aligned:  # the typical late-training case: views nearly agree, logits near the 1/τ bound
        second = torch.nn.functional.normalize(first + 0.01 * torch.randn(n, d, generator=g), dim=-1)
    else:  # spread directions: at τ = 0.01 every logit sits far below the bound
        second = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)
    norms = scale * (0.1 + 0.9 * torch.rand(n, 2, 1, generator=g))
    x = torch.stack([first, second], dim=1) * norms
    queue = torch.nn.functional.normalize(torch.randn(5, d, generator=g), dim=-1) * scale
    return x.to(dtype), queue.to(dtype)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("temperature", [0.01, 0.07, 1.0])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("aligned", [True, False])
def test_loss__finite_and_accurate_across_dtypes(name, dtype, temperature, scale, normalize, aligned):
    fn = LOSSES[name]
    x, queue = _inputs(scale, aligned, dtype)
    x.requires_grad_()
    loss = fn(x, queue, temperature, normalize)
    (grad,) = torch.autograd.grad(loss, x)

    x64 = x.detach().double().requires_grad_()
    ref = fn(x64, queue.double(), temperature, normalize)
    (ref_grad,) = torch.autograd.grad(ref, x64)

    assert loss.ndim == 0 and loss.dtype in (torch.float32, torch.float64)
    assert torch.isfinite(ref), "the float64 reference itself must be finite for this case"
    assert torch.isfinite(loss), f"{name} is {loss.item()} in {dtype}"
    assert abs(loss.item() - ref.item()) <= 1e-2 * abs(ref.item()) + 1e-5
    if dtype == torch.float16 and ref_grad.abs().max() >= FP16_MAX:
        pytest.skip("the exact gradient exceeds float16's range; no float16 result can hold it")
    assert torch.isfinite(grad).all(), f"{name} gradient has non-finite entries in {dtype}"


@pytest.mark.parametrize("name", ["nt_xent", "clip_loss", "supcon", "focal_supcon", "margin_contrastive"])
def test_loss__under_cpu_autocast_is_computed_in_float32(name):
    fn = LOSSES[name]
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 16)
    x, queue = _inputs(1.0, True, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        assert out.dtype == torch.bfloat16
        loss = fn(out, queue, 0.05, True)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, fn(out.float(), queue, 0.05, True))
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
