"""Task metrics against scikit-learn, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, r2_score, roc_auc_score

from contrastlab.metrics import auprc, auroc, classification_metrics, regression_metrics, subset_metrics


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_auroc_and_auprc_match_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.random(200) < 0.3
    s = rng.normal(size=200) + y
    if ties:
        s = np.round(s, 1)
    assert auroc(torch.tensor(s), torch.tensor(y)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auprc(torch.tensor(s), torch.tensor(y)) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_single_class_gives_nan_not_an_error():
    assert np.isnan(auroc(torch.rand(5), torch.ones(5, dtype=torch.bool)))
    assert np.isnan(auprc(torch.rand(5), torch.zeros(5, dtype=torch.bool)))


def test_multiclass_metrics_are_macro_one_vs_rest():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 3))
    y = rng.integers(0, 3, 300)
    m = classification_metrics(torch.tensor(logits), torch.tensor(y))
    probs = torch.tensor(logits).softmax(-1).numpy()
    assert m["auroc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-10)
    assert m["macro_f1"] == pytest.approx(f1_score(y, logits.argmax(1), average="macro"), abs=1e-10)
    assert m["accuracy"] == pytest.approx(float((logits.argmax(1) == y).mean()))


@pytest.mark.parametrize("seed", range(4))
def test_subset_metrics_are_the_regression_metrics_of_the_rows_in_each_subset(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.normal(size=60), rng.normal(size=60)
    masks = {"cliff": rng.random(60) < 0.3, "rest": rng.random(60) < 0.7, "none": np.zeros(60, dtype=bool)}
    got = subset_metrics(torch.tensor(p), torch.tensor(y), {k: torch.tensor(m) for k, m in masks.items()})
    for name in ("cliff", "rest"):
        m = masks[name]
        assert got[f"rmse_{name}"] == pytest.approx(np.sqrt(np.mean((p[m] - y[m]) ** 2)))
        assert got[f"mae_{name}"] == pytest.approx(np.mean(np.abs(p[m] - y[m])))
    assert set(got) == {"rmse_cliff", "mae_cliff", "rmse_rest", "mae_rest"}  # an empty subset is left out


def test_regression_metrics_match_numpy_and_sklearn():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=100), rng.normal(size=100)
    m = regression_metrics(torch.tensor(p), torch.tensor(y))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((p - y) ** 2)))
    assert m["mae"] == pytest.approx(np.mean(np.abs(p - y)))
    assert m["r2"] == pytest.approx(r2_score(y, p))
