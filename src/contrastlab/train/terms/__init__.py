"""The loss terms of an objective, one registry entry each: its config, what it needs, and its loss call.

Each built-in term is one module of this package, named as the term (``supcon.py`` is ``objective.supcon``),
holding its config class, its :class:`Needs` and its loss call as ``TERM``, and ``ORDER``, its place among
the built-in terms (the order they are evaluated, summed and logged). Adding a built-in term is adding such
a module (its maths goes in ``contrastlab.losses``); the objective's config (``ObjectiveConfig``) is
assembled from this registry.

A term is a :class:`Term`: ``loss(batch, cfg) -> scalar`` on the batch's outputs (:class:`BatchOutputs`),
the config class of ``objective.<name>``, and :class:`Needs`, which tell the trainer what to compute for it
(a momentum encoder and its queue, a frozen reference model, layer and token views of a text encoder, the
dataset's auxiliary targets) and tell the config what to check (class labels, two views). The trainer
composes those companions in its loop; the objective only weighs and schedules the terms.

Your own term is one call: ``register_term`` makes ``objective.<name>: {weight: ..., <your keys>}`` a term
weighted, scheduled, logged and checkpointed like the built-in ones.

>>> import torch
>>> from contrastlab.train.terms import register_term
>>> from contrastlab.train.config import validate
>>> from contrastlab.train.terms import TermConfig
>>> class SpreadConfig(TermConfig):
...     target: float = 1.0
>>> def spread(batch, cfg):  # the mean squared distance of the projections' norms from cfg.target
...     return (batch.views[0].projection.norm(dim=-1) - cfg.target).pow(2).mean()
>>> register_term("spread", spread, config=SpreadConfig)
>>> validate({"objective": {"spread": {"weight": 0.1, "target": 0.5}}}).objective.terms()["spread"].target
0.5
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings

from contrastlab.train.terms.base import (
    BatchOutputs,
    ContrastiveTermConfig,
    LossCall,
    Needs,
    ScheduleConfig,
    Strict,
    Term,
    TermConfig,
)

__all__ = [
    "BUILT_IN_TERMS",
    "BatchOutputs",
    "ContrastiveTermConfig",
    "LossCall",
    "Needs",
    "ScheduleConfig",
    "Strict",
    "Term",
    "TermConfig",
    "built_in_terms",
    "get_term",
    "register_term",
    "registered_term",
]


def _discover() -> dict[str, Term]:
    """Every module of this package but ``base``: its ``TERM`` under the module's name, in ``ORDER``."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append((module.ORDER, info.name, module.TERM))
    return {name: term for _, name, term in sorted(found, key=lambda entry: entry[:2])}


#: The built-in terms, in the order they are evaluated and logged.
_BUILT_IN: dict[str, Term] = _discover()

#: The built-in terms' names (ObjectiveConfig's fields); a registered term may not take one.
BUILT_IN_TERMS = tuple(_BUILT_IN)


def built_in_terms() -> dict[str, Term]:
    """The built-in terms by name, in the order they are evaluated and logged."""
    return dict(_BUILT_IN)


_REGISTERED: dict[str, Term] = {}


def register_term(name: str, loss: LossCall, *, config: type[TermConfig] | None = None,
                  needs: Needs | None = None) -> None:  # fmt: skip
    """Registers a loss term under ``objective.<name>``.

    Args:
        name: The config key (not a built-in term's name).
        loss: ``loss(batch, cfg) -> scalar tensor``; ``batch`` is a :class:`BatchOutputs` (``batch.views``:
            the V views' ModelOutputs with ``projection``, ``embedding``, ``logits``; ``batch.labels``: the
            class labels or None), ``cfg`` the term's validated config.
        config: A subclass of ``TermConfig`` with your keys and their defaults (``weight``, ``schedule``
            and ``auto_ratio`` come with it); default: TermConfig itself.
        needs: What the term needs beyond the views (:class:`Needs`): e.g. ``Needs(views=2)`` makes a recipe
            with one view an error naming the term, ``Needs(labels=True)`` a regression task one.

    Registering a name again replaces it, with a warning (a notebook re-running its cell).

    Raises:
        ValueError: a built-in term's name, or a config that is not a TermConfig.
    """
    if name in _BUILT_IN:
        raise ValueError(f"register_term: {name!r} is a built-in term; choose another name")
    config = config or TermConfig
    if not (isinstance(config, type) and issubclass(config, TermConfig)):
        raise ValueError(f"register_term: config must be a subclass of TermConfig, got {config!r}")
    if not callable(loss):
        raise ValueError(f"register_term: loss must be callable as loss(batch, cfg), got {loss!r}")
    if name in _REGISTERED:
        warnings.warn(f"register_term: {name!r} was registered already; the new term replaces it",
                      stacklevel=2)  # fmt: skip
    _REGISTERED[name] = Term(loss, config, needs or Needs())


def registered_term(name: str) -> Term | None:
    """The term registered under ``name`` with :func:`register_term`, or None."""
    return _REGISTERED.get(name)


def get_term(name: str) -> Term:
    """The built-in or registered term called ``name``.

    Raises:
        KeyError: no such term.
    """
    found = _BUILT_IN.get(name) or _REGISTERED.get(name)
    if found is None:
        raise KeyError(f"no objective term named {name!r}")
    return found
