"""Graph augmentations keep graphs valid, bonds paired with their features, and are seeded."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_geometric")
pytest.importorskip("rdkit")

from contrastlab.data.molecules import smiles_to_graph
from contrastlab.views.graph import (
    AttributeNoise,
    EdgeDrop,
    NodeDrop,
    NodeMask,
    RandomChoice,
    RandomSubgraph,
    build_augmentation,
)

MOLECULES = ["CC(=O)Oc1ccccc1C(=O)O", "C[N+](C)(C)CC(=O)[O-]", "F/C=C/F", "C", "CCO.Cl"]
POOL = {"random_choice": [{"name": "node_drop", "p": 0.3}, {"name": "edge_drop", "p": 0.3}]}
AUGS = [NodeMask(0.3), AttributeNoise(0.5), EdgeDrop(0.4), NodeDrop(0.4), RandomSubgraph(0.6),
        build_augmentation(POOL),
        build_augmentation([{"name": "node_mask", "p": 0.2}, {"name": "subgraph", "keep": 0.7}])]  # fmt: skip


def _assert_valid(g, original):
    assert g.num_nodes >= 1 and g.x.shape == (g.num_nodes, 38)
    assert g.edge_index.shape[0] == 2 and g.edge_attr.shape == (g.edge_index.shape[1], 14)
    if g.edge_index.numel():
        assert int(g.edge_index.min()) >= 0 and int(g.edge_index.max()) < g.num_nodes
    # every remaining directed edge has its reverse with the same bond features
    attr = {tuple(e): g.edge_attr[i] for i, e in enumerate(g.edge_index.t().tolist())}
    for (a, b), feats in attr.items():
        assert (b, a) in attr and torch.equal(attr[(b, a)], feats)
    # surviving bonds carry features that exist in the original molecule
    originals = {tuple(row.tolist()) for row in original.edge_attr}
    assert all(tuple(row.tolist()) in originals for row in g.edge_attr)


@pytest.mark.parametrize("aug", AUGS, ids=repr)
@pytest.mark.parametrize("smiles", MOLECULES)
def test_augmentations_keep_graphs_valid_and_do_not_modify_input(aug, smiles):
    original = smiles_to_graph(smiles)
    before = (original.x.clone(), original.edge_index.clone(), original.edge_attr.clone())
    for seed in range(5):
        _assert_valid(aug(original, torch.Generator().manual_seed(seed)), original)
    after = (original.x, original.edge_index, original.edge_attr)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("aug", AUGS, ids=repr)
def test_augmentations_are_determined_by_the_generator(aug):
    g = smiles_to_graph(MOLECULES[0])
    a = aug(g, torch.Generator().manual_seed(3))
    b = aug(g, torch.Generator().manual_seed(3))
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
    draws = {tuple(aug(g, torch.Generator().manual_seed(s)).x.sum(1).tolist()) for s in range(8)}
    draws |= {aug(g, torch.Generator().manual_seed(s)).edge_index.shape[1] for s in range(8)}  # type: ignore[arg-type]
    assert len(draws) > 2  # not constant


def test_zero_probabilities_are_the_identity():
    g = smiles_to_graph(MOLECULES[0])
    for aug in (NodeMask(0.0), EdgeDrop(0.0), NodeDrop(0.0), RandomSubgraph(1.0)):
        out = aug(g, torch.Generator().manual_seed(0))
        assert out.num_nodes == g.num_nodes and out.edge_index.shape == g.edge_index.shape


def test_edge_drop_removes_both_directions_of_a_bond_together():
    g = smiles_to_graph("CCCCCCCCCC")
    out = EdgeDrop(0.5)(g, torch.Generator().manual_seed(1))
    assert out.edge_index.shape[1] % 2 == 0 and out.edge_index.shape[1] < g.edge_index.shape[1]


def test_node_mask_zeroes_whole_rows_at_about_rate_p():
    g = smiles_to_graph("C" * 400)
    out = NodeMask(0.25)(g, torch.Generator().manual_seed(0))
    zero_rows = int((out.x.abs().sum(1) == 0).sum())
    assert 70 <= zero_rows <= 130


def test_random_walk_subgraph_is_connected_and_near_the_requested_size():
    g = smiles_to_graph("c1ccc2ccccc2c1CCCCCCCCCC")  # 20 atoms, connected
    out = RandomSubgraph(keep=0.5)(g, torch.Generator().manual_seed(0))
    assert out.num_nodes == 10
    # connected: a BFS from node 0 reaches every node
    adj = {i: set() for i in range(out.num_nodes)}
    for a, b in out.edge_index.t().tolist():
        adj[a].add(b)
    seen, todo = {0}, [0]
    while todo:
        for nb in adj[todo.pop()] - seen:
            seen.add(nb)
            todo.append(nb)
    assert len(seen) == out.num_nodes


def test_random_choice_uses_every_member_of_its_pool():
    g = smiles_to_graph(MOLECULES[0])
    pool = RandomChoice([NodeDrop(0.9), NodeMask(0.9)])
    outcomes = {pool(g, torch.Generator().manual_seed(s)).num_nodes == g.num_nodes for s in range(20)}
    assert outcomes == {True, False}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "edge_dorp"}, r"augment.name='edge_dorp'; expected one of \['attr_noise', 'edge_drop'"),
        ({"name": "edge_drop", "q": 0.1}, r"augment: edge_drop does not take options \['q'\]"),
        ({"name": "edge_drop", "p": 1.5}, r"edge_drop: p=1.5 must be in \[0, 1\)"),
        ([{"name": "node_mask"}, 3], r"augment\[1\]: expected a mapping"),
        ({"random_choice": {"name": "node_mask"}}, r"augment.random_choice: expected a list"),
    ],
)
def test_build_augmentation_errors_name_the_place(spec, message):
    with pytest.raises(ValueError, match=message):
        build_augmentation(spec)


def test_edge_drop_pairs_directions_in_any_edge_layout():
    g = smiles_to_graph("CC(=O)Oc1ccccc1C(=O)O")
    perm = torch.randperm(g.edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = g.__class__(x=g.x, edge_index=g.edge_index[:, perm], edge_attr=g.edge_attr[perm])
    for seed in range(5):
        _assert_valid(EdgeDrop(0.5)(shuffled, torch.Generator().manual_seed(seed)), g)


# --- the same augmentations on a collated batch --------------------------------------------------------

BATCH_MOLECULES = [*MOLECULES, "c1ccc2ccccc2c1", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "[Na+].[Cl-]", "OCC(O)CO"]


def _batch():
    from torch_geometric.data import Batch

    graphs = [smiles_to_graph(s) for s in BATCH_MOLECULES]
    return graphs, Batch.from_data_list(graphs)


def _graphs_of(batch):
    from contrastlab.views.graph import _split

    assert batch.ptr[-1] == batch.x.shape[0] and int(batch.num_graphs) == len(BATCH_MOLECULES)
    assert torch.equal(
        torch.bincount(batch.batch, minlength=batch.num_graphs), batch.ptr[1:] - batch.ptr[:-1]
    )
    edge_graph = batch.batch[batch.edge_index]
    assert torch.equal(edge_graph[0], edge_graph[1])  # no edge crosses graphs
    return _split(batch)


@pytest.mark.parametrize("aug", AUGS, ids=repr)
def test_batch_augmentations_keep_every_graph_valid_and_do_not_modify_input(aug):
    from contrastlab.views.graph import augment_batch

    graphs, batch = _batch()
    before = (batch.x.clone(), batch.edge_index.clone(), batch.edge_attr.clone())
    for seed in range(5):
        out = augment_batch(aug, batch, torch.Generator().manual_seed(seed))
        for g, original in zip(_graphs_of(out), graphs, strict=True):
            _assert_valid(g, original)
    assert all(
        torch.equal(a, b) for a, b in zip(before, (batch.x, batch.edge_index, batch.edge_attr), strict=True)
    )


@pytest.mark.parametrize("aug", AUGS, ids=repr)
def test_batch_augmentations_leave_inactive_graphs_alone_and_are_seeded(aug):
    from contrastlab.views.graph import _apply_batch

    graphs, batch = _batch()
    active = torch.tensor([i % 2 == 0 for i in range(len(graphs))])
    out = _apply_batch(aug, batch, torch.Generator().manual_seed(1), active)
    again = _apply_batch(aug, batch, torch.Generator().manual_seed(1), active)
    assert torch.equal(out.x, again.x) and torch.equal(out.edge_index, again.edge_index)
    for i, (g, original) in enumerate(zip(_graphs_of(out), graphs, strict=True)):
        if not active[i]:
            assert torch.equal(g.x, original.x) and torch.equal(g.edge_index, original.edge_index)
            assert torch.equal(g.edge_attr, original.edge_attr)


def test_batch_zero_probabilities_are_the_identity():
    from contrastlab.views.graph import augment_batch

    _, batch = _batch()
    # (subgraph with keep=1 is not: a disconnected molecule keeps the component its walk started in)
    for aug in (NodeMask(0.0), EdgeDrop(0.0), NodeDrop(0.0), AttributeNoise(0.0)):
        out = augment_batch(aug, batch, torch.Generator().manual_seed(0))
        assert torch.equal(out.x, batch.x) and torch.equal(out.edge_index, batch.edge_index), aug
        assert torch.equal(out.batch, batch.batch) and torch.equal(out.ptr, batch.ptr)


@pytest.mark.parametrize(
    ("aug", "measure", "expected"),
    [
        (NodeMask(0.3), lambda b, o: float((o.x.abs().sum(1) == 0).float().mean()), 0.3),
        (NodeDrop(0.3), lambda b, o: 1 - o.x.shape[0] / b.x.shape[0], 0.3),
        (EdgeDrop(0.3), lambda b, o: 1 - o.edge_index.shape[1] / b.edge_index.shape[1], 0.3),
    ],
    ids=["node_mask", "node_drop", "edge_drop"],
)  # fmt: skip
def test_batch_rates_match_the_per_graph_augmentation(aug, measure, expected):
    from torch_geometric.data import Batch

    from contrastlab.views.graph import augment_batch

    _, batch = _batch()
    graphs = [smiles_to_graph(s) for s in BATCH_MOLECULES]
    batched = [
        measure(batch, augment_batch(aug, batch, torch.Generator().manual_seed(s))) for s in range(300)
    ]
    g = torch.Generator().manual_seed(0)
    single = [measure(batch, Batch.from_data_list([aug(x, g) for x in graphs])) for _ in range(300)]
    assert sum(batched) / 300 == pytest.approx(expected, abs=0.03)
    assert sum(batched) / 300 == pytest.approx(sum(single) / 300, abs=0.03)


def test_batch_random_walk_keeps_a_connected_subgraph_of_the_requested_size():
    from torch_geometric.utils import to_scipy_sparse_matrix

    from contrastlab.views.graph import augment_batch

    scipy_csgraph = pytest.importorskip("scipy.sparse.csgraph")
    graphs, batch = _batch()
    for seed in range(20):
        out = augment_batch(RandomSubgraph(0.6), batch, torch.Generator().manual_seed(seed))
        for g, original in zip(_graphs_of(out), graphs, strict=True):
            n = original.num_nodes
            adj = to_scipy_sparse_matrix(original.edge_index, num_nodes=n)
            sizes = torch.bincount(torch.from_numpy(scipy_csgraph.connected_components(adj)[1]))
            components, _ = scipy_csgraph.connected_components(
                to_scipy_sparse_matrix(g.edge_index, num_nodes=g.num_nodes)
            )
            assert components == 1  # one walk: one connected piece
            assert g.num_nodes <= max(1, round(0.6 * n))
            if int(sizes.min()) == n:  # connected molecule: exactly the requested size
                assert g.num_nodes == max(1, round(0.6 * n))
            else:  # at most the started component, which it uses up when that is smaller than asked
                assert g.num_nodes == min(max(1, round(0.6 * n)), g.num_nodes) and g.num_nodes <= int(
                    sizes.max()
                )


def test_batch_edge_drop_in_another_edge_layout_goes_graph_by_graph():
    from torch_geometric.data import Batch, Data

    from contrastlab.views.graph import augment_batch

    # Bonds listed as (a, b), (b, a) pairs: not the featurizer's layout.
    g = smiles_to_graph("CCOC(=O)C")
    half = g.edge_index.shape[1] // 2
    order = torch.stack([torch.arange(half), torch.arange(half) + half], 1).reshape(-1)
    shuffled = Data(
        x=g.x, edge_index=g.edge_index[:, order], edge_attr=g.edge_attr[order], num_nodes=g.num_nodes
    )
    batch = Batch.from_data_list([shuffled, shuffled])
    out = augment_batch(EdgeDrop(0.5), batch, torch.Generator().manual_seed(0))
    for piece in _graphs_of_n(out, 2):
        _assert_valid(piece, g)


def _graphs_of_n(batch, n):
    from contrastlab.views.graph import _split

    assert int(batch.num_graphs) == n
    return _split(batch)
