"""Graph encoders for molecules and peptides: GINE and a Graphormer-style transformer, with pooling.

Both take a ``torch_geometric`` batch (``x``, ``edge_index``, ``edge_attr``, ``batch``) and return one
embedding per graph. Their ``layers`` (what layer-wise LR decay, freezing and stage CKA see) are, bottom
to top: the input embedding, each message-passing or attention block, and the readout.

Pooling is named in the config: ``mean``, ``sum``, ``max``, ``attention`` (a learned gate, Li et al.
2016), ``set`` (a set-transformer pooling by multihead attention, Lee et al. 2019), or a list of them whose
outputs are concatenated (the peptide study's hierarchical pooling) before a linear map to the embedding.

GINE can also read whole-molecule descriptors beside the graph (``model.options.descriptors: rdkit``,
Chemprop's ``rdkit_2d`` features; ``morgan``, ``morgan_count`` or a list of kinds, see
``contrastlab.data.molecules.DESCRIPTOR_KINDS``): the batch's ``descriptors`` (G, D) are batch-normalised
(optionally clipped) and concatenated with the pooled nodes before that linear map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GINEConv, global_add_pool, global_max_pool, global_mean_pool
from torch_geometric.nn.aggr import AttentionalAggregation, SetTransformerAggregation
from torch_geometric.utils import degree, to_dense_adj, to_dense_batch

__all__ = ["GINEEncoder", "GraphPooling", "GraphormerEncoder"]

PoolingName = Literal["mean", "sum", "max", "attention", "set"]
_POOLINGS = ("mean", "sum", "max", "attention", "set")


class GraphPooling(nn.Module):
    """Node features (total_nodes, H) and their graph ids → one (G, E) vector per graph; with
    ``num_descriptors`` D > 0, each graph's (D,) descriptors join the pooled nodes (batch-normalised
    first, then clipped to ±``descriptor_clip`` standard deviations when it is set: RDKit's counts are
    heavy-tailed, and a descriptor nearly constant in training has a running variance near zero)."""

    def __init__(self, pooling: str | Sequence[str], hidden_dim: int, embedding_dim: int,
                 num_descriptors: int = 0, descriptor_clip: float | None = None) -> None:  # fmt: skip
        super().__init__()
        if descriptor_clip is not None and (not num_descriptors or not descriptor_clip > 0):
            raise ValueError(f"model.options.descriptor_clip={descriptor_clip!r}: expected a positive number "
                             "of standard deviations, with model.options.descriptors set")  # fmt: skip
        self.descriptor_clip = descriptor_clip
        names = [pooling] if isinstance(pooling, str) else list(pooling)
        bad = [n for n in names if n not in _POOLINGS]
        if not names or bad:
            raise ValueError(f"model.options.pooling={pooling!r}; expected one or a list of {_POOLINGS}")
        self.names = names
        self.aggregators = nn.ModuleDict()
        for name in names:
            if name == "attention":
                self.aggregators[name] = AttentionalAggregation(nn.Linear(hidden_dim, 1))
            elif name == "set":
                heads = 4 if hidden_dim % 4 == 0 else 1
                self.aggregators[name] = SetTransformerAggregation(hidden_dim, heads=heads)
        self.num_descriptors = num_descriptors
        self.descriptor_norm = nn.BatchNorm1d(num_descriptors) if num_descriptors else None
        self.out = nn.Linear(hidden_dim * len(names) + num_descriptors, embedding_dim)

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int, descriptors: Tensor | None = None) -> Tensor:
        pooled = []
        for name in self.names:
            if name == "mean":
                pooled.append(global_mean_pool(x, batch, num_graphs))
            elif name == "sum":
                pooled.append(global_add_pool(x, batch, num_graphs))
            elif name == "max":
                pooled.append(global_max_pool(x, batch, num_graphs))
            else:
                pooled.append(self.aggregators[name](x, batch, dim_size=num_graphs))
        if self.descriptor_norm is not None:
            if descriptors is None or descriptors.shape != (num_graphs, self.num_descriptors):
                got = None if descriptors is None else tuple(descriptors.shape)
                raise ValueError(f"the model reads {self.num_descriptors} descriptors per graph "
                                 f"(model.options.descriptors), but the batch of {num_graphs} graphs has "
                                 f"descriptors of shape {got}")  # fmt: skip
            normed = self.descriptor_norm(descriptors)
            if self.descriptor_clip is not None:  # a value far outside training's range moves little
                normed = normed.clamp(-self.descriptor_clip, self.descriptor_clip)
            pooled.append(normed)
        out: Tensor = self.out(torch.cat(pooled, dim=-1))
        return out

    def adapt_pretrained(self, state: dict[str, Tensor], prefix: str) -> None:
        """Widens a pretrained readout without descriptors (a graph-only pretrained encoder fine-tuned with
        them, ``model.init_from``) in ``state``, in place: the descriptors' columns of the output map start
        at zero and their normalisation fresh, so the loaded model's embeddings are the pretrained ones until
        training moves those columns. Any other difference is left to ``load_state_dict`` to report; loading
        a whole run (resume, rebuild) never comes here and stays strict."""
        weight, norm = state.get(prefix + "out.weight"), prefix + "descriptor_norm."
        rows, columns = self.out.weight.shape
        width = self.num_descriptors
        if (self.descriptor_norm is None or weight is None or any(k.startswith(norm) for k in state)
                or weight.shape != (rows, columns - width)):  # fmt: skip
            return
        state[prefix + "out.weight"] = torch.cat([weight, weight.new_zeros(rows, width)], dim=1)
        state.update({norm + k: v.clone() for k, v in self.descriptor_norm.state_dict().items()})


class _GINEBlock(nn.Module):
    def __init__(self, d_in: int, d_out: int, edge_dim: int, dropout: float) -> None:
        super().__init__()
        # No bias before a BatchNorm (both Linears here feed one): BN removes it, so its gradient is zero and
        # Adam would only move it on float noise (which made runs differ across process counts).
        mlp = nn.Sequential(nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(),
                            nn.Linear(d_out, d_out, bias=False))  # fmt: skip
        self.conv = GINEConv(mlp, train_eps=True, edge_dim=edge_dim)
        self.norm = nn.BatchNorm1d(d_out)
        self.dropout = nn.Dropout(dropout)
        self.residual = d_in == d_out

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        h: Tensor = self.dropout(F.relu(self.norm(self.conv(x, edge_index, edge_attr))))
        return x + h if self.residual else h


class GINEEncoder(nn.Module):
    """GIN with edge features (Hu et al. 2020, "Strategies for pre-training GNNs"): each block
    ``h' = MLP((1 + ε) h_v + Σ_u ReLU(h_u + W e_uv))``, batch norm, ReLU, dropout, a residual connection.

    Args:
        num_features: Atom feature width (38 for contrastlab's featurizer).
        num_edge_features: Bond feature width (14).
        embedding_dim: Width of the pooled graph embedding.
        hidden_dims: Width of each block, bottom to top (its length is the depth).
        dropout: After each block.
        pooling: See the module docstring.
        num_descriptors: Width D of the whole-molecule descriptors each batch carries (0: none); the
            trainer sets it from ``model.options.descriptors``.
        descriptor_clip: Clip the normalised descriptors to ± this many standard deviations (None: no clip).
    """

    def __init__(
        self,
        *,
        num_features: int,
        num_edge_features: int,
        embedding_dim: int,
        hidden_dims: list[int],
        dropout: float = 0.1,
        pooling: str | list[str] = "mean",
        num_descriptors: int = 0,
        descriptor_clip: float | None = None,
    ) -> None:
        super().__init__()
        if not hidden_dims:
            raise ValueError("model.hidden_dims must list at least one block width for a GNN")
        self.embed = nn.Linear(num_features, hidden_dims[0])
        self.blocks = nn.ModuleList(
            _GINEBlock(a, b, num_edge_features, dropout)
            for a, b in zip([hidden_dims[0], *hidden_dims[:-1]], hidden_dims, strict=True)
        )
        self.readout = GraphPooling(pooling, hidden_dims[-1], embedding_dim, num_descriptors, descriptor_clip)
        self.layers = nn.ModuleList([self.embed, *self.blocks, self.readout])

    def forward(self, data: Any) -> Tensor:
        x = self.embed(data.x)
        for block in self.blocks:
            x = block(x, data.edge_index, data.edge_attr)
        descriptors = getattr(data, "descriptors", None) if self.readout.num_descriptors else None
        out: Tensor = self.readout(x, data.batch, data.num_graphs, descriptors)
        return out


def shortest_path_lengths(adjacency: Tensor, max_distance: int) -> Tensor:
    """Hop distances in a batch of dense adjacency matrices, capped: pairs further apart than
    ``max_distance`` (or unreachable) get ``max_distance + 1``.

    Shape:
        - adjacency: (B, N, N), nonzero where an edge is; returns (B, N, N) long.
    """
    b, n, _ = adjacency.shape
    adj = (adjacency > 0).float()
    dist = torch.full((b, n, n), max_distance + 1, dtype=torch.long, device=adjacency.device)
    eye = torch.eye(n, device=adjacency.device).expand(b, n, n)
    reached = eye.clone()
    frontier = eye
    dist[eye.bool()] = 0
    for d in range(1, max_distance + 1):
        frontier = ((frontier @ adj) > 0).float() * (1 - reached)
        if not bool(frontier.any()):
            break
        dist[frontier.bool()] = d
        reached = reached + frontier
    return dist


class _GraphormerBlock(nn.Module):
    """Pre-LN transformer block; softmax attention takes an additive (B, heads, N, N) bias."""

    def __init__(self, dim: int, heads: int, dropout: float, attention: str) -> None:
        super().__init__()
        self.heads, self.attention = heads, attention
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, bias: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.attention == "softmax":
            p = self.dropout.p if self.training else 0.0
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        else:
            # Linear attention (Katharopoulos et al. 2020): φ(q)(φ(k)ᵀv) with φ = elu + 1, O(N) in nodes.
            # It cannot take a pairwise bias; padding keys are zeroed instead.
            keep = mask[:, None, :, None].to(q.dtype)
            fq, fk = F.elu(q) + 1, (F.elu(k) + 1) * keep
            kv = fk.transpose(-2, -1) @ (v * keep)  # (B, heads, dh, dh)
            h = (fq @ kv) / (fq @ fk.sum(dim=2, keepdim=True).transpose(-2, -1)).clamp_min(1e-6)
        x = x + self.dropout(self.out(h.transpose(1, 2).reshape(b, n, d)))
        out: Tensor = x + self.dropout(self.ff(self.norm2(x)))
        return out


class _NodeReadout(nn.Module):
    """Dense (B, N, H) node states back to the sparse nodes, then graph pooling."""

    def __init__(self, dim: int, pooling: GraphPooling) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pooling = pooling

    def forward(self, dense: Tensor, mask: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        out: Tensor = self.pooling(self.norm(dense)[mask], batch, num_graphs)
        return out


class GraphormerEncoder(nn.Module):
    """A Graphormer-style transformer over atoms (Ying et al. 2021): node features plus a degree
    embedding, attention biased per head by the shortest-path distance and, for bonded pairs, by the bond
    features. ``attention="linear"`` switches to linear-complexity attention (no pairwise bias; the degree
    encoding stays), for large graphs such as peptides.

    Args:
        num_features, num_edge_features, embedding_dim, hidden_dims, dropout, pooling: as GINEEncoder
            (all blocks share the width ``hidden_dims[0]``).
        heads: Attention heads (must divide the width).
        max_degree: Degrees above it share one embedding.
        max_distance: Distances above it (and unreachable pairs) share one bias.
    """

    def __init__(
        self,
        *,
        num_features: int,
        num_edge_features: int,
        embedding_dim: int,
        hidden_dims: list[int],
        dropout: float = 0.1,
        pooling: str | list[str] = "mean",
        heads: int = 4,
        max_degree: int = 6,
        max_distance: int = 8,
        attention: Literal["softmax", "linear"] = "softmax",
    ) -> None:
        super().__init__()
        if not hidden_dims or len(set(hidden_dims)) != 1:
            raise ValueError(f"model.hidden_dims={hidden_dims}: a Graphormer needs equal block widths")
        dim = hidden_dims[0]
        if dim % heads:
            raise ValueError(f"model.options.heads={heads} must divide the width {dim}")
        if attention not in ("softmax", "linear"):
            raise ValueError(f"model.options.attention={attention!r}; expected 'softmax' or 'linear'")
        self.heads, self.attention = heads, attention
        self.max_degree, self.max_distance = max_degree, max_distance
        self.embed = nn.Linear(num_features, dim)
        self.degree = nn.Embedding(max_degree + 1, dim)
        # Pairwise biases exist only for softmax attention (linear attention cannot take them).
        self.spatial = nn.Embedding(max_distance + 2, heads) if attention == "softmax" else None
        self.bond = nn.Linear(num_edge_features, heads) if attention == "softmax" else None
        self.blocks = nn.ModuleList(_GraphormerBlock(dim, heads, dropout, attention) for _ in hidden_dims)
        self.readout = _NodeReadout(dim, GraphPooling(pooling, dim, embedding_dim))
        self.layers = nn.ModuleList([self.embed, *self.blocks, self.readout])

    def forward(self, data: Any) -> Tensor:
        n_nodes = data.x.shape[0]
        deg = degree(data.edge_index[0], n_nodes).long().clamp_max(self.max_degree)
        h = self.embed(data.x) + self.degree(deg)
        dense, mask = to_dense_batch(h, data.batch, batch_size=data.num_graphs)  # (B, N, H), (B, N)
        bias = dense.new_zeros(0)
        if self.spatial is not None and self.bond is not None:
            adj = to_dense_adj(data.edge_index, data.batch, batch_size=data.num_graphs,
                               max_num_nodes=dense.shape[1])  # fmt: skip
            spd = shortest_path_lengths(adj, self.max_distance)
            bias = self.spatial(spd)  # (B, N, N, heads)
            bias = bias + to_dense_adj(data.edge_index, data.batch, self.bond(data.edge_attr),
                                       batch_size=data.num_graphs, max_num_nodes=dense.shape[1])  # fmt: skip
            bias = bias.permute(0, 3, 1, 2)  # (B, heads, N, N)
            bias = bias.masked_fill(~mask[:, None, None, :], float("-inf"))
        for block in self.blocks:
            dense = block(dense, bias, mask)
        out: Tensor = self.readout(dense, mask, data.batch, data.num_graphs)
        return out
