"""Graph augmentations: per-graph, seeded, and consistent with ``edge_attr``.

Each augmentation is a callable ``aug(data, generator) -> Data`` that never modifies its input, and has
``aug.batch(batch, generator, active=None) -> Batch``, the same augmentation applied to every graph of a
collated batch at once with tensor operations (each graph independently, with the same distribution as
the per-graph call; ``active`` (G,) limits it to some graphs). The trainer collates once and augments the
batch, which is several times faster than augmenting graph by graph and collating each view. Edges are
treated as undirected bonds: dropping one drops both of its directions with their features. ``compose``
applies several in order; ``random_choice`` picks one per graph (GraphCL's augmentation pools, You et al.
2020). ``build_augmentation`` makes one from plain config data::

    [{name: node_mask, p: 0.15}, {name: edge_drop, p: 0.15}]            # compose
    {random_choice: [{name: node_drop, p: 0.2}, {name: subgraph, keep: 0.8}]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

__all__ = [
    "AttributeNoise",
    "Augmentation",
    "Compose",
    "EdgeDrop",
    "NodeDrop",
    "NodeMask",
    "RandomChoice",
    "RandomSubgraph",
    "augment_batch",
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


def _batch_of(batch: Batch, *, x: Tensor, edge_index: Tensor, edge_attr: Tensor, node_graph: Tensor) -> Batch:
    """A new batch of the same graphs with these tensors (node order and graph ids as given)."""
    num_graphs = int(batch.num_graphs)
    counts = torch.bincount(node_graph, minlength=num_graphs)
    ptr = torch.zeros(num_graphs + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=ptr[1:])
    out = Batch(x=x, edge_index=edge_index, edge_attr=edge_attr, batch=node_graph, ptr=ptr)
    out._num_graphs = num_graphs
    return out


def _active(batch: Batch, active: Tensor | None) -> Tensor:
    if active is None:
        return torch.ones(int(batch.num_graphs), dtype=torch.bool)
    if active.shape != (int(batch.num_graphs),) or active.dtype != torch.bool:
        raise ValueError(f"active must be a bool tensor of shape ({int(batch.num_graphs)},), "
                         f"got {active.dtype} {tuple(active.shape)}")  # fmt: skip
    return active


def _batch_induced(batch: Batch, keep: Tensor) -> Batch:
    """Every graph's subgraph on the nodes where ``keep`` (bool, (N,)) is set; graph ids unchanged."""
    new_id = torch.cumsum(keep, 0) - 1  # (N,) position among the kept nodes
    src, dst = batch.edge_index
    edge_keep = keep[src] & keep[dst]
    return _batch_of(batch, x=batch.x[keep], edge_index=new_id[batch.edge_index[:, edge_keep]],
                     edge_attr=batch.edge_attr[edge_keep], node_graph=batch.batch[keep])  # fmt: skip


def _batch_bond_ids(batch: Batch) -> tuple[Tensor, int] | None:
    """Each edge's bond id across the batch when every graph has the featurizer's layout (its M bonds one
    way, then the same M the other way), else None."""
    e = batch.edge_index.shape[1]
    if e == 0:
        return torch.zeros(0, dtype=torch.long), 0
    edge_graph = batch.batch[batch.edge_index[0]]  # (E,)
    counts = torch.bincount(edge_graph, minlength=int(batch.num_graphs))
    if bool((counts % 2).any()):
        return None
    starts = torch.cumsum(counts, 0) - counts  # (G,) first edge of each graph
    pos = torch.arange(e) - starts[edge_graph]
    half = (counts // 2)[edge_graph]
    partner = torch.where(pos < half, torch.arange(e) + half, torch.arange(e) - half)
    if not torch.equal(batch.edge_index, batch.edge_index[[1, 0]][:, partner]):
        return None
    return starts[edge_graph] // 2 + pos % half, e // 2


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

    def batch(self, batch: Batch, generator: torch.Generator, active: Tensor | None = None) -> Batch:
        on = _active(batch, active)[batch.batch]
        masked = (torch.rand(batch.x.shape[0], generator=generator) < self.p) & on
        x = batch.x.masked_fill(masked[:, None], 0.0)
        return _batch_of(batch, x=x, edge_index=batch.edge_index, edge_attr=batch.edge_attr,
                         node_graph=batch.batch)  # fmt: skip

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

    def batch(self, batch: Batch, generator: torch.Generator, active: Tensor | None = None) -> Batch:
        on = _active(batch, active)[batch.batch]
        noise = torch.randn(batch.x.shape, generator=generator, dtype=batch.x.dtype) * self.std
        return _batch_of(batch, x=batch.x + noise * on[:, None], edge_index=batch.edge_index,
                         edge_attr=batch.edge_attr, node_graph=batch.batch)  # fmt: skip

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

    def batch(self, batch: Batch, generator: torch.Generator, active: Tensor | None = None) -> Batch:
        on = _active(batch, active)
        bonds = _batch_bond_ids(batch)
        if bonds is None:  # another edge layout: graph by graph
            return _per_graph(self, batch, generator, on)
        ids, count = bonds
        dropped = torch.rand(count, generator=generator) < self.p
        keep = ~(dropped[ids] & on[batch.batch[batch.edge_index[0]]])
        return _batch_of(batch, x=batch.x, edge_index=batch.edge_index[:, keep],
                         edge_attr=batch.edge_attr[keep], node_graph=batch.batch)  # fmt: skip

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

    def batch(self, batch: Batch, generator: torch.Generator, active: Tensor | None = None) -> Batch:
        on = _active(batch, active)
        n, num_graphs = batch.x.shape[0], int(batch.num_graphs)
        keep = (torch.rand(n, generator=generator) >= self.p) | ~on[batch.batch]
        # A graph that lost every node keeps one, drawn uniformly.
        sizes = torch.bincount(batch.batch, minlength=num_graphs)
        kept = torch.bincount(batch.batch, weights=keep.double(), minlength=num_graphs)
        rescue = torch.rand(num_graphs, generator=generator)
        empty = (kept == 0) & (sizes > 0)
        starts = torch.cumsum(sizes, 0) - sizes
        pick = starts + torch.minimum((rescue * sizes).long(), sizes - 1)
        keep[pick[empty]] = True
        return _batch_induced(batch, keep)

    def __repr__(self) -> str:
        return f"NodeDrop(p={self.p})"


class RandomSubgraph:
    """A connected subgraph of ``keep`` of the nodes, grown from a uniformly drawn node by adding one
    uniformly drawn neighbour of the current set at a time (GraphCL's subgraph, You et al. 2020). A
    disconnected molecule (a salt, a mixture) keeps at most the component the growth started in."""

    def __init__(self, keep: float = 0.8) -> None:
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"subgraph: keep={keep} must be in (0, 1]")
        self.keep = keep

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        (graph,) = _split(self.batch(Batch.from_data_list([data]), generator))
        return graph

    def batch(self, batch: Batch, generator: torch.Generator, active: Tensor | None = None) -> Batch:
        """Every active graph grows at once, one node per graph per iteration."""
        on = _active(batch, active)
        n, num_graphs = batch.x.shape[0], int(batch.num_graphs)
        node_graph = batch.batch
        sizes = torch.bincount(node_graph, minlength=num_graphs)
        starts = torch.cumsum(sizes, 0) - sizes
        growing = on & (sizes > 0)
        draw = torch.rand(num_graphs, generator=generator, dtype=torch.float64)
        pick = torch.minimum((draw * sizes).long(), (sizes - 1).clamp_min(0))  # each graph's start node
        inside = torch.zeros(n, dtype=torch.bool)
        inside[(starts + pick)[growing]] = True
        count = growing.long()
        goal = torch.clamp(torch.round(self.keep * sizes.double()).long(), min=1)
        growing &= count < goal
        src, dst = batch.edge_index
        while bool(growing.any()):
            frontier = torch.zeros(n, dtype=torch.bool)
            frontier[dst[inside[src]]] = True
            frontier &= ~inside & growing[node_graph]  # (N,) candidates of the graphs still growing
            # One uniform candidate per graph: the largest of i.i.d. uniform keys (float64: no ties).
            key = torch.rand(n, generator=generator, dtype=torch.float64).masked_fill(~frontier, -1.0)
            best = torch.full((num_graphs,), -1.0, dtype=torch.float64).scatter_reduce(
                0, node_graph, key, reduce="amax"
            )  # (G,)
            chosen = frontier & (key == best[node_graph])
            inside |= chosen
            count += torch.bincount(node_graph[chosen], minlength=num_graphs)
            growing &= (count < goal) & (best >= 0)  # stop at the goal, or when the component is used up
        return _batch_induced(batch, inside | ~on[node_graph])

    def __repr__(self) -> str:
        return f"RandomSubgraph(keep={self.keep})"


class Compose:
    """Applies each augmentation in turn."""

    def __init__(self, augmentations: Sequence[Augmentation]) -> None:
        self.augmentations = list(augmentations)

    def __call__(self, data: Data, generator: torch.Generator) -> Data:
        for aug in self.augmentations:
            data = aug(data, generator)
        return data

    def batch(self, batch: Batch, generator: torch.Generator, active: Tensor | None = None) -> Batch:
        for aug in self.augmentations:
            batch = _apply_batch(aug, batch, generator, active)
        return batch

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

    def batch(self, batch: Batch, generator: torch.Generator, active: Tensor | None = None) -> Batch:
        on = _active(batch, active)
        choice = torch.randint(len(self.augmentations), (int(batch.num_graphs),), generator=generator)
        for i, aug in enumerate(self.augmentations):
            batch = _apply_batch(aug, batch, generator, on & (choice == i))
        return batch

    def __repr__(self) -> str:
        return f"RandomChoice({self.augmentations})"


def _per_graph(aug: Augmentation, batch: Batch, generator: torch.Generator, on: Tensor) -> Batch:
    """``aug`` graph by graph on the active graphs of a batch (for a callable with no ``batch`` method, or
    an edge layout the vectorised path does not know)."""
    graphs = batch.to_data_list() if hasattr(batch, "_slice_dict") else _split(batch)
    out = [aug(g, generator) if bool(on[i]) else g for i, g in enumerate(graphs)]
    merged = Batch.from_data_list(out)
    return _batch_of(merged, x=merged.x, edge_index=merged.edge_index, edge_attr=merged.edge_attr,
                     node_graph=merged.batch)  # fmt: skip


def _split(batch: Batch) -> list[Data]:
    """The graphs of a batch built by :func:`_batch_of` (which has no PyG slice bookkeeping)."""
    graphs = []
    edge_graph = batch.batch[batch.edge_index[0]]
    for g in range(int(batch.num_graphs)):
        lo, hi = int(batch.ptr[g]), int(batch.ptr[g + 1])
        edges = edge_graph == g
        graphs.append(Data(x=batch.x[lo:hi], edge_index=batch.edge_index[:, edges] - lo,
                           edge_attr=batch.edge_attr[edges], num_nodes=hi - lo))  # fmt: skip
    return graphs


def _apply_batch(aug: Augmentation, batch: Batch, generator: torch.Generator, active: Tensor | None) -> Batch:
    method = getattr(aug, "batch", None)
    if method is not None:
        return method(batch, generator, active)
    return _per_graph(aug, batch, generator, _active(batch, active))


def augment_batch(aug: Augmentation, batch: Batch, generator: torch.Generator) -> Batch:
    """Applies ``aug`` to every graph of a collated batch (vectorised where ``aug`` has ``batch``)."""
    return _apply_batch(aug, batch, generator, None)


_BY_NAME: dict[str, Any] = {
    "node_mask": NodeMask,
    "attr_noise": AttributeNoise,
    "edge_drop": EdgeDrop,
    "node_drop": NodeDrop,
    "subgraph": RandomSubgraph,
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
