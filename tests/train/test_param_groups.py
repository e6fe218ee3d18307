"""Every trainable parameter of every built-in model is handed to the optimiser, and one step moves it.

The invariant, not an example: a forgotten embedding table (Graphormer's degree/spatial/bond embeddings,
DeBERTa's relative-position embeddings) stays bit-identical through training otherwise.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contrastlab.models import ContrastiveModel, build_model
from contrastlab.train.config import TrainerConfig
from contrastlab.train.optim import param_groups


def _graph_batch(num_features: int, num_edge_features: int) -> Any:
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(0)
    graphs = []
    for n in (5, 7, 4):
        src = torch.arange(n - 1)
        edge_index = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], dim=1)
        graphs.append(Data(x=torch.randn(n, num_features, generator=g), edge_index=edge_index,
                           edge_attr=torch.randn(edge_index.shape[1], num_edge_features, generator=g)))
    return Batch.from_data_list(graphs)


def _tiny_text_folder(tmp_path: Path, kind: str) -> Path:
    """A randomly initialised transformer of family ``kind`` saved with the built-in MiniLM's tokenizer."""
    import transformers

    from contrastlab.models.text import builtin_model_path

    common = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "max_position_embeddings": 64}
    if kind == "bert":
        config: Any = transformers.BertConfig(**common)
    elif kind == "deberta-v2":
        config = transformers.DebertaV2Config(**common, relative_attention=True, position_buckets=16,
                                              pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
                                              max_relative_positions=32)
    else:
        config = transformers.Qwen2Config(**common, num_key_value_heads=2, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config)
    folder = tmp_path / kind
    model.save_pretrained(folder)
    source = builtin_model_path()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    return folder


def _text_batch(encoder: Any) -> Any:
    from contrastlab.data.text import TokenBatch

    tok = encoder.tokenizer(["a small test", "another sentence that is longer", "three"], padding=True,
                            return_tensors="pt")
    return TokenBatch(tok["input_ids"], tok["attention_mask"])


def _models(tmp_path: Path) -> dict[str, tuple[ContrastiveModel, Any]]:
    common = {"num_outputs": 3, "hidden_dims": [16, 16], "embedding_dim": 8, "projection_dim": 8,
              "dropout": 0.0}
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    graph = _graph_batch(6, 4)
    models: dict[str, tuple[ContrastiveModel, Any]] = {
        "mlp": (build_model("mlp", num_features=5, **common), x),
        "mlp+cosine+auxiliary": (build_model("mlp", num_features=5, head="cosine", num_auxiliary=2, **common),
                                 x),
        "gine": (build_model("gine", num_features=6, num_edge_features=4,
                             pooling=["mean", "attention", "set"], **common), graph),
        "graphormer": (build_model("graphormer", num_features=6, num_edge_features=4, **common), graph),
        "graphormer-linear": (build_model("graphormer", num_features=6, num_edge_features=4,
                                          attention="linear", **common), graph),
    }
    for kind in ("bert", "deberta-v2", "qwen2"):
        model = build_model("transformer", num_features=0, path=str(_tiny_text_folder(tmp_path, kind)),
                            **common)
        models[kind] = (model, _text_batch(model.encoder))
    lora = build_model("transformer", num_features=0, path=str(tmp_path / "bert"),
                       lora={"r": 2, "target_modules": ["query", "value"]}, **common)
    models["bert-lora"] = (lora, _text_batch(lora.encoder))
    return models


def _step_changes(model: ContrastiveModel, inputs: Any, cfg: TrainerConfig) -> tuple[set[str], set[str]]:
    """(trainable names that did not move, frozen names that did) after two AdamW steps on every output."""
    groups = param_groups(model, cfg)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)  # decay alone would move a gradient-less tensor
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    g = torch.Generator().manual_seed(2)
    for _ in range(2):  # LoRA's B starts at zero, so its A has a zero gradient until B has moved once
        out = model(inputs)
        loss = sum((t.float() * torch.randn(t.shape, generator=g)).sum()
                   for t in (out.logits, out.embedding, out.projection, out.auxiliary) if t is not None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    return trainable - moved, moved - trainable


def test_optimiser_steps_move_every_trainable_parameter_of_every_built_in_model(tmp_path, no_network):
    for name, (model, inputs) in _models(tmp_path).items():
        stuck, moved_frozen = _step_changes(model, inputs, TrainerConfig(lr=1e-2))
        assert not stuck, f"{name}: parameters the optimiser never moved: {sorted(stuck)[:10]}"
        assert not moved_frozen, f"{name}: frozen parameters moved: {sorted(moved_frozen)[:10]}"
        if name == "bert-lora":  # the base weights stay frozen; only adapters and heads train
            assert all("lora_" in n or not n.startswith("encoder.") for n, p in model.named_parameters()
                       if p.requires_grad)


def test_optimiser_steps_with_freezing_move_exactly_the_unfrozen_parameters(tmp_path, no_network):
    for name, (model, inputs) in _models(tmp_path).items():
        cfg = TrainerConfig(lr=1e-2, head_lr=1e-3, layer_decay=0.5, freeze_all_but_last=1)
        stuck, moved_frozen = _step_changes(model, inputs, cfg)
        assert not stuck and not moved_frozen, name
        bottom = model.encoder_layers()[0]
        assert not any(p.requires_grad for p in bottom.parameters()), name


def test_fusion_model__every_trainable_parameter_moves_and_the_frozen_text_tower_does_not(no_network):
    from tests.fusion.test_model import FORMULAS, _data, _model  # the fusion tests' own tiny model and data

    for text in ({"max_length": 16}, {"max_length": 16, "freeze": True},
                 {"max_length": 16, "lora": {"r": 2, "target_modules": ["query", "value"]}}):
        model, data = _model(text=text), _data()
        data.tokenize(model.encoder.tokenizer, model.encoder.max_length)
        stuck, moved_frozen = _step_changes(model, data.take(torch.arange(len(FORMULAS))),
                                            TrainerConfig(lr=1e-2))
        assert not stuck and not moved_frozen, (text, sorted(stuck)[:5], sorted(moved_frozen)[:5])


def test_param_groups__a_parameter_outside_every_group_is_an_error_naming_it():
    model = build_model("mlp", num_features=4, num_outputs=2, hidden_dims=[8], embedding_dim=4,
                        projection_dim=4, dropout=0.0)
    model.encoder.register_parameter("temperature", nn.Parameter(torch.ones(())))  # outside .layers
    groups = param_groups(model, TrainerConfig())
    names = [n for g in groups for n in g["param_names"]]
    assert "encoder.temperature" in names and len(names) == len(set(names))
    assert sorted(names) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
