"""Graph augmentations: per-graph, seeded, and consistent with ``edge_attr``.

Each augmentation is a callable ``aug(data, generator) -> Data`` that never modifies its input. Edges are
treated as undirected bonds: dropping one drops both of its directions with their features. ``compose``
applies several in order; ``random_choice`` picks one per graph (GraphCL's augmentation pools, You et al.
2020). ``build_augmentation`` makes one from plain config data::

    [{name: node_mask, p: 0.15}, {name: edge_drop, p: 0.15}]            # compose
    {random_choice: [{name: node_drop, p: 0.2}, {name: subgraph, keep: 0.8}]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = [
    "AttributeNoise",
    "Augmentation",
    "Compose",
    "EdgeDrop",
    "NodeDrop",
    "NodeMask",
    "RandomChoice",
    "RandomWalkSubgraph",
    "build_augmentation",
]


class Augmentation(Protocol):
    def __call__(self, data: Data, generator: torch.Generator) -> Data: ...


def _check_p(name: str, p: float, upper: float = 1.0) -> None:
    if not 0.0 <= p < upper:
        raise ValueError(f"{name}: p={p} must be in [0, {upper:g})")


def _bond_ids(edge_index: Tensor) -> tuple[Tensor, int]:
    """Each directed edge's undirected bond id, and the number of bonds (both directions share an id).

    contrastlab's featurizer lists the M bonds one way, then the same M the other way, and every
    augmentation here keeps that layout; it is detected in O(E) and then the id is ``e mod M``. Any other
    layout falls back to matching (min, max) endpoint pairs.
    """
    e = edge_index.shape[1]
    if e == 0:
        return torch.zeros(0, dtype=torch.long), 0
    half = e // 2
    if e % 2 == 0 and torch.equal(edge_index[:, :half], edge_index[[1, 0], half:]):
        return torch.arange(e) % half, half
    lo, hi = edge_index.min(0).values, edge_index.max(0).values
    keys, ids = torch.unique(lo * (int(edge_index.max()) + 1) + hi, return_inverse=True)
    return ids, int(keys.shape[0])


def _induced(data: Data, keep: Tensor) -> Data:
    """The subgraph on the nodes where ``keep`` (bool, (N,)) is set, nodes renumbered in order."""
    new_id = torch.full((data.num_nodes,), -1, dtype=torch.long)
    new_id[keep] = torch.arange(int(keep.sum()))
    src, dst = data.edge_index
    edge_keep = keep[src] & keep[dst]
    return Data(
        x=data.x[keep],
        edge_index=new_id[data.edge_index[:, edge_keep]],
        edge_attr=data.edge_attr[edge_keep],
        num_nodes=int(keep.sum()),
    )


class NodeMask:
    """Sets the features of a fraction ``p`` of the nodes to zero (a "mask" atom)."""

    def __init__(self, p: float = 0.15) -> None:
        _check_p("node_mask", p)
        self.p = p

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        masked = torch.rand(data.num_nodes, generator=generator) < self.p
        x = data.x.clone()
        x[masked] = 0.0
        return Data(x=x, edge_index=data.edge_index, edge_attr=data.edge_attr, num_nodes=data.num_nodes)

    def __repr__(self) -> str:
        return f"NodeMask(p={self.p})"


class AttributeNoise:
    """Adds Gaussian noise of standard deviation ``std`` to every node feature."""

    def __init__(self, std: float = 0.1) -> None:
        if std < 0:
            raise ValueError(f"attr_noise: std={std} must be >= 0")
        self.std = std

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        noise = torch.randn(data.x.shape, generator=generator, dtype=data.x.dtype) * self.std
        return Data(x=data.x + noise, edge_index=data.edge_index, edge_attr=data.edge_attr,
                    num_nodes=data.num_nodes)  # fmt: skip

    def __repr__(self) -> str:
        return f"AttributeNoise(std={self.std})"


class EdgeDrop:
    """Removes a fraction ``p`` of the bonds, both directions of each together, with their features."""

    def __init__(self, p: float = 0.2) -> None:
        _check_p("edge_drop", p)
        self.p = p

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        ids, count = _bond_ids(data.edge_index)
        dropped = torch.rand(count, generator=generator) < self.p
        keep = ~dropped[ids]
        return Data(x=data.x, edge_index=data.edge_index[:, keep], edge_attr=data.edge_attr[keep],
                    num_nodes=data.num_nodes)  # fmt: skip

    def __repr__(self) -> str:
        return f"EdgeDrop(p={self.p})"


class NodeDrop:
    """Removes a fraction ``p`` of the nodes and their edges; at least one node always stays."""

    def __init__(self, p: float = 0.2) -> None:
        _check_p("node_drop", p)
        self.p = p

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        keep = torch.rand(data.num_nodes, generator=generator) >= self.p
        if not bool(keep.any()):
            keep[int(torch.randint(data.num_nodes, (1,), generator=generator))] = True
        return _induced(data, keep)

    def __repr__(self) -> str:
        return f"NodeDrop(p={self.p})"


class RandomWalkSubgraph:
    """The subgraph induced by a random walk with restarts from a random node, run until it has visited
    ``keep`` of the nodes (or cannot reach more: a disconnected molecule keeps its walked component)."""

    def __init__(self, keep: float = 0.8, restart: float = 0.2) -> None:
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"subgraph: keep={keep} must be in (0, 1]")
        _check_p("subgraph restart", restart)
        self.keep, self.restart = keep, restart

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        n = data.num_nodes
        target = max(1, round(self.keep * n))
        src, dst = data.edge_index.numpy()
        order = np.argsort(src, kind="stable")
        targets = dst[order].tolist()
        starts = np.searchsorted(src[order], np.arange(n + 1)).tolist()  # CSR row pointers
        start = int(torch.randint(n, (1,), generator=generator))
        visited = {start}
        node = start
        budget = 20 * n + 10  # enough steps to cover the target on any connected molecule
        while len(visited) < target and budget > 0:
            draws = torch.rand(2, min(budget, 4 * n + 8), generator=generator).tolist()
            budget -= len(draws[0])
            for restart_draw, step_draw in zip(*draws, strict=True):
                if restart_draw < self.restart or starts[node] == starts[node + 1]:
                    node = start
                    if starts[node] == starts[node + 1]:
                        budget = 0  # an isolated start atom: nothing more to reach
                        break
                lo, hi = starts[node], starts[node + 1]
                node = targets[lo + min(int(step_draw * (hi - lo)), hi - lo - 1)]
                visited.add(node)
                if len(visited) >= target:
                    break
        keep = torch.zeros(n, dtype=torch.bool)
        keep[list(visited)] = True
        return _induced(data, keep)

    def __repr__(self) -> str:
        return f"RandomWalkSubgraph(keep={self.keep}, restart={self.restart})"


class Compose:
    """Applies each augmentation in turn."""

    def __init__(self, augmentations: Sequence[Augmentation]) -> None:
        self.augmentations = list(augmentations)

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        for aug in self.augmentations:
            data = aug(data, generator)
        return data

    def __repr__(self) -> str:
        return f"Compose({self.augmentations})"


class RandomChoice:
    """Applies one augmentation, drawn uniformly per graph (GraphCL's pool)."""

    def __init__(self, augmentations: Sequence[Augmentation]) -> None:
        if not augmentations:
            raise ValueError("random_choice needs at least one augmentation")
        self.augmentations = list(augmentations)

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        i = int(torch.randint(len(self.augmentations), (1,), generator=generator))
        return self.augmentations[i](data, generator)

    def __repr__(self) -> str:
        return f"RandomChoice({self.augmentations})"


_BY_NAME: dict[str, Any] = {
    "node_mask": NodeMask,
    "attr_noise": AttributeNoise,
    "edge_drop": EdgeDrop,
    "node_drop": NodeDrop,
    "subgraph": RandomWalkSubgraph,
}


def build_augmentation(spec: Any, where: str = "augment") -> Augmentation:
    """An augmentation from config data: a ``{name: ..., **options}`` mapping, a list of them (composed) or
    ``{random_choice: [...]}``.

    Raises:
        ValueError: an unknown name or option, naming where in the config it is.
    """
    if isinstance(spec, list | tuple):
        return Compose([build_augmentation(s, f"{where}[{i}]") for i, s in enumerate(spec)])
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping like {{name: edge_drop, p: 0.2}}, got {spec!r}")
    if set(spec) == {"random_choice"}:
        pool = spec["random_choice"]
        if not isinstance(pool, list):
            raise ValueError(f"{where}.random_choice: expected a list of augmentations, got {pool!r}")
        return RandomChoice(
            [build_augmentation(s, f"{where}.random_choice[{i}]") for i, s in enumerate(pool)]
        )
    options = dict(spec)
    name = options.pop("name", None)
    if name not in _BY_NAME:
        raise ValueError(f"{where}.name={name!r}; expected one of {sorted(_BY_NAME)} (or random_choice)")
    try:
        aug: Augmentation = _BY_NAME[name](**options)
    except TypeError as exc:
        raise ValueError(f"{where}: {name} does not take options {sorted(options)} ({exc})") from None
    return aug
