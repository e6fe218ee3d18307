"""Classic baselines in the same framework as the neural runs, so every comparison can show them.

``fingerprint_forest``: Morgan (ECFP-like) fingerprints from RDKit and a scikit-learn random forest, on
exactly the split a recipe's runs use. It writes a run directory (``config.yaml``, ``split.json``,
``metrics.json`` with val and test metrics) that ``contrastlab compare`` reads like any other run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastlab.data import get_dataset
from contrastlab.train.checkpoint import write_json, write_yaml
from contrastlab.train.config import TrainConfig
from contrastlab.train.metrics import classification_metrics, regression_metrics
from contrastlab.train.trainer import make_split

__all__ = ["fingerprint_forest", "morgan_fingerprints"]


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

    val, test = score("val"), score("test")
    out = Path(run_dir)
    settings = {"kind": "fingerprint_forest", "radius": radius, "n_bits": n_bits,
                "n_estimators": n_estimators, "seed": state}  # fmt: skip
    write_yaml({"config": config.model_dump(mode="json"), "baseline": settings}, out / "config.yaml")
    write_json({k: v.tolist() for k, v in split.items()}, out / "split.json")
    monitor = "val/rmse" if data.task == "regression" else "val/accuracy"
    metrics = {
        "baseline": settings,
        "best": {"epoch": None, "metric": monitor, "value": val.get(monitor[4:])},
        "final": {f"val/{k}": v for k, v in val.items()},
        "test": test,
        "epochs_run": 0,
        "stopped_early": False,
    }
    write_json(metrics, out / "metrics.json")
    return metrics
