"""Graph encoders: shapes, batching invariance (padding and masking are right), shortest paths vs scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")
pytest.importorskip("rdkit")

from scipy.sparse.csgraph import shortest_path
from torch_geometric.data import Batch

from contrastlab.data.molecules import smiles_to_graph
from contrastlab.models import build_model
from contrastlab.models.graph import GINEEncoder, GraphormerEncoder, GraphPooling, shortest_path_lengths

SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "CCO", "c1ccccc1", "C[N+](C)(C)CC(=O)[O-]", "C", "CCO.Cl"]


def _encoder(kind, **options):
    cls = {"gine": GINEEncoder, "graphormer": GraphormerEncoder}[kind]
    torch.manual_seed(0)
    return cls(
        num_features=38, num_edge_features=14, embedding_dim=16, hidden_dims=[32, 32], dropout=0.1, **options
    ).eval()


CASES = [
    ("gine", {"pooling": "mean"}),
    ("gine", {"pooling": ["mean", "attention", "set", "sum", "max"]}),
    ("graphormer", {"pooling": "mean"}),
    ("graphormer", {"pooling": ["attention", "set"], "attention": "linear"}),
]


@pytest.mark.parametrize(("kind", "options"), CASES)
def test_one_embedding_per_graph_independent_of_batch_company(kind, options):
    enc = _encoder(kind, **options)
    graphs = [smiles_to_graph(s) for s in SMILES]
    with torch.no_grad():
        together = enc(Batch.from_data_list(graphs))
        alone = torch.cat([enc(Batch.from_data_list([g])) for g in graphs])
    assert together.shape == (len(SMILES), 16)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("kind", "options"), CASES)
def test_gradients_reach_every_parameter(kind, options):
    enc = _encoder(kind, **options).train()
    enc(Batch.from_data_list([smiles_to_graph(s) for s in SMILES])).pow(2).sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_gine_reads_each_graphs_descriptors_beside_its_nodes():
    graphs = [smiles_to_graph(s) for s in SMILES]
    enc = _encoder("gine", num_descriptors=5).train()
    batch = Batch.from_data_list(graphs)
    batch.descriptors = torch.randn(len(SMILES), 5, generator=torch.Generator().manual_seed(1))
    enc(batch).pow(2).sum().backward()
    assert [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    in_layers = {id(p) for layer in enc.layers for p in layer.parameters()}
    assert all(id(p) in in_layers for p in enc.parameters())  # LR decay and freezing see every parameter
    enc.eval()
    with torch.no_grad():
        before = enc(batch)
        changed = batch.clone()
        changed.descriptors = batch.descriptors.clone()
        changed.descriptors[2] += 1.0
        after = enc(changed)
    moved = (after - before).abs().sum(dim=1) > 1e-6
    assert moved.tolist() == [i == 2 for i in range(len(SMILES))]  # only that graph's embedding moves
    del batch.descriptors
    with pytest.raises(ValueError, match=r"reads 5 descriptors per graph.*shape None"):
        enc(batch)


def test_clipped_descriptors_bound_what_an_out_of_range_value_can_do():
    # A descriptor nearly constant in training has a running variance near zero: a new value then
    # normalises to hundreds of standard deviations. Clipped, any value beyond the clip acts as the clip.
    pool = GraphPooling("mean", 4, 3, num_descriptors=2, descriptor_clip=3.0).train()
    for _ in range(50):  # the running statistics settle: the second descriptor's variance near zero
        pool(torch.randn(6, 4), torch.arange(6), 6, torch.stack([torch.randn(6), torch.zeros(6)], dim=1))
    pool.eval()
    nodes, batch = torch.randn(3, 4), torch.arange(3)
    with torch.no_grad():
        far, farther = (pool(nodes, batch, 3, torch.tensor([[0.0, v]] * 3)) for v in (1.0, 1e6))
        inside = pool(nodes, batch, 3, torch.tensor([[0.0, 0.0]] * 3))
    torch.testing.assert_close(far, farther)  # both beyond the clip
    assert not torch.allclose(far, inside)  # the descriptor still counts, up to the clip
    unclipped = GraphPooling("mean", 4, 3, num_descriptors=2)
    unclipped.load_state_dict(pool.state_dict())
    with torch.no_grad():
        outputs = [unclipped.eval()(nodes, batch, 3, torch.tensor([[0.0, v]] * 3)) for v in (1.0, 1e6)]
    assert not torch.allclose(*outputs)
    with pytest.raises(ValueError, match=r"descriptor_clip=3\.0: expected .* model.options.descriptors set"):
        GraphPooling("mean", 4, 3, descriptor_clip=3.0)


def test_layers_are_embedding_blocks_readout():
    enc = _encoder("gine")
    assert len(enc.layers) == 4 and enc.layers[0] is enc.embed and enc.layers[-1] is enc.readout


def test_shortest_paths_match_scipy_with_the_cap():
    graphs = [smiles_to_graph(s) for s in ["CCCCCCCCCCCC", "c1ccc2ccccc2c1", "CCO.Cl"]]
    n = max(g.num_nodes for g in graphs)
    adj = torch.zeros(len(graphs), n, n)
    for b, g in enumerate(graphs):
        adj[b, g.edge_index[0], g.edge_index[1]] = 1.0
    got = shortest_path_lengths(adj, max_distance=6)
    for b, g in enumerate(graphs):
        m = g.num_nodes
        ref = shortest_path(adj[b, :m, :m].numpy(), unweighted=True)
        ref = np.where(np.isinf(ref) | (ref > 6), 7, ref).astype(np.int64)
        assert np.array_equal(got[b, :m, :m].numpy(), ref)


def test_graphormer_bias_uses_bonds_and_distances():
    # Each input of the attention bias, changed alone, changes the embedding: the bond features (through
    # the bond bias), the shortest-path distances (through the spatial table) and the degrees.
    enc = _encoder("graphormer")
    graph = smiles_to_graph("CCC(=O)CCO")
    base_batch = Batch.from_data_list([graph])
    with torch.no_grad():
        base = enc(base_batch)
        other_bonds = graph.clone()
        other_bonds.edge_attr = other_bonds.edge_attr.roll(1, dims=1)  # same topology, other bond features
        assert not torch.allclose(base, enc(Batch.from_data_list([other_bonds])), atol=1e-6)
        for table in (enc.spatial, enc.degree, enc.bond):
            saved = table.weight.clone()
            table.weight.add_(torch.randn_like(table.weight))
            assert not torch.allclose(base, enc(base_batch), atol=1e-6), table
            table.weight.copy_(saved)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pooling": "median"}, r"model.options.pooling='median'; expected one or a list of"),
        ({"heads": 5}, r"model.options.heads=5 must divide the width 32"),
        ({"attention": "flash"}, r"model.options.attention='flash'"),
    ],
)
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ValueError, match=message):
        _encoder("graphormer", **options)


def test_build_model_names_unknown_options():
    with pytest.raises(ValueError, match=r"model.name='gine' does not accept these options: .*'heads'"):
        build_model("gine", num_features=38, num_outputs=1, num_edge_features=14, hidden_dims=[8],
                    embedding_dim=8, projection_dim=8, dropout=0.0, heads=4)  # fmt: skip


def test_pooling_concatenates_before_the_output_map():
    pool = GraphPooling(["mean", "max"], 4, 3)
    assert pool.out.in_features == 8
