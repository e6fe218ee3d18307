"""The term registry: one entry per term (config, needs, loss call), and the companions the trainer builds
from the needs, never the objective."""

from __future__ import annotations

import typing

import pytest
import torch
from torch import nn

import contrastlab
from contrastlab.train.build import build_parts
from contrastlab.train.config import ConfigError, ObjectiveConfig, TermConfig, validate
from contrastlab.train.objective import Objective
from contrastlab.train.terms import BUILT_IN_TERMS, BatchOutputs, Needs, get_term
from tests.train.test_trainer import TINY


@pytest.mark.parametrize("name", BUILT_IN_TERMS)
def test_every_built_in_term_is_a_config_field_typed_with_its_entrys_config(name):
    annotation = typing.get_type_hints(ObjectiveConfig)[name]
    assert get_term(name).config in typing.get_args(annotation)


def _parts(objective: dict, views: int = 2):
    raw = {**TINY, "objective": objective, "trainer": {**TINY["trainer"], "views": {"count": views}}}
    return build_parts(validate(raw), torch.device("cpu"), rank=0, world=1)


@pytest.mark.parametrize(
    ("objective", "momentum", "reference"),
    [
        ({"supcon": {"weight": 0.1}}, False, False),
        ({"moco": {"weight": 0.1, "queue_size": 8}}, True, False),
    ],
)
def test_the_trainer_builds_a_terms_companions_only_when_it_needs_them(objective, momentum, reference):
    parts = _parts(objective)
    assert (parts.momentum is not None, parts.queue is not None) == (momentum, momentum)
    assert (parts.reference is not None) == reference
    for companion in (parts.momentum, parts.reference):
        if companion is not None:
            assert not any(p.requires_grad for p in companion.parameters())
    # The objective holds weights only: no module, no queue, nothing a checkpoint would have to carry besides.
    assert not [k for k, v in vars(parts.objective).items() if isinstance(v, nn.Module)]
    assert set(parts.objective.state_dict()) == {"weights"}


def test_a_frozen_reference_is_built_for_similarity_protection():
    raw = {**TINY, "objective": {"task": "arcface", "similarity_protection": {"weight": 1.0}}}
    parts = build_parts(validate(raw), torch.device("cpu"), rank=0, world=1)
    assert parts.reference is not None and parts.momentum is None
    assert not any(p.requires_grad for p in parts.reference.parameters())
    for name, tensor in parts.reference.state_dict().items():
        assert torch.equal(tensor, parts.model.state_dict()[name])


def test_a_registered_terms_needs_are_checked_when_the_config_is():
    def pair(batch, cfg):
        return (batch.views[0].projection - batch.views[1].projection).pow(2).sum(-1).mean()

    contrastlab.register_term("pair_for_test", pair, needs=Needs(views=2, labels=True))
    with pytest.raises(ConfigError, match=r"\['pair_for_test'\] compare 2 views.*trainer.views.count=2"):
        validate({"objective": {"pair_for_test": {"weight": 0.1}}})
    with pytest.raises(ConfigError, match=r"\['pair_for_test'\] need class labels; objective.task='mse'"):
        validate({"objective": {"task": "mse", "pair_for_test": {"weight": 0.1}},
                  "trainer": {"views": {"count": 2}}})  # fmt: skip
    config = validate({"objective": {"pair_for_test": {"weight": 0.5}}, "trainer": {"views": {"count": 2}}})
    objective = Objective(config.objective)
    assert objective.needs.views == 2 and objective.needs.labels
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(4, 3, generator=g) for _ in range(2)]
    outs = [contrastlab.models.ModelOutput(torch.randn(4, 2, generator=g), v, v) for v in views]
    y = torch.tensor([0, 1, 0, 1])
    value = objective(BatchOutputs(outs, y, labels=y), epoch=0)
    expected = (views[0] - views[1]).pow(2).sum(-1).mean()
    torch.testing.assert_close(value.terms["pair_for_test"], expected)
    torch.testing.assert_close(value.total, value.task + 0.5 * expected)


def test_register_term_refuses_what_cannot_be_a_term():
    with pytest.raises(ValueError, match="built-in term"):
        contrastlab.register_term("moco", lambda batch, cfg: batch.targets.sum())
    with pytest.raises(ValueError, match="subclass of TermConfig"):
        contrastlab.register_term("bad_config_for_test", lambda b, c: b.targets.sum(), config=dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"loss must be callable as loss\(batch, cfg\)"):
        contrastlab.register_term("bad_loss_for_test", "not a function")  # type: ignore[arg-type]
    assert issubclass(get_term("supcon").config, TermConfig)
