from __future__ import annotations

import math

import pytest
import torch

from contrastlab.losses import (
    FocalSupConLoss,
    MarginContrastiveLoss,
    SupConLoss,
    focal_supcon,
    margin_contrastive,
    nt_xent,
    supcon,
)
from tests.losses import oracles


def _views(n: int = 6, v: int = 2, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, d, generator=g, dtype=torch.float64)


def _labels(n: int = 6, classes: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randint(0, classes, (n,), generator=g)


def _value_and_grad(fn, x):
    leaf = x.detach().clone().requires_grad_()
    value = fn(leaf)
    return value.detach(), torch.autograd.grad(value, leaf)[0]


def _assert_same(fn, oracle, x, rtol=1e-9):
    ours, g_ours = _value_and_grad(fn, x)
    ref, g_ref = _value_and_grad(oracle, x)
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=rtol, atol=1e-10)


# --- supcon -------------------------------------------------------------------------------------------

SUPCON_CASES = [
    # (views V, with labels, contrast_mode, base_temperature, normalize)
    (2, True, "all", None, True),
    (3, True, "all", None, True),
    (2, False, "all", None, True),
    (2, True, "one", None, True),
    (2, True, "all", 0.07, True),
    (2, True, "all", None, False),
    (1, True, "all", None, True),
]


@pytest.mark.parametrize(("v", "with_labels", "mode", "base", "normalize"), SUPCON_CASES)
def test_supcon__matches_oracle_in_value_and_gradient(v, with_labels, mode, base, normalize):
    x = _views(v=v)
    labels = _labels() if with_labels else None
    _assert_same(
        lambda f: supcon(
            f, labels, temperature=0.1, base_temperature=base, contrast_mode=mode, normalize=normalize
        ),
        lambda f: oracles.supcon(f, labels, 0.1, base, mode, normalize),
        x,
    )


def test_supcon__flat_input_matches_single_view_input():
    x, labels = _views(v=1), _labels()
    torch.testing.assert_close(supcon(x[:, 0], labels), supcon(x, labels))


def test_supcon__without_labels_is_nt_xent():
    x = _views(v=2)
    torch.testing.assert_close(supcon(x, temperature=0.3), nt_xent(x[:, 0], x[:, 1], temperature=0.3))


def test_supcon__base_temperature_rescales_like_the_reference():
    x, labels = _views(), _labels()
    plain = supcon(x, labels, temperature=0.1)
    torch.testing.assert_close(supcon(x, labels, temperature=0.1, base_temperature=0.07), plain * 0.1 / 0.07)


def test_supcon__matches_pytorch_metric_learning_on_flat_input():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    g = torch.Generator().manual_seed(7)
    x = torch.randn(16, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(4).repeat(4)  # every anchor has three positives
    for t in (0.07, 0.5):
        torch.testing.assert_close(supcon(x, labels, temperature=t), pml.SupConLoss(temperature=t)(x, labels))


def test_supcon__anchors_without_positive_leave_the_mean():
    x = _views(n=5, v=1)
    labels = torch.tensor([0, 0, 1, 1, 2])  # sample 4 is alone
    kept = supcon(x[:4], labels[:4], temperature=0.2)
    # Sample 4 is still a negative of the others, so compare with the oracle rather than x[:4].
    ref = oracles.supcon(x, labels, 0.2)
    torch.testing.assert_close(supcon(x, labels, temperature=0.2), ref)
    assert not torch.isclose(kept, ref)


def test_supcon__no_positive_anchor_gives_connected_zero():
    x = _views(n=4, v=1).requires_grad_()
    loss = supcon(x, torch.arange(4))
    loss.backward()
    assert loss.item() == 0.0
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_supcon__closed_form_two_classes():
    # Two classes on orthogonal axes, 2 samples each, one view: positive at cosine 1, two negatives at 0.
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    t = 0.5
    expected = -(1 / t - math.log(math.exp(1 / t) + 2))
    assert supcon(z, torch.tensor([0, 0, 1, 1]), temperature=t).item() == pytest.approx(expected, rel=1e-12)


def test_supcon__gradcheck():
    x = _views(n=4, v=2, d=3).requires_grad_()
    labels = torch.tensor([0, 1, 0, 1])
    assert torch.autograd.gradcheck(lambda f: supcon(f, labels, temperature=0.3), (x,))


def test_supcon__permutation_and_scale_invariance():
    x, labels = _views(), _labels()
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(supcon(x[perm], labels[perm]), supcon(x, labels))
    torch.testing.assert_close(supcon(4.2 * x, labels), supcon(x, labels))


def test_supcon_loss_module__delegates():
    x, labels = _views(), _labels()
    module = SupConLoss(temperature=0.2, base_temperature=0.1, contrast_mode="one")
    torch.testing.assert_close(
        module(x, labels), supcon(x, labels, temperature=0.2, base_temperature=0.1, contrast_mode="one")
    )


# --- focal_supcon -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("with_labels", [True, False])
def test_focal_supcon__matches_oracle_in_value_and_gradient(gamma, with_labels):
    x = _views()
    labels = _labels() if with_labels else None
    _assert_same(
        lambda f: focal_supcon(f, labels, temperature=0.2, gamma=gamma),
        lambda f: oracles.focal_supcon(f, labels, 0.2, gamma),
        x,
    )


def test_focal_supcon__gamma_zero_is_supcon():
    x, labels = _views(), _labels()
    _assert_same(
        lambda f: focal_supcon(f, labels, temperature=0.1, gamma=0.0),
        lambda f: supcon(f, labels, temperature=0.1),
        x,
    )


def test_focal_supcon__down_weights_easy_positives():
    x, labels = _views(), _labels()
    assert focal_supcon(x, labels, gamma=2.0) < supcon(x, labels)


def test_focal_supcon__saturated_positive_with_small_gamma_stays_finite():
    # At τ = 0.01 the positive's probability rounds to exactly 1 in float32; (1 - p)^0.5 must not give NaN.
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    loss = focal_supcon(z, torch.tensor([0, 0, 1, 1]), temperature=0.01, gamma=0.5)
    loss.backward()
    assert torch.isfinite(loss)
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_focal_supcon__gradcheck():
    x = _views(n=4, v=2, d=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda f: focal_supcon(f, temperature=0.3, gamma=2.0), (x,))


def test_focal_supcon_loss_module__delegates():
    x, labels = _views(), _labels()
    torch.testing.assert_close(
        FocalSupConLoss(temperature=0.3, gamma=1.5)(x, labels),
        focal_supcon(x, labels, temperature=0.3, gamma=1.5),
    )


# --- margin_contrastive -------------------------------------------------------------------------------


@pytest.mark.parametrize("margin", [0.0, 0.2, 0.8])
@pytest.mark.parametrize("normalize", [True, False])
def test_margin_contrastive__matches_oracle_in_value_and_gradient(margin, normalize):
    x, labels = _views(n=8, v=1)[:, 0], _labels(n=8)
    _assert_same(
        lambda f: margin_contrastive(f, labels, margin=margin, normalize=normalize),
        lambda f: oracles.margin_contrastive(f, labels, margin, normalize),
        x,
    )


def test_margin_contrastive__multi_view_input_matches_oracle():
    x, labels = _views(n=5, v=2), _labels(n=5, classes=2)
    _assert_same(
        lambda f: margin_contrastive(f, labels, margin=0.3),
        lambda f: oracles.margin_contrastive(f, labels, 0.3),
        x,
    )


def test_margin_contrastive__ties_with_many_equal_similarities():
    # Duplicated rows create exact ties between thresholds and negatives; the hinge is 0 at a tie.
    base = _views(n=3, v=1)[:, 0]
    x = torch.cat([base, base, base])
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    _assert_same(
        lambda f: margin_contrastive(f, labels, margin=0.0),
        lambda f: oracles.margin_contrastive(f, labels, 0.0),
        x,
    )


def test_margin_contrastive__anchors_without_pairs_give_connected_zero():
    x = _views(n=4, v=1)[:, 0].requires_grad_()
    loss = margin_contrastive(x, torch.zeros(4, dtype=torch.long))  # no negatives anywhere
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None


def test_margin_contrastive__memory_is_quadratic_not_cubic():
    # N = 3000: an N x N x N float32 tensor would need 108 GB and fail to allocate on any CI machine.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 16, generator=g, requires_grad=True)
    labels = torch.randint(0, 10, (3000,), generator=g)
    loss = margin_contrastive(x, labels, margin=0.2)
    loss.backward()
    assert torch.isfinite(loss) and x.grad is not None and torch.isfinite(x.grad).all()


def test_margin_contrastive__gradcheck():
    x = _views(n=6, v=1, d=3)[:, 0].requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.autograd.gradcheck(lambda f: margin_contrastive(f, labels, margin=0.5), (x,))


def test_margin_contrastive_loss_module__delegates():
    x, labels = _views(n=6, v=1)[:, 0], _labels()
    torch.testing.assert_close(
        MarginContrastiveLoss(margin=0.4)(x, labels), margin_contrastive(x, labels, margin=0.4)
    )
