from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastlab.losses import RDropLoss, SimilarityProtectionLoss, rdrop_kl, similarity_protection
from tests.losses import oracles


def _logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_rdrop_kl__matches_oracle_on_sample_logits():
    a, b = _logits(5, 4), _logits(5, 4, seed=1)
    torch.testing.assert_close(rdrop_kl(a, b), oracles.rdrop_kl(a, b))


def test_rdrop_kl__matches_oracle_on_masked_token_logits():
    a, b = _logits(3, 6, 4), _logits(3, 6, 4, seed=1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(rdrop_kl(a, b, mask=mask), oracles.rdrop_kl(a, b, mask))
    torch.testing.assert_close(rdrop_kl(a, b, mask=mask.bool()), oracles.rdrop_kl(a, b, mask))


def test_rdrop_kl__matches_torch_kl_div_and_is_symmetric():
    a, b = _logits(7, 3), _logits(7, 3, seed=2)
    lp, lq = F.log_softmax(a, -1), F.log_softmax(b, -1)
    ref = (
        F.kl_div(lq, lp, log_target=True, reduction="batchmean")
        + F.kl_div(lp, lq, log_target=True, reduction="batchmean")
    ) / 2
    torch.testing.assert_close(rdrop_kl(a, b), ref)
    torch.testing.assert_close(rdrop_kl(b, a), rdrop_kl(a, b))


def test_rdrop_kl__independent_of_batch_size_and_length():
    a, b = _logits(4, 5, 3), _logits(4, 5, 3, seed=1)
    torch.testing.assert_close(rdrop_kl(a.repeat(3, 2, 1), b.repeat(3, 2, 1)), rdrop_kl(a, b))


def test_rdrop_kl__identical_is_zero_and_extreme_logits_are_finite():
    a = _logits(4, 3)
    assert rdrop_kl(a, a).item() == 0.0
    big = torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float16, requires_grad=True)
    other = torch.tensor([[-1e4, 1e4, 0.0]], dtype=torch.float16)
    loss = rdrop_kl(big, other)
    loss.backward()
    assert torch.isfinite(loss) and big.grad is not None and torch.isfinite(big.grad).all()


def test_rdrop_kl__all_masked_gives_connected_zero():
    a = _logits(2, 3, 4).requires_grad_()
    loss = rdrop_kl(a, _logits(2, 3, 4, seed=1), mask=torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and a.grad is not None


def test_rdrop_kl__gradcheck():
    a, b = _logits(3, 4).requires_grad_(), _logits(3, 4, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(rdrop_kl, (a, b))


def test_rdrop_kl__bad_mask():
    a = _logits(2, 3, 4)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\) \(N, T\), got \(2, 4\)"):
        rdrop_kl(a, a, mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask applies to"):
        rdrop_kl(a[:, 0], a[:, 0], mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be bool or integer"):
        rdrop_kl(a, a, mask=torch.ones(2, 3))


def test_rdrop_loss_module__delegates():
    a, b = _logits(3, 4), _logits(3, 4, seed=1)
    torch.testing.assert_close(RDropLoss()(a, b), rdrop_kl(a, b))


def test_similarity_protection__matches_oracle_and_detaches_reference():
    sim = torch.rand(10, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    ref = torch.rand(10, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    loss = similarity_protection(sim, ref, margin=0.05)
    torch.testing.assert_close(loss, oracles.similarity_protection(sim, ref, 0.05))
    loss.backward()
    assert ref.grad is None  # the frozen reference is a constant
    active = (ref - sim - 0.05 > 0).double()
    torch.testing.assert_close(sim.grad, -active / 10)


def test_similarity_protection__any_matching_shape_and_module():
    sim, ref = torch.zeros(2, 3), torch.ones(2, 3)
    assert similarity_protection(sim, ref, margin=0.0).item() == 1.0
    assert SimilarityProtectionLoss(margin=0.5)(sim, ref).item() == 0.5
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(3,\)"):
        similarity_protection(sim, torch.ones(3))
