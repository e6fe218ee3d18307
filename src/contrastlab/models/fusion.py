"""A two-tower graph + text model joined by cross-modal attention (the fusion study's fusion regressor).

The graph tower is GINE (edge-aware GIN, :mod:`contrastlab.models.graph`); the text tower a local Hugging
Face encoder (:class:`~contrastlab.models.text.TextEncoder`: the built-in MiniLM, any folder, LoRA or
frozen). They meet three times:

1. Middle fusion: after each graph block listed in ``middle_fusion_layers`` the atoms (nodes) attend to the
   text's tokens (``middle_fusion_hidden_dim`` wide, ``middle_fusion_num_heads`` heads), residually.
2. Fine-grained attention: the text's tokens attend to the final atoms; their masked mean is the
   ``text_fine`` stage (``fine_grained_dropout`` drops token features before both attentions).
3. Final cross-modal attention (``cross_modal_num_heads``): the pooled graph vector and the text vector
   attend to each other; their concatenation, mapped to the embedding width, is the ``fused`` stage and
   the representation the task head sees.

Named stages, for ``contrastlab diagnose A --against B`` (stage-by-stage CKA between twin runs):
``graph`` (pooled graph tower, (N, E)), ``text_fine`` ((N, H_text)), ``text_final`` ((N, E)) and
``fused`` ((N, E)). The two towers' vectors also go to the objective as the views ``graph`` and ``text``
(through the projection head), which is what ``objective.clip`` (the cross-modal CLIP term) compares.

``text_tower: false`` is the ablation "the graph tower alone" on the same data, split and settings: no text
tower and no cross-modal attention are built (their settings are unused), the pooled graph vector is both
the ``graph`` and the ``fused`` stage, and a verdict of it against the full model (``contrastlab verdict
recipes/fusion/mp_gap_fusion.yaml --treatment model.options.text_tower=false --treatment
objective.clip=null``) answers whether the text adds anything, with stage CKA on the stages both share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch

from contrastlab.models.base import EncoderOutput
from contrastlab.models.graph import GraphPooling, _GINEBlock
from contrastlab.models.text import TextEncoder, load_tokenizer, model_folder
from contrastlab.views.text import pool

__all__ = ["STAGES", "CrossAttention", "FusionEncoder"]

STAGES = ("graph", "text_fine", "text_final", "fused")
#: The stages of the graph tower alone (``text_tower: false``).
GRAPH = ("graph", "fused")


class CrossAttention(nn.Module):
    """Queries attend to keys of another modality; the result joins the queries residually (post-LN).

    Shape:
        - query: (B, Q, D_q); keys: (B, K, D_k); key_mask: (B, K) bool, True where a key is real;
          returns (B, Q, D_q).
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.query = nn.Linear(query_dim, hidden_dim)
        self.attention = nn.MultiheadAttention(
            hidden_dim, heads, dropout=dropout, kdim=key_dim, vdim=key_dim, batch_first=True
        )
        self.out = nn.Linear(hidden_dim, query_dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(query_dim)

    def forward(self, query: Tensor, keys: Tensor, key_mask: Tensor) -> Tensor:
        h, _ = self.attention(self.query(query), keys, keys, key_padding_mask=~key_mask, need_weights=False)
        out: Tensor = self.norm(query + self.dropout(self.out(h)))
        return out


class FusionEncoder(nn.Module):
    """Graph tower + text tower + cross-modal attention; see the module docstring.

    Args:
        num_features, num_edge_features: The graph's node and edge feature widths (from the dataset).
        embedding_dim: E, the width of the graph, text_final and fused stages.
        hidden_dims: Graph block widths, bottom to top (the depth of the graph tower).
        dropout: Default for ``graph_dropout``.
        pooling: The graph tower's readout (as for GINE).
        text: The text tower's settings, as :class:`TextEncoder`'s options (``path``, ``pooling``,
            ``max_length``, ``lora``, ``dropout``) plus ``freeze: true`` to keep its weights fixed (it is
            then a fixed feature extractor, without dropout, and each distinct text is encoded once).
        middle_fusion_layers: Graph blocks (0-based; negative from the top) after which atoms attend to
            the text tokens; empty: no middle fusion.
        middle_fusion_hidden_dim, middle_fusion_num_heads: Width and heads of the middle and fine-grained
            attentions (heads must divide the width).
        cross_modal_num_heads: Heads of the final attention (must divide E).
        graph_dropout: After each graph block (None: ``dropout``).
        cross_modal_dropout: Inside and after every cross-modal attention.
        fine_grained_dropout: On the text token features the graph attends to.
        text_tower: False: the graph tower alone (see the module docstring); the text is still tokenized
            (``text.path`` and ``text.max_length`` name the tokenizer) but never read.

    Raises:
        ValueError: a middle fusion layer outside the graph tower, heads that do not divide a width, or an
            unknown text option.
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
        text: dict[str, Any] | None = None,
        middle_fusion_layers: list[int] | tuple[int, ...] = (),
        middle_fusion_hidden_dim: int = 128,
        middle_fusion_num_heads: int = 4,
        cross_modal_num_heads: int = 2,
        graph_dropout: float | None = None,
        cross_modal_dropout: float = 0.1,
        fine_grained_dropout: float = 0.1,
        text_tower: bool = True,
    ) -> None:
        super().__init__()
        _check_options(hidden_dims, middle_fusion_layers, embedding_dim, middle_fusion_hidden_dim,
                       middle_fusion_num_heads, cross_modal_num_heads)  # fmt: skip
        depth = len(hidden_dims)
        text_options = dict(text or {})
        freeze = bool(text_options.pop("freeze", False))
        _check_text_options(text_options, freeze)
        g_drop = dropout if graph_dropout is None else graph_dropout

        # graph tower
        self.graph_embed = nn.Linear(num_features, hidden_dims[0])
        self.graph_blocks = nn.ModuleList(
            _GINEBlock(a, b, num_edge_features, g_drop)
            for a, b in zip([hidden_dims[0], *hidden_dims[:-1]], hidden_dims, strict=True)
        )
        self.graph_readout = GraphPooling(pooling, hidden_dims[-1], embedding_dim)

        self.text_tower = text_tower
        self.stages = nn.ModuleDict({name: nn.Identity() for name in STAGES if text_tower or name in GRAPH})
        if not text_tower:
            self.text_frozen = False
            self.tokenizer, self.max_length = load_tokenizer(
                model_folder(text_options.get("path")), int(text_options.get("max_length", 128))
            )
            return

        # text tower
        self.text = TextEncoder(**text_options)
        self.text_frozen = freeze
        if freeze:
            self.text.requires_grad_(False)
        #: A frozen tower's token states by token ids (it is then a fixed feature extractor: eval mode, no
        #: dropout, so each distinct text is encoded once per process). Not part of the state dict.
        self._text_cache: dict[bytes, Tensor] = {}
        self.register_load_state_dict_post_hook(lambda module, _: module._text_cache.clear())  # type: ignore[no-untyped-call]
        self.tokenizer = self.text.tokenizer
        self.max_length = self.text.max_length
        width = self.text.output_dim

        # cross-modal attention
        self.middle_fusion_layers = sorted({i % depth for i in middle_fusion_layers})
        self.middle = nn.ModuleDict({
            str(i): CrossAttention(hidden_dims[i], width, middle_fusion_hidden_dim, middle_fusion_num_heads,
                                   cross_modal_dropout)
            for i in self.middle_fusion_layers
        })  # fmt: skip
        self.token_dropout = nn.Dropout(fine_grained_dropout)
        self.fine_grained = CrossAttention(
            width, hidden_dims[-1], middle_fusion_hidden_dim, middle_fusion_num_heads, cross_modal_dropout
        )
        self.text_out = nn.Linear(width, embedding_dim)
        self.cross_modal = nn.MultiheadAttention(
            embedding_dim, cross_modal_num_heads, dropout=cross_modal_dropout, batch_first=True
        )
        self.cross_norm = nn.LayerNorm(embedding_dim)
        self.cross_dropout = nn.Dropout(cross_modal_dropout)
        self.fuse = nn.Linear(2 * embedding_dim, embedding_dim)

    @property
    def layers(self) -> nn.ModuleList:
        """Bottom to top: the graph input map, each graph block, the graph readout, the text tower (one
        layer), the middle-fusion attentions, and the final fusion (the graph tower alone: its first three).
        Every parameter is in exactly one."""
        if not self.text_tower:
            return nn.ModuleList([self.graph_embed, *self.graph_blocks, self.graph_readout])
        top = nn.ModuleList([self.fine_grained, self.text_out, self.cross_modal, self.cross_norm, self.fuse])
        return nn.ModuleList(
            [self.graph_embed, *self.graph_blocks, self.graph_readout, self.text, self.middle, top]
        )

    def _token_states(self, tokens: Any) -> Tensor:
        """The text tower's last hidden states (B, L, H_text); from the cache when the tower is frozen."""
        if not self.text_frozen:
            out = self.text.transformer(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
            states: Tensor = out.last_hidden_state
            return states
        lengths = tokens.attention_mask.sum(dim=1).tolist()
        keys = [row[:n].cpu().numpy().tobytes() for row, n in zip(tokens.input_ids, lengths, strict=True)]
        missing = [i for i, k in enumerate(keys) if k not in self._text_cache]
        if missing:
            was_training = self.text.training
            self.text.eval()
            # One text at a time, unpadded: a text's states must not depend on which batch first held it
            # (padding and batch size change the kernels' blocking), or a resumed run would drift.
            with torch.no_grad():
                for i in missing:
                    ids = tokens.input_ids[i : i + 1, : lengths[i]]
                    out = self.text.transformer(input_ids=ids, attention_mask=torch.ones_like(ids))
                    self._text_cache[keys[i]] = out.last_hidden_state[0]
            self.text.train(was_training)
        first = self._text_cache[keys[0]]
        states = first.new_zeros(len(keys), tokens.input_ids.shape[1], first.shape[-1])
        for i, k in enumerate(keys):
            states[i, : lengths[i]] = self._text_cache[k]
        return states

    def stage_modules(self) -> dict[str, nn.Module]:
        """The named stages' marker modules (what diagnostics hook)."""
        return dict(self.stages.items())

    def forward(self, batch: Any) -> EncoderOutput:
        graph, tokens = batch.graph, batch.tokens
        if not self.text_tower:
            x = self.graph_embed(graph.x)
            for block in self.graph_blocks:
                x = block(x, graph.edge_index, graph.edge_attr)
            g = self.stages["graph"](self.graph_readout(x, graph.batch, graph.num_graphs))  # (B, E)
            return EncoderOutput(self.stages["fused"](g), {"graph": g})
        text_mask = tokens.attention_mask.bool()
        token_states = self.token_dropout(self._token_states(tokens))  # (B, L, H_text)

        x = self.graph_embed(graph.x)
        for i, block in enumerate(self.graph_blocks):
            x = block(x, graph.edge_index, graph.edge_attr)
            if str(i) in self.middle:
                dense, node_mask = to_dense_batch(x, graph.batch, batch_size=graph.num_graphs)
                x = self.middle[str(i)](dense, token_states, text_mask)[node_mask]
        g = self.stages["graph"](self.graph_readout(x, graph.batch, graph.num_graphs))  # (B, E)

        atoms, atom_mask = to_dense_batch(x, graph.batch, batch_size=graph.num_graphs)
        fine = self.fine_grained(token_states, atoms, atom_mask)  # tokens attend to atoms
        text_fine = self.stages["text_fine"](pool(fine, tokens.attention_mask, self.text.pooling))  # (B, H_t)
        t = self.stages["text_final"](self.text_out(text_fine))  # (B, E)

        pair = torch.stack([g, t], dim=1)  # (B, 2, E): each modality attends to both
        h, _ = self.cross_modal(pair, pair, pair, need_weights=False)
        pair = self.cross_norm(pair + self.cross_dropout(h))
        fused = self.stages["fused"](self.fuse(pair.flatten(1)))
        return EncoderOutput(fused, {"graph": g, "text": t})


def _check_options(hidden_dims: list[int], middle_fusion_layers: Sequence[int], embedding_dim: int,
                   middle_fusion_hidden_dim: int, middle_fusion_num_heads: int,
                   cross_modal_num_heads: int) -> None:  # fmt: skip
    """Refuses an empty graph tower, fusion after blocks it does not have, and head counts that do not
    divide their attention's width."""
    if not hidden_dims:
        raise ValueError("model.hidden_dims must list at least one graph block width")
    depth = len(hidden_dims)
    bad = [i for i in middle_fusion_layers if not -depth <= i < depth]
    if bad:
        raise ValueError(
            f"model.options.middle_fusion_layers={list(middle_fusion_layers)}: {bad} are not graph "
            f"blocks (this graph tower has blocks 0..{depth - 1}; negative indices count from the top)"
        )
    for name, heads, width in (
        ("middle_fusion_num_heads", middle_fusion_num_heads, middle_fusion_hidden_dim),
        ("cross_modal_num_heads", cross_modal_num_heads, embedding_dim),
    ):
        if heads < 1 or width % heads:
            raise ValueError(f"model.options.{name}={heads} must be >= 1 and divide the width {width}")


def _check_text_options(text_options: dict[str, Any], freeze: bool) -> None:
    """Refuses text-tower options the text encoder does not take, and a frozen tower with adapters."""
    unknown = sorted(set(text_options) - {"path", "pooling", "max_length", "lora", "dropout"})
    if unknown:
        raise ValueError(
            f"model.options.text: unknown key(s) {unknown}; expected some of path, pooling, max_length, "
            "lora, dropout, freeze"
        )
    if freeze and text_options.get("lora") is not None:
        raise ValueError("model.options.text: freeze=true would freeze the LoRA adapters too; choose one")
