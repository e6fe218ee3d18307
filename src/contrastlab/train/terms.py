"""Your own loss terms: ``register_term`` makes ``objective.<name>: {weight: ..., <your keys>}`` a term of
the objective, weighted, scheduled, logged and checkpointed like the built-in ones.

>>> import torch
>>> from contrastlab.train.terms import register_term
>>> from contrastlab.train.config import TermConfig, validate
>>> class SpreadConfig(TermConfig):
...     target: float = 1.0
>>> def spread(outputs, labels, cfg):  # the mean squared distance of the projections from cfg.target
...     return (outputs[0].projection.norm(dim=-1) - cfg.target).pow(2).mean()
>>> register_term("spread", spread, config=SpreadConfig)
>>> validate({"objective": {"spread": {"weight": 0.1, "target": 0.5}}}).objective.terms()["spread"].target
0.5
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from contrastlab.train.config import TermConfig

__all__ = ["BUILT_IN_TERMS", "register_term", "registered_term"]

#: The built-in terms' names (ObjectiveConfig's fields); a registered term may not take one.
BUILT_IN_TERMS = ("supcon", "focal_supcon", "margin", "nt_xent", "rdrop", "moco", "token_supcon",
                  "layer_supcon", "similarity_protection", "clip", "auxiliary")  # fmt: skip

#: What a term computes from the batch's view outputs (V ModelOutputs), the labels (None unless the task is
#: a classification) and its validated config: a scalar tensor.
TermFunction = Callable[[Sequence[Any], Tensor | None, Any], Tensor]

_TERMS: dict[str, tuple[TermFunction, type[TermConfig]]] = {}


def register_term(name: str, fn: TermFunction, *, config: type[TermConfig] | None = None) -> None:
    """Registers a loss term under ``objective.<name>``.

    Args:
        name: The config key (not a built-in term's name).
        fn: ``fn(outputs, labels, cfg) -> scalar tensor``; ``outputs`` are the V views' ModelOutputs
            (``projection``, ``embedding``, ``logits``), ``labels`` the class labels or None.
        config: A subclass of ``TermConfig`` with your keys and their defaults (``weight``, ``schedule``
            and ``auto_ratio`` come with it); default: TermConfig itself.

    Registering a name again replaces it, with a warning (a notebook re-running its cell).

    Raises:
        ValueError: a built-in term's name, or a config that is not a TermConfig.
    """
    from contrastlab.train.config import TermConfig as Base

    if name in BUILT_IN_TERMS:
        raise ValueError(f"register_term: {name!r} is a built-in term; choose another name")
    config = config or Base
    if not (isinstance(config, type) and issubclass(config, Base)):
        raise ValueError(f"register_term: config must be a subclass of TermConfig, got {config!r}")
    if name in _TERMS:
        warnings.warn(f"register_term: {name!r} was registered already; the new term replaces it",
                      stacklevel=2)  # fmt: skip
    _TERMS[name] = (fn, config)


def registered_term(name: str) -> tuple[TermFunction, type[TermConfig]] | None:
    """The function and config class registered under ``name``, or None."""
    return _TERMS.get(name)
