"""Classic baselines in the same framework as the neural runs, so every comparison can show them.

Each fits on exactly the split a recipe's runs use and writes a run directory (``config.yaml``,
``split.json``, ``metrics.json`` with val and test metrics) that ``contrastlab compare`` reads like any
other run. A classification gets a logistic regression, a regression a ridge regression (or a forest of
either kind):

- ``fingerprint_forest`` (``fingerprint_rf``): Morgan (ECFP-like) fingerprints from RDKit and a random forest
  (molecules and peptides).
- ``descriptor_forest`` (``descriptor_rf``): RDKit's 2D descriptors of each molecule (217: logP, weights,
  TPSA, counts, topological indices; :func:`~contrastlab.data.molecules.rdkit_descriptors`) and a random
  forest (small molecules).
- ``peptide_forest`` (``peptide_rf``): amino-acid and dipeptide composition, length, mean residue scales
  and the hydrophobic moment of each peptide (:func:`~contrastlab.data.peptides.peptide_features`) and a
  random forest (peptides).
- ``composition_forest`` (``composition_rf``): element fractions and Magpie statistics of each composition
  (fraction-weighted mean, minimum, maximum, range and spread of 22 elemental properties; of mat2vec's 200
  dimensions when the recipe's ``data.options.elements`` is mat2vec) and a random forest (materials: mp_gap).
- ``tfidf_logistic`` (``tfidf_lr``): word and bigram TF-IDF and a linear model (text).
- ``frozen_logistic`` (``frozen_lr``): the recipe's text encoder as it was pretrained (no fine-tuning), its
  pooled embeddings and a linear model (text): what the encoder knows before any training.
- ``features_linear`` (``features_lr``): the dataset's own numeric features, standardised, and a linear model.
- ``pca_cosine``: identities (an open-set split): the features projected on their principal components
  (fitted on train), compared by cosine, with the verification metrics of the trained runs (TAR@FAR, EER,
  rank-1). Its supervised counterpart is a run: ``recipes/identity_ce.yaml`` (cross-entropy, no margin).

The linear models pick their regularisation (C, or ridge's alpha) on the validation split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from contrastlab.data import get_dataset
from contrastlab.metrics import classification_metrics, dataset_regression_metrics
from contrastlab.train.checkpoint import write_json, write_yaml
from contrastlab.train.config import TrainConfig
from contrastlab.train.rundir import RunDir, fitted_metrics
from contrastlab.train.split import make_split

__all__ = [
    "BASELINES",
    "composition_forest",
    "default_baselines",
    "descriptor_forest",
    "features_linear",
    "fingerprint_forest",
    "frozen_logistic",
    "pca_cosine",
    "peptide_forest",
    "run_baseline",
    "tfidf_logistic",
]


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
    data = get_dataset(config.data.name, **config.data.options)
    if not hasattr(data, "molecules"):
        raise ValueError(f"data.name={config.data.name!r} has no molecules to fingerprint")
    from contrastlab.data.molecules import morgan_fingerprints

    features = morgan_fingerprints(data.molecules(), radius=radius, n_bits=n_bits)
    settings = {"kind": "fingerprint_forest", "radius": radius, "n_bits": n_bits}
    return _fit_forest(config, data, features, settings, run_dir, n_estimators, seed)


def descriptor_forest(config: TrainConfig, run_dir: str | Path, *, n_estimators: int = 500,
                      seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Fits a random forest on RDKit's 2D descriptors of the recipe's training molecules; evaluates val
    and test (what ``model.options.descriptors: rdkit`` adds to GINE, on its own).

    Raises:
        ValueError: the dataset has no small molecules given as SMILES.
    """
    data = get_dataset(config.data.name, **config.data.options)
    if not hasattr(data, "add_descriptors"):
        raise ValueError(f"data.name={config.data.name!r} has no molecules to describe")
    data.add_descriptors()  # refuses peptide sequences
    settings = {"kind": "descriptor_forest", "descriptors": "rdkit"}
    return _fit_forest(config, data, data.descriptors.numpy(), settings, run_dir, n_estimators, seed)


def peptide_forest(config: TrainConfig, run_dir: str | Path, *, n_estimators: int = 500,
                   seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Fits a random forest on the classic features of the recipe's training peptides (amino-acid and
    dipeptide composition, length, mean scales, hydrophobic moment:
    :func:`~contrastlab.data.peptides.peptide_features`); evaluates val and test.

    Raises:
        ValueError: the dataset holds no peptide sequences.
    """
    data = get_dataset(config.data.name, **config.data.options)
    if getattr(data, "kind", None) != "sequence":
        raise ValueError(f"data.name={config.data.name!r} holds no peptide sequences to describe")
    from contrastlab.data.peptides import peptide_features

    features, names = peptide_features(data.strings)
    settings = {"kind": "peptide_forest", "features": len(names)}
    return _fit_forest(config, data, features, settings, run_dir, n_estimators, seed)


def _fit_forest(config: TrainConfig, data: Any, features: np.ndarray[Any, Any], settings: dict[str, Any],
                run_dir: str | Path, n_estimators: int, seed: int | None) -> dict[str, Any]:  # fmt: skip
    """A forest on ``features`` (a row per record) fitted on the recipe's training split, scored on val and
    test, and written as a run directory whose settings are ``settings``, the forest's size and seed."""
    split = make_split(config, data)
    state = config.trainer.seed if seed is None else seed
    val, test = _forest(features, data, split, n_estimators, state)
    settings = {**settings, "n_estimators": n_estimators, "seed": state}
    return _write_run(config, data.task, split, settings, val, test, run_dir)


def _forest(features: np.ndarray[Any, Any], data: Any, split: dict[str, torch.Tensor], n_estimators: int,
            seed: int) -> tuple[dict[str, float], dict[str, float]]:  # fmt: skip
    """A random forest (classifier or regressor, by the task) fitted on train; (val, test) metrics."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    forest: Any
    if data.task == "classification":
        forest = RandomForestClassifier(n_estimators=n_estimators, n_jobs=-1, random_state=seed)
    else:
        forest = RandomForestRegressor(n_estimators=n_estimators, n_jobs=-1, random_state=seed)
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
        return dataset_regression_metrics(torch.from_numpy(forest.predict(features[idx])), data, idx)

    return score("val"), score("test")


def composition_features(compositions: list[dict[str, float]],
                         elements_from: Literal["magpie", "mat2vec"] = "magpie",
                         ) -> tuple[np.ndarray[Any, Any], list[str]]:  # fmt: skip
    """(N, F) features of chemical compositions and their names: the fraction of each element present in
    any of them, then the fraction-weighted mean, minimum, maximum, range and standard deviation of each
    dimension of an element table (elementembeddings' files): Magpie's 22 standardised properties by
    default, or mat2vec's 200 dimensions (``elements_from="mat2vec"``)."""
    from contrastlab.data.fusion import element_vectors

    vectors = element_vectors(elements_from)
    elements = sorted({e for c in compositions for e in c})
    missing = sorted(e for e in elements if e not in vectors)
    if missing:
        raise ValueError(f"no {elements_from} vector for element(s) {missing}")
    width = len(next(iter(vectors.values())))
    rows = []
    for composition in compositions:
        total = sum(composition.values())
        fractions = np.array([composition.get(e, 0.0) / total for e in elements])
        present = [e for e in elements if composition.get(e, 0.0) > 0]
        w = np.array([composition[e] / total for e in present])
        props = np.array([vectors[e] for e in present])  # (k, P)
        mean = w @ props
        spread = np.sqrt(np.maximum(w @ (props - mean) ** 2, 0.0))
        lo, hi = props.min(0), props.max(0)
        rows.append(np.concatenate([fractions, mean, lo, hi, hi - lo, spread]))
    names = [f"fraction:{e}" for e in elements]
    stats = ("mean", "min", "max", "range", "sd")
    names += [f"{stat}:{elements_from}{i}" for stat in stats for i in range(width)]
    return np.stack(rows), names


def composition_forest(config: TrainConfig, run_dir: str | Path, *, n_estimators: int = 500,
                       seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """A random forest on element fractions and the statistics of the dataset's element vectors
    (:func:`composition_features`; the table its graphs were built from, ``data.options.elements``, so
    the network and the forest see the same one) of the recipe's training split; evaluates val and test.

    Raises:
        ValueError: the dataset has no compositions.
    """
    data = get_dataset(config.data.name, **config.data.options)
    if not getattr(data, "compositions", None):
        raise ValueError(f"data.name={config.data.name!r} has no compositions (a materials dataset: mp_gap)")
    table: Literal["magpie", "mat2vec"] = getattr(data, "element_table", None) or "magpie"  # the classic
    features, names = composition_features(data.compositions, table)
    settings = {"kind": "composition_forest", "features": len(names), "elements": table}
    return _fit_forest(config, data, features, settings, run_dir, n_estimators, seed)


def _write_run(
    config: TrainConfig,
    task: str,
    split: dict[str, torch.Tensor],
    settings: dict[str, Any],
    val: dict[str, float],
    test: dict[str, float],
    run_dir: str | Path,
    monitor: str | None = None,
) -> dict[str, Any]:
    out = Path(run_dir)
    write_yaml({"config": config.model_dump(mode="json"), "baseline": settings}, RunDir(out).config)
    write_json({k: v.tolist() for k, v in split.items()}, RunDir(out).split)
    metrics = {"baseline": settings, **fitted_metrics(task, val, test, monitor=monitor)}
    write_json(metrics, RunDir(out).metrics)
    return metrics


#: The grid of inverse regularisation strengths the logistic baselines choose from on validation.
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
#: The grid of ridge penalties the regression baselines choose from on validation.
ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _linear(
    features: Any, data: Any, split: dict[str, torch.Tensor], seed: int
) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """A logistic regression per C (classification, best val accuracy) or a ridge regression per alpha
    (regression, best val RMSE), fitted on train; (val, test, the chosen model and setting)."""
    from sklearn.linear_model import LogisticRegression, Ridge

    train, val, test = (split[p].numpy() for p in ("train", "val", "test"))
    y = data.targets.numpy()
    classify = data.task == "classification"
    best: tuple[float, Any, float] | None = None
    for c in C_GRID if classify else ALPHA_GRID:
        if classify:
            model = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(features[train], y[train])
            quality = float((model.predict(features[val]) == y[val]).mean())
        else:
            model = Ridge(alpha=c).fit(features[train], y[train])
            quality = -float(np.sqrt(np.mean((model.predict(features[val]) - y[val]) ** 2)))
        if best is None or quality > best[0]:
            best = (quality, model, c)
    assert best is not None
    _, model, c = best

    def score(idx: np.ndarray[Any, Any]) -> dict[str, float]:
        if idx.size == 0:
            return {}
        if classify:
            log_p = np.asarray(model.predict_log_proba(features[idx]), dtype=np.float64)
            return classification_metrics(torch.from_numpy(log_p), data.targets[idx])
        prediction = torch.from_numpy(np.asarray(model.predict(features[idx])))
        return dataset_regression_metrics(prediction, data, idx)

    chosen = {"model": "logistic", "C": c} if classify else {"model": "ridge", "alpha": c}
    return score(val), score(test), chosen


def _text_data(config: TrainConfig) -> Any:
    data = get_dataset(config.data.name, **config.data.options)
    if not hasattr(data, "texts"):
        raise ValueError(f"data.name={config.data.name!r} holds no texts; this baseline is for text datasets")
    return data


def tfidf_logistic(config: TrainConfig, run_dir: str | Path, *, seed: int | None = None) -> dict[str, Any]:
    """TF-IDF of words and bigrams (fitted on the training split) and a logistic or ridge regression.

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
    val, test, chosen = _linear(features, data, split, state)
    settings = {"kind": "tfidf_logistic", "ngram_range": [1, 2], "min_df": 2, **chosen, "seed": state,
                "vocabulary": len(vectorizer.vocabulary_)}  # fmt: skip
    return _write_run(config, data.task, split, settings, val, test, run_dir)


def frozen_logistic(config: TrainConfig, run_dir: str | Path, *, seed: int | None = None) -> dict[str, Any]:
    """The recipe's pretrained text encoder, frozen: pooled embeddings (standardised) and a logistic or
    ridge regression.

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
    val, test, chosen = _linear((embedding - mean) / sd, data, split, state)
    settings = {"kind": "frozen_logistic", "encoder": config.model.name, "options": config.model.options,
                **chosen, "seed": state}  # fmt: skip
    return _write_run(config, data.task, split, settings, val, test, run_dir)


def features_linear(config: TrainConfig, run_dir: str | Path, *, seed: int | None = None) -> dict[str, Any]:
    """The dataset's numeric features, standardised on the training split, and a logistic or ridge
    regression.

    Raises:
        ValueError: the dataset has no feature matrix.
    """
    data = get_dataset(config.data.name, **config.data.options)
    if not isinstance(getattr(data, "features", None), torch.Tensor):
        raise ValueError(f"data.name={config.data.name!r} has no numeric feature matrix")
    split = make_split(config, data)
    x = data.features.reshape(len(data), -1).double().numpy()
    train = split["train"].numpy()
    mean, sd = x[train].mean(0), x[train].std(0) + 1e-8
    state = config.trainer.seed if seed is None else seed
    val, test, chosen = _linear((x - mean) / sd, data, split, state)
    settings = {"kind": "features_linear", "features": int(x.shape[1]), **chosen, "seed": state}
    return _write_run(config, data.task, split, settings, val, test, run_dir)


def pca_cosine(config: TrainConfig, run_dir: str | Path, *, n_components: int | None = None,
               seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Identity verification by cosine between the rows' projections on the training split's principal
    components (``n_components``: default the recipe's ``model.embedding_dim``); val and test get the
    trained runs' verification metrics.

    Raises:
        ValueError: the dataset has no numeric feature matrix.
    """
    from sklearn.decomposition import PCA

    from contrastlab.train.evaluate import verification

    data = get_dataset(config.data.name, **config.data.options)
    if not isinstance(getattr(data, "features", None), torch.Tensor):
        raise ValueError(f"data.name={config.data.name!r} has no numeric feature matrix")
    split = make_split(config, data)
    x = data.features.reshape(len(data), -1).float().numpy()
    state = config.trainer.seed if seed is None else seed
    k = min(n_components or config.model.embedding_dim, len(split["train"]), x.shape[1])
    pca = PCA(n_components=k, random_state=state).fit(x[split["train"].numpy()])

    def score(part: str) -> dict[str, float]:
        idx = split[part]
        if idx.numel() == 0:
            return {}
        return verification(torch.from_numpy(pca.transform(x[idx.numpy()])), data.targets[idx])

    settings = {"kind": "pca_cosine", "components": k,
                "explained_variance": float(pca.explained_variance_ratio_.sum()), "seed": state}  # fmt: skip
    return _write_run(config, data.task, split, settings, score("val"), score("test"), run_dir,
                      monitor="val/eer")  # fmt: skip


#: The baselines by their command-line name.
BASELINES = {"fingerprint_rf": fingerprint_forest, "descriptor_rf": descriptor_forest,
             "composition_rf": composition_forest, "peptide_rf": peptide_forest,
             "tfidf_lr": tfidf_logistic, "frozen_lr": frozen_logistic,
             "features_lr": features_linear, "pca_cosine": pca_cosine}  # fmt: skip


def default_baselines(config: TrainConfig, data: Any) -> list[str]:
    """The baselines that fit a recipe's data: fingerprints (and descriptors, for small molecules; residue
    composition, for peptides) for molecules, compositions (and their formula text) for materials, TF-IDF
    and the frozen encoder for text, principal components by cosine for identities (an open-set split), a
    linear model on other numeric features.

    Raises:
        ValueError: no baseline fits the data.
    """
    if hasattr(data, "molecules"):
        small = getattr(data, "kind", "") == "smiles"
        return ["fingerprint_rf", "descriptor_rf"] if small else ["fingerprint_rf", "peptide_rf"]
    if getattr(data, "compositions", None):
        return ["composition_rf", "tfidf_lr"]
    if hasattr(data, "texts"):
        return ["tfidf_lr", "frozen_lr"] if config.model.name == "transformer" else ["tfidf_lr"]
    if getattr(data, "open_set", None) and isinstance(getattr(data, "features", None), torch.Tensor):
        return ["pca_cosine"]  # identities never trained on: verification, not classification
    if isinstance(getattr(data, "features", None), torch.Tensor):
        return ["features_lr"]
    raise ValueError(f"no baseline fits data.name={config.data.name!r} (choose one with --kind)")


def run_baseline(kind: str, config: TrainConfig, run_dir: str | Path, *, seed: int, radius: int = 2,
                 n_bits: int = 2048, n_estimators: int = 500) -> dict[str, Any]:  # fmt: skip
    """One baseline by its command-line name (``BASELINES``) into ``run_dir``."""
    if kind == "fingerprint_rf":
        return fingerprint_forest(config, run_dir, radius=radius, n_bits=n_bits, n_estimators=n_estimators,
                                  seed=seed)  # fmt: skip
    if kind == "descriptor_rf":
        return descriptor_forest(config, run_dir, n_estimators=n_estimators, seed=seed)
    if kind == "composition_rf":
        return composition_forest(config, run_dir, n_estimators=n_estimators, seed=seed)
    if kind == "peptide_rf":
        return peptide_forest(config, run_dir, n_estimators=n_estimators, seed=seed)
    return BASELINES[kind](config, run_dir, seed=seed)


def run_baselines(config: TrainConfig, runs_dir: str | Path, *, kinds: Sequence[str] = (), seeds: int = 1,
                  name: str | None = None, report: Callable[[str], None] = print,
                  **options: Any) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    """Each baseline of ``kinds`` (default: :func:`default_baselines` for the recipe's data) at ``seeds``
    seeds (the recipe's ``trainer.seed`` + 0, 1, ...), each into ``runs_dir/<name>_<kind>[_seed<k>]``;
    ``report`` gets a line per run and, over several seeds, each baseline's mean ± sd. Returns each
    baseline's test metrics, one value per seed. ``options``: :func:`run_baseline`'s."""
    import statistics

    if not kinds:
        kinds = default_baselines(config, get_dataset(config.data.name, **config.data.options))
    found: dict[str, dict[str, list[float]]] = {}
    for kind in kinds:
        prefix = f"{name or config.name}_{kind}"
        tests = found.setdefault(kind, {})
        for k in range(seeds):
            run_dir = Path(runs_dir) / (f"{prefix}_seed{k}" if seeds > 1 else prefix)
            metrics = run_baseline(kind, config, run_dir, seed=config.trainer.seed + k, **options)
            report(f"{run_dir}: test " + ", ".join(f"{m}={v:.4f}" for m, v in metrics["test"].items()))
            for m, v in metrics["test"].items():
                tests.setdefault(m, []).append(v)
        if seeds > 1:
            summary = [f"{m}={statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" for m, v in tests.items()]
            report(f"{kind}: mean ± sd over seeds: " + ", ".join(summary))
    return found
