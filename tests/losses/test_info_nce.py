from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastlab.losses import ClipLoss, InfoNCELoss, NTXentLoss, clip_loss, info_nce, nt_xent
from tests.losses import oracles
from tests.peers import load_module


def _pair(n: int = 6, d: int = 5, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


def _grads(fn, *inputs):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    value = fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


# --- nt_xent -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0])
@pytest.mark.parametrize("normalize", [True, False])
def test_nt_xent__matches_oracle_in_value_and_gradient(temperature, normalize):
    a, b = _pair()
    ours, ours_grad = _grads(lambda x, y: nt_xent(x, y, temperature=temperature, normalize=normalize), a, b)
    ref, ref_grad = _grads(lambda x, y: oracles.nt_xent(x, y, temperature, normalize), a, b)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for g_ours, g_ref in zip(ours_grad, ref_grad, strict=True):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(("n", "temperature"), [(2, 1.0), (5, 0.5), (16, 0.1)])
def test_nt_xent__closed_form_for_aligned_orthogonal_views(n, temperature):
    z = torch.eye(n, dtype=torch.float64)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / temperature))
    assert nt_xent(z, z, temperature=temperature).item() == pytest.approx(expected, rel=1e-12)


def test_nt_xent__matches_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    a, b = _pair(n=12, d=8)
    labels = torch.arange(12).repeat(2)
    for t in (0.07, 0.5):
        ref = pml.NTXentLoss(temperature=t)(torch.cat([a, b]), labels)
        torch.testing.assert_close(nt_xent(a, b, temperature=t), ref, rtol=1e-6, atol=1e-6)


def test_nt_xent__matches_lightly():
    lightly = load_module("lightly", "loss.ntx_ent_loss")
    a, b = _pair(n=12, d=8)
    for t in (0.1, 0.5):
        ref = lightly.NTXentLoss(temperature=t)(a, b)
        torch.testing.assert_close(nt_xent(a, b, temperature=t), ref, rtol=1e-6, atol=1e-6)


def test_nt_xent__symmetric_permutation_and_scale_invariant():
    a, b = _pair()
    base = nt_xent(a, b)
    perm = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(nt_xent(b, a), base)
    torch.testing.assert_close(nt_xent(a[perm], b[perm]), base)
    torch.testing.assert_close(nt_xent(3.7 * a, 0.2 * b), base)


def test_nt_xent__single_pair_is_zero_and_differentiable():
    a, b = _pair(n=1)
    a.requires_grad_()
    loss = nt_xent(a, b)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_nt_xent__gradcheck():
    a, b = _pair(n=4, d=3)
    a.requires_grad_()
    b.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: nt_xent(x, y, temperature=0.3), (a, b))


def test_nt_xent_loss_module__delegates():
    a, b = _pair()
    torch.testing.assert_close(NTXentLoss(temperature=0.2)(a, b), nt_xent(a, b, temperature=0.2))


# --- info_nce -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_queue", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_info_nce__matches_oracle_in_value_and_gradient(with_queue, normalize):
    q, k = _pair()
    queue = torch.randn(9, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    negatives = queue if with_queue else None
    ours, ours_grad = _grads(
        lambda x, y: info_nce(x, y, negatives=negatives, temperature=0.2, normalize=normalize), q, k
    )
    ref, ref_grad = _grads(lambda x, y: oracles.info_nce(x, y, negatives, 0.2, normalize), q, k)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for g_ours, g_ref in zip(ours_grad, ref_grad, strict=True):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-10)


def test_info_nce__empty_queue_equals_no_queue():
    q, k = _pair()
    empty = torch.empty(0, 5, dtype=torch.float64)
    torch.testing.assert_close(info_nce(q, k, negatives=empty), info_nce(q, k))


def test_info_nce__closed_form_and_queue_gradient():
    z = torch.eye(3, dtype=torch.float64)
    assert info_nce(z, z, temperature=1.0).item() == pytest.approx(math.log(1 + 2 / math.e))
    queue = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    q, k = _pair(n=3, d=3)
    q.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, n: info_nce(x, k, negatives=n, temperature=0.5), (q, queue))


def test_info_nce_loss_module__delegates():
    q, k = _pair()
    neg = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(
        InfoNCELoss(temperature=0.3)(q, k, neg), info_nce(q, k, negatives=neg, temperature=0.3)
    )


# --- clip_loss ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_clip_loss__matches_oracle_in_value_and_gradient(normalize):
    a, b = _pair()
    ours, ours_grad = _grads(lambda x, y: clip_loss(x, y, temperature=0.1, normalize=normalize), a, b)
    ref, ref_grad = _grads(lambda x, y: oracles.clip(x, y, 10.0, normalize), a, b)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for g_ours, g_ref in zip(ours_grad, ref_grad, strict=True):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-10)


def test_clip_loss__matches_open_clip():
    open_clip_loss = load_module("open_clip", "loss")
    a, b = _pair(n=10, d=8)
    a_n, b_n = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    for scale in (1 / 0.07, 20.0):
        ref = open_clip_loss.ClipLoss()(a_n, b_n, torch.tensor(scale, dtype=torch.float64))
        torch.testing.assert_close(clip_loss(a, b, temperature=1 / scale), ref, rtol=1e-6, atol=1e-6)
        log_scale = torch.tensor(math.log(scale), dtype=torch.float64)
        torch.testing.assert_close(clip_loss(a, b, logit_scale=log_scale), ref, rtol=1e-6, atol=1e-6)


def test_clip_loss__logit_scale_gradient_matches_finite_difference():
    a, b = _pair()
    s = torch.tensor(math.log(1 / 0.2), dtype=torch.float64, requires_grad=True)
    clip_loss(a, b, logit_scale=s).backward()
    eps = 1e-4

    def at(value: float) -> float:
        return oracles.clip(a, b, math.exp(value)).item()

    numeric = (at(s.item() + eps) - at(s.item() - eps)) / (2 * eps)
    assert s.grad is not None
    assert s.grad.item() == pytest.approx(numeric, rel=1e-4)


def test_clip_loss__logit_scale_is_clamped_at_100():
    a, b = _pair()
    a, b = a.float(), b.float()
    big = torch.tensor(math.log(1000.0), requires_grad=True)
    loss = clip_loss(a, b, logit_scale=big)
    torch.testing.assert_close(loss, clip_loss(a, b, temperature=0.01), rtol=1e-6, atol=1e-6)
    loss.backward()
    assert big.grad is not None and big.grad.item() == 0.0  # clamped: no gradient pushes it further


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", [100.0, 1000.0, 1e30])
def test_clip_loss__logit_scale_past_exp_overflow_has_a_zero_not_nan_gradient(dtype, value):
    # exp(1000) is inf even in float64; clamping after the exponential gave 0 * inf = NaN for the scale.
    a, b = (t.to(dtype) for t in _pair())
    big = torch.tensor(value, dtype=dtype, requires_grad=True)
    loss = clip_loss(a, b, logit_scale=big)
    torch.testing.assert_close(loss, clip_loss(a, b, temperature=0.01), rtol=1e-6, atol=1e-6)
    loss.backward()
    assert big.grad is not None and big.grad.item() == 0.0


def test_clip_loss__symmetric_and_permutation_invariant():
    a, b = _pair()
    perm = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(clip_loss(a, b), clip_loss(b, a))
    torch.testing.assert_close(clip_loss(a[perm], b[perm]), clip_loss(a, b))


def test_clip_loss__gradcheck_including_logit_scale():
    a, b = _pair(n=4, d=3)
    s = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    a.requires_grad_()
    b.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y, scale: clip_loss(x, y, logit_scale=scale), (a, b, s))


def test_clip_loss__temperature_and_logit_scale_are_exclusive():
    a, b = _pair()
    with pytest.raises(ValueError, match="either temperature or logit_scale"):
        clip_loss(a, b, temperature=0.1, logit_scale=torch.tensor(2.0))
    with pytest.raises(TypeError, match="logit_scale must be a scalar tensor"):
        clip_loss(a, b, logit_scale=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"logit_scale must be a floating scalar tensor, got shape \(2,\)"):
        clip_loss(a, b, logit_scale=torch.ones(2))


def test_clip_loss_module__fixed_and_learnable():
    a, b = _pair()
    torch.testing.assert_close(ClipLoss(temperature=0.2)(a, b), clip_loss(a, b, temperature=0.2))
    torch.testing.assert_close(ClipLoss()(a, b), clip_loss(a, b))
    s = torch.tensor(2.0)
    torch.testing.assert_close(ClipLoss()(a, b, logit_scale=s), clip_loss(a, b, logit_scale=s))
