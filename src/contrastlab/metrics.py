"""Which way is better: one registry of metric directions for every part of contrastlab.

Early stopping and the plateau scheduler (their ``mode`` when the config leaves it out), the verdict
("helped" / "hurt"), ``diagnose``'s best epoch, ``compare`` and the report all ask :func:`direction`. A
metric the registry does not know has no direction: the verdict then says "increased" / "decreased" and
early stopping asks for an explicit mode. It never guesses.

Names are looked up after removing a split or family prefix (``val/``, ``train_eval/``, ``gap/``,
``test.``, ``best_val.``, ``diagnostics.``), so ``val/eer``, ``test.eer`` and ``eer`` are one metric.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["direction", "known_directions", "mode_for", "register_metric"]

_PREFIXES = ("train_eval/", "train/", "val/", "test/", "test.", "best_val.", "diagnostics.")

_DIRECTIONS: dict[str, bool | None] = {
    # task metrics (contrastlab.train.metrics and the verification metrics of identity tasks)
    "loss": False,
    "task": False,
    "mse": False,
    "mae": False,
    "rmse": False,
    "r2": True,
    "accuracy": True,
    "macro_f1": True,
    "f1": True,
    "auroc": True,
    "auprc": True,
    "auxiliary_mae": False,
    "cosine_similarity": True,  # genuine (same-identity) pairs
    "genuine_cosine": True,
    "impostor_cosine": False,
    "tar@far=0.001": True,
    "tar@far=0.01": True,
    "eer": False,
    "rank1": True,
    # embedding diagnostics (contrastlab.diagnostics.summary)
    "probes.logistic.accuracy": True,
    "probes.ridge.r2": True,
    "probes.ridge.mae": False,
    "probes.knn1_accuracy": True,
    "probes.knn5_accuracy": True,
    "clustering.ari": True,
    "clustering.nmi": True,
    "clustering.ami": True,
    "geometry.class_cosine.gap": True,
    # no better direction: a change is reported, not judged
    "geometry.uniformity": None,
    "geometry.alignment": None,
    "geometry.rankme": None,
    "geometry.effective_rank": None,
    "geometry.collapse_std": None,
}


def _bare(name: str) -> str:
    stripped = True
    while stripped:  # "best_val.val/accuracy" has two
        stripped = False
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name, stripped = name[len(prefix) :], True
    return name


def direction(name: str) -> bool | None:
    """True when higher is better, False when lower is, None when unknown or neither.

    Example:
        >>> [direction(m) for m in ("val/accuracy", "test.eer", "diagnostics.geometry.uniformity", "zzz")]
        [True, False, None, None]
        >>> direction("test.rmse_cliff")  # RMSE on a named subset of the records
        False
    """
    bare = _bare(name)
    if bare.startswith("gap/") or bare.startswith("gap_ratio/"):
        return None  # a train-minus-val gap: smaller is not always better (underfitting)
    if bare not in _DIRECTIONS and (subset := re.fullmatch(r"(rmse|mae)_\w+", bare)):
        return _DIRECTIONS[subset.group(1)]  # a regression error on a named subset (rmse_cliff)
    return _DIRECTIONS.get(bare)


def mode_for(name: str) -> Literal["min", "max"] | None:
    """``"max"`` / ``"min"`` for a metric with a direction (what early stopping and schedulers take)."""
    better = direction(name)
    return None if better is None else "max" if better else "min"


def register_metric(name: str, *, higher_is_better: bool | None) -> None:
    """Declares the direction of a metric of your own (its bare name, e.g. ``"spearman"``); a name
    registered again takes the new direction."""
    _DIRECTIONS[_bare(name)] = higher_is_better


def known_directions() -> dict[str, bool | None]:
    """A copy of the registry."""
    return dict(_DIRECTIONS)
