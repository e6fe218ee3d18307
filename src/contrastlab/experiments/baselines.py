"""Classic baselines in the same framework as the neural runs, so every comparison can show them.

Each fits on exactly the split a recipe's runs use and writes a run directory (``config.yaml``,
``split.json``, ``metrics.json`` with val and test metrics) that ``contrastlab compare`` reads like any
other run:

- ``fingerprint_forest``: Morgan (ECFP-like) fingerprints from RDKit and a scikit-learn random forest
  (molecules and peptides).
- ``tfidf_logistic``: word and bigram TF-IDF and a logistic regression (text).
- ``frozen_logistic``: the recipe's text encoder as it was pretrained (no fine-tuning), its pooled
  embeddings and a logistic regression (text): what the encoder knows before any training.

The logistic regressions pick their regularisation C on the validation split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastlab.data import get_dataset
from contrastlab.train.build import make_split
from contrastlab.train.checkpoint import write_json, write_yaml
from contrastlab.train.config import TrainConfig
from contrastlab.train.metrics import classification_metrics, regression_metrics
from contrastlab.train.rundir import RunDir

__all__ = ["fingerprint_forest", "frozen_logistic", "morgan_fingerprints", "tfidf_logistic"]


def morgan_fingerprints(mols: list[Any], *, radius: int = 2, n_bits: int = 2048) -> np.ndarray[Any, Any]:
    """(N, n_bits) uint8 bit vectors of Morgan fingerprints (radius 2, 2048 bits: ECFP4-like)."""
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    return np.stack([generator.GetFingerprintAsNumPy(m) for m in mols]).astype(np.uint8)


def fingerprint_forest(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    radius: int = 2,
    n_bits: int = 2048,
    n_estimators: int = 500,
    seed: int | None = None,
) -> dict[str, Any]:
    """Fits a random forest on Morgan fingerprints of the recipe's training split; evaluates val and test.

    Args:
        config: A recipe on a molecule or peptide dataset (only its data settings and seed are used).
        run_dir: Where the run directory is written.
        seed: The forest's random state (default: ``config.trainer.seed``).

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        ValueError: the dataset has no molecules (not a graph dataset).
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    data = get_dataset(config.data.name, **config.data.options)
    if not hasattr(data, "molecules"):
        raise ValueError(f"data.name={config.data.name!r} has no molecules to fingerprint")
    split = make_split(config, data)
    features = morgan_fingerprints(data.molecules(), radius=radius, n_bits=n_bits)
    state = config.trainer.seed if seed is None else seed
    forest: Any
    if data.task == "classification":
        forest = RandomForestClassifier(n_estimators=n_estimators, n_jobs=-1, random_state=state)
    else:
        forest = RandomForestRegressor(n_estimators=n_estimators, n_jobs=-1, random_state=state)
    train_idx = split["train"].numpy()
    forest.fit(features[train_idx], data.targets[train_idx].numpy())

    def score(part: str) -> dict[str, float]:
        idx = split[part].numpy()
        if idx.size == 0:
            return {}
        y = data.targets[idx]
        if data.task == "classification":
            proba = np.zeros((idx.size, data.num_classes))
            proba[:, forest.classes_] = forest.predict_proba(features[idx])
            return classification_metrics(torch.from_numpy(np.log(np.clip(proba, 1e-12, 1.0))), y)
        return regression_metrics(torch.from_numpy(forest.predict(features[idx])), y)

    settings = {"kind": "fingerprint_forest", "radius": radius, "n_bits": n_bits,
                "n_estimators": n_estimators, "seed": state}  # fmt: skip
    return _write_run(config, data.task, split, settings, score("val"), score("test"), run_dir)


def _write_run(
    config: TrainConfig,
    task: str,
    split: dict[str, torch.Tensor],
    settings: dict[str, Any],
    val: dict[str, float],
    test: dict[str, float],
    run_dir: str | Path,
) -> dict[str, Any]:
    out = Path(run_dir)
    write_yaml({"config": config.model_dump(mode="json"), "baseline": settings}, RunDir(out).config)
    write_json({k: v.tolist() for k, v in split.items()}, RunDir(out).split)
    monitor = "val/rmse" if task == "regression" else "val/accuracy"
    metrics = {
        "baseline": settings,
        "best": {"epoch": None, "metric": monitor, "value": val.get(monitor[4:])},
        "final": {f"val/{k}": v for k, v in val.items()},
        "test": test,
        "epochs_run": 0,
        "stopped_early": False,
    }
    write_json(metrics, RunDir(out).metrics)
    return metrics


#: The grid of inverse regularisation strengths the logistic baselines choose from on validation.
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _logistic(
    features: Any, data: Any, split: dict[str, torch.Tensor], seed: int
) -> tuple[dict[str, float], dict[str, float], float]:
    """Fits a logistic regression per C on train, keeps the best on val accuracy; (val, test, C)."""
    from sklearn.linear_model import LogisticRegression

    train, val, test = (split[p].numpy() for p in ("train", "val", "test"))
    y = data.targets.numpy()
    best: tuple[float, Any, float] | None = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(features[train], y[train])
        accuracy = float((model.predict(features[val]) == y[val]).mean())
        if best is None or accuracy > best[0]:
            best = (accuracy, model, c)
    assert best is not None
    _, model, c = best

    def score(idx: np.ndarray[Any, Any]) -> dict[str, float]:
        if idx.size == 0:
            return {}
        log_p = np.asarray(model.predict_log_proba(features[idx]), dtype=np.float64)
        return classification_metrics(torch.from_numpy(log_p), data.targets[idx])

    return score(val), score(test), c


def _text_data(config: TrainConfig) -> Any:
    data = get_dataset(config.data.name, **config.data.options)
    if not hasattr(data, "texts"):
        raise ValueError(f"data.name={config.data.name!r} holds no texts; this baseline is for text datasets")
    return data


def tfidf_logistic(config: TrainConfig, run_dir: str | Path, *, seed: int | None = None) -> dict[str, Any]:
    """TF-IDF of words and bigrams (fitted on the training split) and a logistic regression.

    Raises:
        ValueError: the recipe's dataset is not text.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    data = _text_data(config)
    split = make_split(config, data)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    vectorizer.fit([data.texts[i] for i in split["train"].tolist()])
    features = vectorizer.transform(data.texts)
    state = config.trainer.seed if seed is None else seed
    val, test, c = _logistic(features, data, split, state)
    settings = {"kind": "tfidf_logistic", "ngram_range": [1, 2], "min_df": 2, "C": c, "seed": state,
                "vocabulary": len(vectorizer.vocabulary_)}  # fmt: skip
    return _write_run(config, data.task, split, settings, val, test, run_dir)


def frozen_logistic(config: TrainConfig, run_dir: str | Path, *, seed: int | None = None) -> dict[str, Any]:
    """The recipe's pretrained text encoder, frozen: pooled embeddings (standardised) and a logistic
    regression.

    Raises:
        ValueError: the recipe's dataset is not text, or its model is not a text encoder.
    """
    from contrastlab.train.build import make_model
    from contrastlab.train.evaluate import predict

    data = _text_data(config)
    split = make_split(config, data)
    torch.manual_seed(config.trainer.seed)
    model = make_model(config, data)
    everything = torch.arange(len(data))
    embedding = predict(model, data, everything, torch.device(config.trainer.device)).embedding.numpy()
    train = split["train"].numpy()
    mean, sd = embedding[train].mean(0), embedding[train].std(0) + 1e-8
    state = config.trainer.seed if seed is None else seed
    val, test, c = _logistic((embedding - mean) / sd, data, split, state)
    settings = {"kind": "frozen_logistic", "model": config.model.name, "options": config.model.options,
                "C": c, "seed": state}  # fmt: skip
    return _write_run(config, data.task, split, settings, val, test, run_dir)
