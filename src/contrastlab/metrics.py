"""Metrics, in one place: the task metrics in torch (accuracy, macro F1, AUROC and AUPRC for classification;
MAE, RMSE, R² for regression) and one registry of which way each metric is better.

Tied scores are handled as scikit-learn does (one threshold per distinct score), which the tests check
against ``roc_auc_score`` and ``average_precision_score``.

Which way is better: early stopping and the plateau scheduler (their ``mode`` when the config leaves it out),
the verdict ("helped" / "hurt"), ``diagnose``'s best epoch, ``compare`` and the report all ask
:func:`direction`. A metric the registry does not know has no direction: the verdict then says "increased" /
"decreased" and early stopping asks for an explicit mode. It never guesses.

Names are looked up after removing a split or family prefix (``val/``, ``train_eval/``, ``gap/``,
``test.``, ``best_val.``, ``diagnostics.``), so ``val/eer``, ``test.eer`` and ``eer`` are one metric.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "auprc",
    "auroc",
    "classification_metrics",
    "dataset_regression_metrics",
    "direction",
    "known_directions",
    "mode_for",
    "register_metric",
    "regression_metrics",
    "subset_metrics",
]

_PREFIXES = ("train_eval/", "train/", "val/", "test/", "test.", "best_val.", "diagnostics.")

_DIRECTIONS: dict[str, bool | None] = {
    # task metrics (computed below, and the verification metrics of identity tasks)
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


# --- task metrics ---------------------------------------------------------------------------------------



def _tie_groups(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, pos = scores[order], positive[order].double()
    tp, fp = pos.cumsum(0), (1 - pos).cumsum(0)
    last_of_group = torch.ones_like(s, dtype=torch.bool)
    last_of_group[:-1] = s[1:] != s[:-1]
    return tp[last_of_group], fp[last_of_group]


def auroc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive`` (NaN if one class only).

    Example:
        >>> auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([False, False, True, True]))
        0.75
    """
    n_pos, n_neg = int(positive.sum()), int((~positive.bool()).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tp, fp = _tie_groups(scores, positive.bool())
    tpr = torch.cat([tp.new_zeros(1), tp / n_pos])
    fpr = torch.cat([fp.new_zeros(1), fp / n_neg])
    return float(torch.trapezoid(tpr, fpr))


def auprc(scores: Tensor, positive: Tensor) -> float:
    """Average precision, ``Σ_n (R_n - R_{n-1}) P_n`` over distinct thresholds (NaN without positives).

    Example:
        >>> round(auprc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([False, False, True, True])), 4)
        0.8333
    """
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    tp, fp = _tie_groups(scores, positive.bool())
    precision = tp / (tp + fp)
    recall = tp / n_pos
    delta = torch.diff(torch.cat([recall.new_zeros(1), recall]))
    return float((delta * precision).sum())


def classification_metrics(logits: Tensor, targets: Tensor) -> dict[str, float]:
    """Accuracy, macro F1, and AUROC/AUPRC (binary: of class 1; more classes: macro one-vs-rest over the
    classes present) from (N, C) logits and (N,) labels."""
    logits = logits.float()
    pred = logits.argmax(dim=-1)
    n_classes = logits.shape[-1]
    f1s = []
    for c in range(n_classes):
        tp = float(((pred == c) & (targets == c)).sum())
        denom = float((pred == c).sum() + (targets == c).sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    probs = logits.softmax(dim=-1)
    classes = [1] if n_classes == 2 else [c for c in range(n_classes) if bool((targets == c).any())]
    rocs = [auroc(probs[:, c], targets == c) for c in classes]
    prs = [auprc(probs[:, c], targets == c) for c in classes]
    return {
        "accuracy": float((pred == targets).float().mean()),
        "macro_f1": sum(f1s) / len(f1s),
        "auroc": sum(rocs) / len(rocs),
        "auprc": sum(prs) / len(prs),
    }


def regression_metrics(prediction: Tensor, targets: Tensor) -> dict[str, float]:
    """MAE, RMSE and R² of (N,) predictions."""
    y = targets.double()
    err = prediction.double() - y
    return {
        "mae": float(err.abs().mean()),
        "rmse": float(err.pow(2).mean().sqrt()),
        "r2": float(1 - err.pow(2).sum() / (y - y.mean()).pow(2).sum()),
    }


def subset_metrics(prediction: Tensor, targets: Tensor, subsets: dict[str, Tensor]) -> dict[str, float]:
    """``rmse_<name>`` and ``mae_<name>`` of (N,) regression predictions over the rows in each subset (a
    (N,) bool mask of these rows); a subset with none of them is left out.

    Example:
        >>> subset_metrics(torch.tensor([1.0, 2.0, 5.0]), torch.tensor([1.0, 0.0, 1.0]),
        ...                {"cliff": torch.tensor([False, True, True])})
        {'rmse_cliff': 3.1622776601683795, 'mae_cliff': 3.0}
    """
    out: dict[str, float] = {}
    for name, mask in subsets.items():
        if bool(mask.any()):
            m = regression_metrics(prediction[mask], targets[mask])
            out[f"rmse_{name}"], out[f"mae_{name}"] = m["rmse"], m["mae"]
    return out


def dataset_regression_metrics(prediction: Tensor, data: Any, idx: Tensor | Any) -> dict[str, float]:
    """The regression metrics of (N,) predictions for rows ``idx`` of a dataset, with those of its named
    subsets (``data.subsets``: ``rmse_cliff``), as trained runs and baselines both report them."""
    y = data.targets[idx]
    subsets = {name: mask[idx] for name, mask in getattr(data, "subsets", {}).items()}
    return {**regression_metrics(prediction, y), **subset_metrics(prediction, y, subsets)}
