"""Bad input raises an error that names the argument, what it received and what was expected."""

from __future__ import annotations

import pytest
import torch

from contrastlab import losses as L

Z = torch.randn(4, 3)
V = torch.randn(4, 2, 3)
Y = torch.tensor([0, 1, 0, 1])

CASES = [
    # (call, exception, message pattern)
    (lambda: L.nt_xent(Z, torch.randn(5, 3)), ValueError, r"z_a and z_b must have the same shape, got \(4, 3\) and \(5, 3\)"),
    (lambda: L.nt_xent(Z, torch.randn(4, 2)), ValueError, r"same shape, got \(4, 3\) and \(4, 2\)"),
    (lambda: L.nt_xent(V, V), ValueError, r"z_a must be 2-D, got shape \(4, 2, 3\)"),
    (lambda: L.nt_xent(Z.long(), Z), TypeError, r"z_a must be a floating-point tensor .* got dtype torch.int64"),
    (lambda: L.nt_xent(Z.numpy(), Z), TypeError, r"z_a must be a torch.Tensor, got ndarray"),
    (lambda: L.nt_xent(Z, Z, temperature=0.0), ValueError, r"temperature must be a finite number > 0, got 0.0"),
    (lambda: L.nt_xent(Z, Z, temperature=-1), ValueError, r"temperature must be a finite number > 0, got -1"),
    (lambda: L.nt_xent(Z, Z, temperature=float("nan")), ValueError, r"temperature must be a finite number > 0, got nan"),
    (lambda: L.nt_xent(Z, Z, temperature="0.1"), TypeError, r"temperature must be a real number, got str '0.1'"),
    (lambda: L.nt_xent(torch.empty(0, 3), torch.empty(0, 3)), ValueError, r"z_a must not be empty, got shape \(0, 3\)"),
    (lambda: L.info_nce(Z, Z, negatives=torch.randn(7, 5)), ValueError, r"negatives must have shape \(K, 3\) to match query's D, got \(7, 5\)"),
    (lambda: L.clip_loss(Z, Z[:2]), ValueError, r"z_a and z_b must have the same shape, got \(4, 3\) and \(2, 3\)"),
    (lambda: L.supcon(Z), ValueError, r"features of shape \(4, 3\) has a single view and no labels were given"),
    (lambda: L.supcon(V[:, :1]), ValueError, r"features of shape \(4, 1, 3\) has a single view and no labels"),
    (lambda: L.supcon(V, torch.tensor([0, 1])), ValueError, r"labels must have shape \(4,\) to match the batch, got \(2,\)"),
    (lambda: L.supcon(V, Y.float()), TypeError, r"labels must have an integer dtype .* got torch.float32"),
    (lambda: L.supcon(V, Y.bool()), TypeError, r"labels must have an integer dtype .* got torch.bool"),
    (lambda: L.supcon(V, [0, 1, 0, 1]), TypeError, r"labels must be a torch.Tensor of integer class ids, got list"),
    (lambda: L.supcon(V, Y[:, None]), ValueError, r"labels must have shape \(4,\) to match the batch, got \(4, 1\)"),
    (lambda: L.supcon(torch.randn(4, 2, 3, 1)), ValueError, r"features must be 2-D or 3-D, got shape \(4, 2, 3, 1\)"),
    (lambda: L.supcon(V, contrast_mode="any"), ValueError, r"contrast_mode must be 'all' or 'one', got 'any'"),
    (lambda: L.supcon(V, base_temperature=0), ValueError, r"base_temperature must be a finite number > 0, got 0"),
    (lambda: L.focal_supcon(V, gamma=-1.0), ValueError, r"gamma must be a finite number >= 0, got -1.0"),
    (lambda: L.margin_contrastive(Z, None), ValueError, r"margin_contrastive needs labels of shape \(N,\); got None"),
    (lambda: L.margin_contrastive(Z, Y, margin=-0.1), ValueError, r"margin must be a finite number >= 0, got -0.1"),
    (lambda: L.margin_contrastive(Z, Y[:3]), ValueError, r"labels must have shape \(4,\) to match the batch, got \(3,\)"),
    (lambda: L.rdrop_kl(Z, torch.randn(4, 5)), ValueError, r"logits_a and logits_b must have the same shape"),
    (lambda: L.similarity_protection(Z.int(), Z), TypeError, r"similarity must be a floating-point tensor"),
    (lambda: L.SupConLoss(temperature=0), ValueError, r"temperature must be a finite number > 0, got 0"),
    (lambda: L.ClipLoss(temperature=-0.1), ValueError, r"temperature must be a finite number > 0, got -0.1"),
    (lambda: L.MarginContrastiveLoss(margin=-1), ValueError, r"margin must be a finite number >= 0, got -1"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), CASES, ids=[c[2][:40] for c in CASES])
def test_bad_input__raises_a_clear_error(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
