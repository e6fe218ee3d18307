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
    RandomWalkSubgraph,
    build_augmentation,
)

MOLECULES = ["CC(=O)Oc1ccccc1C(=O)O", "C[N+](C)(C)CC(=O)[O-]", "F/C=C/F", "C", "CCO.Cl"]
POOL = {"random_choice": [{"name": "node_drop", "p": 0.3}, {"name": "edge_drop", "p": 0.3}]}
AUGS = [NodeMask(0.3), AttributeNoise(0.5), EdgeDrop(0.4), NodeDrop(0.4), RandomWalkSubgraph(0.6),
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
    for aug in (NodeMask(0.0), EdgeDrop(0.0), NodeDrop(0.0), RandomWalkSubgraph(1.0)):
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
    out = RandomWalkSubgraph(keep=0.5)(g, torch.Generator().manual_seed(0))
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
