from __future__ import annotations

import pytest
import torch

from contrastlab.losses import rdrop_kl, supcon
from contrastlab.models import ModelOutput
from contrastlab.train.config import ObjectiveConfig, ScheduleConfig
from contrastlab.train.objective import Objective, scheduled_weight, task_loss
from contrastlab.train.terms import BatchOutputs


def _outputs(n=8, views=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    outs = []
    for _ in range(views):
        proj = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
        outs.append(ModelOutput(torch.randn(n, 3, generator=g), torch.randn(n, 5, generator=g), proj))
    return outs


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("constant", {}, [0.5, 0.5, 0.5, 0.5]),
        ("linear_warmup", {"warmup_epochs": 2}, [0.25, 0.5, 0.5, 0.5]),
        ("start_at", {"start_epoch": 2}, [0.0, 0.0, 0.5, 0.5]),
        ("cosine_ramp", {"start_epoch": 1, "warmup_epochs": 2}, [0.0, 0.25, 0.5, 0.5]),
    ],
)
def test_scheduled_weight__each_schedule(kind, extra, expected):
    schedule = ScheduleConfig(kind=kind, **extra)
    assert [pytest.approx(scheduled_weight(0.5, schedule, e)) for e in range(4)] == expected


def test_objective__total_is_task_plus_weighted_terms():
    raw = {"supcon": {"weight": 0.3, "temperature": 0.2}, "rdrop": {"weight": 0.5}}
    cfg = ObjectiveConfig.model_validate(raw)
    outs, y = _outputs(), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    value = Objective(cfg)(BatchOutputs(outs, y, labels=y), epoch=0)
    expected_task = (task_loss(cfg, outs[0].logits, y) + task_loss(cfg, outs[1].logits, y)) / 2
    expected_supcon = supcon(torch.stack([o.projection for o in outs], 1), y, temperature=0.2)
    expected_rdrop = rdrop_kl(outs[0].logits, outs[1].logits)
    torch.testing.assert_close(value.task, expected_task)
    torch.testing.assert_close(value.terms["supcon"], expected_supcon)
    torch.testing.assert_close(value.total, expected_task + 0.3 * expected_supcon + 0.5 * expected_rdrop)


def test_objective__zero_weight_term_is_logged_but_not_optimised():
    cfg = ObjectiveConfig.model_validate({"supcon": {"weight": 0.0}})
    outs = _outputs()
    for o in outs:
        o.projection.requires_grad_()
    y = torch.tensor([0, 1] * 4)
    value = Objective(cfg)(BatchOutputs(outs, y, labels=y), epoch=0)
    assert torch.isfinite(value.terms["supcon"]) and not value.terms["supcon"].requires_grad
    torch.testing.assert_close(value.total, value.task)


def test_objective__focal_task_loss_reduces_to_cross_entropy_at_gamma_zero():
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    focal = ObjectiveConfig(task="focal", focal_gamma=0.0, label_smoothing=0.1)
    ce = ObjectiveConfig(task="cross_entropy", label_smoothing=0.1)
    torch.testing.assert_close(task_loss(focal, logits, y), task_loss(ce, logits, y))


def test_objective__auto_lambda_moves_toward_the_target_ratio():
    cfg = ObjectiveConfig.model_validate({"supcon": {"weight": 0.2, "auto_ratio": 1.0}})
    objective = Objective(cfg)
    objective.adapt({"supcon": 0.25})  # term gradient 4x too small: weight doubles (damped)
    assert objective.base_weights["supcon"] == pytest.approx(0.4)
    objective.adapt({"supcon": 1.0})
    assert objective.base_weights["supcon"] == pytest.approx(0.4)
