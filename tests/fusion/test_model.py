"""The two-tower fusion model: shapes, gradient flow through every fusion layer, stages for diagnostics."""

from __future__ import annotations

import pytest
import torch

from contrastlab.data.fusion import FusionDataset, composition_graph
from contrastlab.diagnostics.layers import layer_cka
from contrastlab.losses import clip_loss
from contrastlab.models import build_model
from contrastlab.models.fusion import STAGES
from contrastlab.train.config import ObjectiveConfig
from contrastlab.train.diagnose import _stage_label, _stage_names
from contrastlab.train.objective import Objective
from contrastlab.train.terms import BatchOutputs

VECTORS = {e: (float(i), float(i % 3)) for i, e in enumerate(["Fe", "O", "Ni", "Na", "Cl", "Si"])}
FORMULAS = ["Fe2O3", "NiO", "NaCl", "SiO2", "Fe", "Na2O", "FeNi3", "SiCl4"]


def _data() -> FusionDataset:
    from contrastlab.data.fusion import parse_formula

    graphs = [composition_graph(parse_formula(f), VECTORS) for f in FORMULAS]
    return FusionDataset("toy", graphs, FORMULAS, torch.arange(len(FORMULAS), dtype=torch.float32),
                         "regression", 3, 2)  # fmt: skip


def _model(**options):
    options = {"middle_fusion_layers": [0, -1], "middle_fusion_hidden_dim": 16, "middle_fusion_num_heads": 2,
               "cross_modal_num_heads": 2, "text": {"max_length": 16}, **options}  # fmt: skip
    torch.manual_seed(0)
    return build_model("fusion", num_features=3, num_outputs=1, hidden_dims=[8, 8, 8], embedding_dim=12,
                       projection_dim=6, dropout=0.0, num_edge_features=2, **options)  # fmt: skip


@pytest.fixture(scope="module")
def model_and_batch():
    model = _model()
    data = _data()
    data.tokenize(model.encoder.tokenizer, model.encoder.max_length)
    return model, data.take(torch.arange(len(FORMULAS)))


def test_outputs_and_views_have_the_documented_shapes(model_and_batch):
    model, batch = model_and_batch
    out = model(batch)
    assert out.logits.shape == (8, 1) and out.embedding.shape == (8, 12) and out.projection.shape == (8, 6)
    assert {k: tuple(v.shape) for k, v in out.extras.items()} == {"graph": (8, 6), "text": (8, 6)}
    assert torch.allclose(out.extras["graph"].norm(dim=-1), torch.ones(8), atol=1e-5)
    assert model.encoder.middle_fusion_layers == [0, 2]


def test_gradient_reaches_every_fusion_layer_and_both_towers(model_and_batch):
    model, batch = model_and_batch
    model.train()
    model.zero_grad()
    out = model(batch)
    (out.logits.sum() + clip_loss(out.extras["graph"], out.extras["text"], temperature=0.1)).backward()
    encoder = model.encoder
    modules = {"middle 0": encoder.middle["0"], "middle 2": encoder.middle["2"], "text tower": encoder.text,
               "fine-grained": encoder.fine_grained, "final": encoder.cross_modal,
               "graph block 0": encoder.graph_blocks[0]}  # fmt: skip
    for name, module in modules.items():
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    # Every encoder parameter sits in exactly one layer (freezing and layer-wise LR decay see them all).
    in_layers = [id(p) for layer in model.encoder_layers() for p in layer.parameters()]
    assert len(in_layers) == len(set(in_layers)) == len(list(encoder.parameters()))


def test_a_frozen_text_tower_is_cached_and_equals_its_eval_forward(model_and_batch):
    _, batch = model_and_batch
    frozen = _model(text={"max_length": 16, "freeze": True})
    assert not any(p.requires_grad for p in frozen.encoder.text.parameters())
    frozen.train()
    cached = frozen.encoder._token_states(batch.tokens)
    assert len(frozen.encoder._text_cache) == len(set(FORMULAS))
    frozen.encoder.text.eval()
    direct = frozen.encoder.text.transformer(
        input_ids=batch.tokens.input_ids, attention_mask=batch.tokens.attention_mask
    ).last_hidden_state
    mask = batch.tokens.attention_mask.bool()
    torch.testing.assert_close(cached[mask], direct[mask], atol=1e-5, rtol=1e-5)
    assert bool((cached[~mask] == 0).all())
    again = frozen.encoder._token_states(batch.tokens)  # served from the cache, in a new batch order too
    assert torch.equal(again, cached)
    assert "_text_cache" not in str(list(frozen.state_dict()))


def test_stage_names_reach_the_diagnostics_and_twins_have_stage_cka_one(model_and_batch):
    model, batch = model_and_batch
    names = _stage_names(model)
    assert [_stage_label(n) for n in names] == [*STAGES, "head", "projection"]
    twin = _model()
    twin.load_state_dict(model.state_dict())
    matrix = layer_cka(model, twin, [batch], layers_a=names)
    assert matrix.shape == (6, 6)
    assert all(matrix[i, i] == pytest.approx(1.0, abs=1e-6) for i in range(6))
    other = _model(middle_fusion_layers=[])
    torch.manual_seed(1)
    for p in other.parameters():
        p.data.add_(torch.randn_like(p) * 0.5)
    assert layer_cka(model, other, [batch], layers_a=names)[3, 3] < 0.999  # a different model's fused stage


def test_the_clip_term_compares_the_two_towers(model_and_batch):
    model, batch = model_and_batch
    model.eval()
    out = model(batch)
    objective = Objective(ObjectiveConfig(task="l1", clip={"weight": 0.3, "temperature": 0.05}))
    value = objective(BatchOutputs([out], torch.zeros(8)), 0)
    expected = clip_loss(out.extras["graph"], out.extras["text"], temperature=0.05)
    assert value.terms["clip"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert value.total.item() == pytest.approx(value.task.item() + 0.3 * expected.item(), rel=1e-5)
    plain = build_model(
        "mlp", num_features=4, num_outputs=1, hidden_dims=[8], embedding_dim=8, projection_dim=4
    )
    with pytest.raises(ValueError, match=r"model\.name=fusion"):
        objective(BatchOutputs([plain(torch.randn(3, 4))], torch.zeros(3)), 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"middle_fusion_layers": [3]}, r"\[3\] are not graph blocks .*blocks 0..2"),
        ({"middle_fusion_num_heads": 3}, "middle_fusion_num_heads=3 must be >= 1 and divide the width 16"),
        ({"cross_modal_num_heads": 5}, "cross_modal_num_heads=5 must .* width 12"),
        ({"text": {"frozen": True}}, r"model.options.text: unknown key\(s\) \['frozen'\]"),
        ({"text": {"freeze": True, "lora": {"r": 4}}}, "freeze the LoRA adapters too"),
    ],
)
def test_bad_settings_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        _model(**options)


def test_the_graph_tower_alone_is_the_fusion_models_graph_tower_without_the_text(model_and_batch):
    _, batch = model_and_batch
    alone = _model(text_tower=False)
    names = [name for name, _ in alone.encoder.named_parameters()]
    assert names and all(n.startswith(("graph_embed.", "graph_blocks.", "graph_readout.")) for n in names)
    # Same seed, same graph tower: without middle fusion, the full model's graph vector is this embedding.
    full = _model(middle_fusion_layers=[])
    alone.eval()
    full.eval()
    with torch.no_grad():
        torch.testing.assert_close(alone.encoder(batch).embedding, full.encoder(batch).extras["graph"])
    out = alone(batch)
    assert out.embedding.shape == (8, 12) and set(out.extras) == {"graph"}
    assert [_stage_label(n) for n in _stage_names(alone)] == ["graph", "fused", "head", "projection"]
    alone.train()
    alone.zero_grad()
    alone(batch).logits.sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in alone.encoder.parameters())
    in_layers = [id(p) for layer in alone.encoder_layers() for p in layer.parameters()]
    assert len(in_layers) == len(set(in_layers)) == len(names)
    objective = Objective(ObjectiveConfig(task="l1", clip={"weight": 0.0}))
    with pytest.raises(ValueError, match=r"no text view.*text_tower=false.*objective\.clip=null"):
        objective(BatchOutputs([out], torch.zeros(8)), 0)
