"""Uniformity as a loss: equal to a loop over pairs written from the paper and to the diagnostic, with exact
gradients, and defined for every batch size."""

from __future__ import annotations

import math

import pytest
import torch

from contrastlab.diagnostics import uniformity as uniformity_diagnostic
from contrastlab.losses import UniformityLoss, uniformity_loss


def _oracle(z: torch.Tensor, t: float) -> float:
    """log of the mean over i < j of exp(-t ||u_i - u_j||²), u the unit rows (Wang & Isola 2020, Eq. 5)."""
    u = [row / row.norm() for row in z.double()]
    pairs = [(i, j) for i in range(len(u)) for j in range(i + 1, len(u))]
    values = [math.exp(-t * float((u[i] - u[j]).pow(2).sum())) for i, j in pairs]
    return math.log(sum(values) / len(values))


@pytest.mark.parametrize(("n", "d", "t"), [(2, 3, 2.0), (7, 4, 2.0), (16, 8, 0.5), (5, 2, 10.0)])
def test_uniformity_loss__equals_the_pair_loop_and_the_diagnostic(n, d, t):
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(n * d))
    value = float(uniformity_loss(z, t=t))
    assert value == pytest.approx(_oracle(z, t), abs=1e-5)
    assert value == pytest.approx(uniformity_diagnostic(z.numpy(), t=t), abs=1e-5)
    assert float(UniformityLoss(t=t)(z)) == value


def test_uniformity_loss__gradcheck_and_degenerate_batches():
    z = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: uniformity_loss(x, t=2.0), (z,))
    one = torch.randn(1, 3, requires_grad=True)
    loss = uniformity_loss(one)
    loss.backward()
    assert float(loss) == 0.0 and one.grad is not None  # no pair: a connected zero
    collapsed = uniformity_loss(torch.ones(4, 3))
    assert float(collapsed) == pytest.approx(0.0, abs=1e-6)  # one point: the maximum, 0
    half = uniformity_loss(torch.randn(8, 4).half())
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_uniformity_loss__bad_input_names_the_argument():
    with pytest.raises(ValueError, match="z must be 2-D"):
        uniformity_loss(torch.zeros(3))
    with pytest.raises(ValueError, match="t"):
        uniformity_loss(torch.zeros(3, 2), t=0.0)


def test_the_uniformity_term_trains_and_is_logged(tmp_path):
    from contrastlab.train import train, validate_config
    from tests.train.test_trainer import TINY

    raw = {**TINY, "objective": {"uniformity": {"weight": 0.5}}, "trainer": {**TINY["trainer"], "epochs": 1}}
    result = train(validate_config(raw), tmp_path / "run", progress=False, quiet=True)
    row = result.history[0]
    assert math.isfinite(row["train/uniformity"]) and row["weight/uniformity"] == 0.5
