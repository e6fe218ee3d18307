"""The tiled path equals the dense path in value and gradient, for every chunk size (open_clip's chunked
SigLIP test is the model): 1, uneven last tiles, exactly the batch, larger than the batch."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch

from contrastlab import losses as L
from contrastlab.losses import _tiled

N, D = 13, 6  # prime N: every chunk size below leaves an uneven last tile
LABELS = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 4, 4, 5])  # class 5 has a single sample
CHUNKS = [1, 2, 5, N, 2 * N, 64]

Case = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]

CASES: dict[str, Case] = {
    "nt_xent": lambda x, s, c: L.nt_xent(x[:, 0], x[:, 1], temperature=0.2, chunk_size=c),
    "info_nce": lambda x, s, c: L.info_nce(x[:, 0], x[:, 1], temperature=0.1, chunk_size=c),
    "info_nce_queue": lambda x, s, c: L.info_nce(
        x[:, 0], x[:, 1], negatives=x[:7, 2], temperature=0.1, chunk_size=c
    ),
    "clip_loss": lambda x, s, c: L.clip_loss(x[:, 0], x[:, 1], logit_scale=s, chunk_size=c),
    "supcon": lambda x, s, c: L.supcon(x, LABELS, temperature=0.1, chunk_size=c),
    "supcon_one": lambda x, s, c: L.supcon(x, LABELS, temperature=0.1, contrast_mode="one", chunk_size=c),
    "supcon_unlabelled": lambda x, s, c: L.supcon(x[:, :2], temperature=0.5, chunk_size=c),
    "focal_supcon": lambda x, s, c: L.focal_supcon(x, LABELS, temperature=0.1, gamma=2.0, chunk_size=c),
    "focal_supcon_half_gamma": lambda x, s, c: L.focal_supcon(
        x, LABELS, temperature=0.3, gamma=0.5, chunk_size=c
    ),
}


def _inputs(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, D, generator=g, dtype=dtype)
    return x, torch.tensor(2.3, dtype=dtype)


def _value_and_grads(case: Case, x: torch.Tensor, s: torch.Tensor, chunk: object):
    x, s = x.clone().requires_grad_(), s.clone().requires_grad_()
    loss = case(x, s, chunk)
    grads = torch.autograd.grad(loss, (x, s), allow_unused=True)
    return loss.detach(), [torch.zeros(()) if g is None else g for g in grads]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("chunk", CHUNKS)
def test_tiled__equals_dense_in_value_and_gradient(name, chunk):
    case = CASES[name]
    x, s = _inputs()
    dense, dense_grads = _value_and_grads(case, x, s, None)
    tiled, tiled_grads = _value_and_grads(case, x, s, chunk)
    torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-6)
    for g_tiled, g_dense in zip(tiled_grads, dense_grads, strict=True):
        torch.testing.assert_close(g_tiled, g_dense, rtol=1e-5, atol=1e-6)


GRADCHECK_CASES: dict[str, Case] = {
    "nt_xent": lambda x, s, c: L.nt_xent(x[:, 0], x[:, 1], temperature=0.3, chunk_size=c),
    "clip_loss": lambda x, s, c: L.clip_loss(x[:, 0], x[:, 1], logit_scale=s, chunk_size=c),
    "supcon": lambda x, s, c: L.supcon(x, LABELS[:5], temperature=0.3, chunk_size=c),
    "focal_supcon": lambda x, s, c: L.focal_supcon(x, LABELS[:5], temperature=0.3, chunk_size=c),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_tiled__gradcheck_in_float64(name):
    case = GRADCHECK_CASES[name]
    x, s = _inputs(torch.float64)
    x = x[:5].clone().requires_grad_()
    s = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda f, sc: case(f, sc, 2), (x, s))


def test_tiled__underflow_falls_back_to_exact_maxima(monkeypatch):
    calls = []
    real_exact = _tiled._exact_forward
    monkeypatch.setattr(_tiled, "_exact_forward", lambda *a: calls.append(1) or real_exact(*a))
    # tau = 0.01 and every cosine 0: each logit is 100 below the shared bound, 2^-144 underflows to 0.
    eye = torch.eye(16)
    a, b = eye[:8], eye[8:]
    for c in (None, 3):
        loss = L.clip_loss(a, b, temperature=0.01, chunk_size=c)
        assert loss.item() == pytest.approx(torch.log(torch.tensor(8.0)).item(), rel=1e-6)
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(8, 2, 32, generator=g), dim=-1)
    x = torch.stack([x[:, 0], -x[:, 0] + 0.01 * x[:, 1]], dim=1)  # positives far below the bound
    for name in ("nt_xent", "supcon", "clip_loss"):
        case = partial(_low_tau, name)
        dense = _value_and_grads(case, x, torch.tensor(1.0), None)
        tiled = _value_and_grads(case, x, torch.tensor(1.0), 3)
        torch.testing.assert_close(tiled[0], dense[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tiled[1][0], dense[1][0], rtol=1e-4, atol=1e-5)
    assert len(calls) >= 4  # the fallback really ran (clip on the eye, and each low-τ case)


def _low_tau(name: str, x: torch.Tensor, _scale: torch.Tensor, chunk: object) -> torch.Tensor:
    if name == "nt_xent":
        return L.nt_xent(x[:, 0], x[:, 1], temperature=0.01, chunk_size=chunk)
    if name == "clip_loss":
        return L.clip_loss(x[:, 0], x[:, 1], temperature=0.01, chunk_size=chunk)
    return L.supcon(x, temperature=0.01, chunk_size=chunk)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_tiled__half_inputs_match_float64(dtype):
    x, _ = _inputs(dtype)
    x = x.requires_grad_()
    loss = L.supcon(x, LABELS, temperature=0.05, chunk_size=4)
    ref = L.supcon(x.detach().double(), LABELS, temperature=0.05, chunk_size=None)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4)
    loss.backward()
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad).all()


def test_tiled__never_builds_the_full_matrix(monkeypatch):
    # Every product the tiled path issues is at most chunk x chunk.
    seen: list[tuple[int, ...]] = []
    real_mm = torch.mm

    def spy(a, b, *args, **kwargs):
        seen.append((a.shape[0], b.shape[1]))
        return real_mm(a, b, *args, **kwargs)

    monkeypatch.setattr(_tiled.torch, "mm", spy)
    x, _ = _inputs()
    x.requires_grad_()
    L.supcon(x, LABELS, chunk_size=4).backward()
    assert seen and max(max(shape) for shape in seen) <= 4


def test_chunk_size__auto_is_dense_small_and_tiled_large():
    cpu = torch.device("cpu")
    assert _tiled.resolve_chunk_size("auto", 256, 256, cpu) is None
    assert _tiled.resolve_chunk_size("auto", 512, 512, cpu) == 1024
    assert _tiled.resolve_chunk_size("auto", 8192, 8192, cpu) == 1024
    assert _tiled.resolve_chunk_size(None, 10**6, 10**6, cpu) is None
    assert _tiled.resolve_chunk_size(7, 2, 2, cpu) == 7


@pytest.mark.parametrize("bad", [0, -3, 2.5, "big", True])
def test_chunk_size__bad_values_name_the_argument(bad):
    x, _ = _inputs()
    with pytest.raises(ValueError, match=r"chunk_size must be None, 'auto' or a positive integer, got"):
        L.nt_xent(x[:, 0], x[:, 1], chunk_size=bad)
    with pytest.raises(ValueError, match="chunk_size must be"):
        L.SupConLoss(chunk_size=bad)
