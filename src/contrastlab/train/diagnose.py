"""``contrastlab diagnose``: diagnostics of a run directory (or of a plain embeddings file).

Reads the embeddings a run saved for a split, computes :func:`contrastlab.diagnostics.summary.summarize`,
the train/val gap from the run's history, and with ``against`` the CKA between the two runs' embeddings
(with a bootstrap interval) and stage by stage between their best checkpoints. Writes ``diagnostics.json``
and PNG plots into the run directory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastlab._io import read_json, reading
from contrastlab.data import get_dataset
from contrastlab.diagnostics import alignment, bootstrap_cka, linear_cka
from contrastlab.diagnostics.summary import plot_projection, summarize
from contrastlab.metrics import direction
from contrastlab.models import ContrastiveModel
from contrastlab.train.checkpoint import load_checkpoint, read_history, write_json
from contrastlab.train.config import TrainConfig, validate
from contrastlab.train.rundir import RunDir

__all__ = ["dataset_of", "diagnose_file", "diagnose_run", "format_diagnostics", "generalization_gap",
           "load_embeddings", "run_config"]


def load_embeddings(path: str | Path, *, key: str = "embedding") -> tuple[np.ndarray, np.ndarray | None]:
    """Reads embeddings (and targets/labels when present) from ``.npz``, ``.npy`` or ``.pt``.

    ``.npz``/``.pt`` hold a mapping with ``key`` (default "embedding") and optionally "targets" or
    "labels"; ``.npy`` holds the embedding matrix alone. ``.pt`` files load with ``weights_only=True``.

    Raises:
        ValueError: unknown suffix, a missing key, or labels whose length differs from the rows.
    """
    p = Path(path)
    if p.suffix not in (".npy", ".npz", ".pt"):
        raise ValueError(f"{p}: embeddings must be .npz, .npy or .pt, got {p.suffix!r}")
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist")
    expected = ("a readable embeddings file: save a matrix with numpy.savez(path, embedding=..., labels=...) "
                "or torch.save({'embedding': ..., 'labels': ...})")
    with reading(p, expected):  # pickles are never loaded: allow_pickle=False, weights_only=True
        if p.suffix == ".npy":
            data: Any = {key: np.load(p, allow_pickle=False)}
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as archive:
                data = {k: archive[k] for k in archive.files}
        else:
            loaded = torch.load(p, map_location="cpu", weights_only=True)
            if isinstance(loaded, torch.Tensor):
                loaded = {key: loaded}
            if not isinstance(loaded, dict):
                raise TypeError(f"it holds a {type(loaded).__name__}, not a tensor or a mapping of arrays")
            data = {k: (v.double() if v.is_floating_point() else v).numpy() if isinstance(v, torch.Tensor)
                    else np.asarray(v) for k, v in loaded.items()}  # fmt: skip
    if key not in data:
        raise ValueError(f"{p} has no array named {key!r} (it has {sorted(data)}); pass --key")
    emb = _matrix(p, np.asarray(data[key]))
    labels = data.get("targets", data.get("labels"))
    if labels is not None and np.ndim(labels) != 1:
        raise ValueError(f"{p}: labels of shape {np.shape(labels)}; expected one per embedding row")
    if labels is not None and len(labels) != len(emb):
        raise ValueError(f"{p}: {len(labels)} labels for {len(emb)} embedding rows")
    return emb, None if labels is None else np.asarray(labels)


def _matrix(path: Path, emb: np.ndarray) -> np.ndarray:
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.number):
        raise ValueError(f"{path}: embeddings must be a numeric (N, D) matrix, got {emb.dtype} {emb.shape}")
    if emb.shape[0] < 2 or emb.shape[1] < 1:
        raise ValueError(f"{path}: {emb.shape[0]} embeddings of width {emb.shape[1]}; diagnostics need at "
                         "least two rows")  # fmt: skip
    if not np.isfinite(emb).all():
        raise ValueError(f"{path}: {int((~np.isfinite(emb)).any(axis=1).sum())} embedding rows hold NaN or "
                         "infinite values (a diverged run?)")  # fmt: skip
    return emb


def generalization_gap(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Train (eval-mode) minus val, and their ratio, for every task metric, at the last epoch and at the
    epoch where each val metric was best."""
    if not history:
        return {}
    metrics = sorted(k[len("val/") :] for k in history[-1] if k.startswith("val/"))
    out: dict[str, Any] = {}
    for m in metrics:
        better = direction(m)
        values = [row[f"val/{m}"] for row in history]
        moments = [("final", history[-1])]
        if better is not None:  # a metric with no known direction has no best epoch
            moments.append(("at_best_val", history[int(np.argmax(values) if better else np.argmin(values))]))
        entry = {}
        for name, row in moments:
            train_v, val_v = row.get(f"train_eval/{m}"), row.get(f"val/{m}")
            if train_v is None or val_v is None:
                continue
            entry[name] = {
                "epoch": int(row["epoch"]),
                "train": train_v,
                "val": val_v,
                "difference": train_v - val_v,
                "ratio": train_v / val_v if val_v else float("nan"),
            }
        out[m] = entry
    return out


def run_config(run_dir: Path) -> TrainConfig:
    """The validated config a run recorded (its config.yaml)."""
    from contrastlab.train.api import recorded_run

    return validate(recorded_run(RunDir(run_dir))["config"])


def _stage_names(model: ContrastiveModel) -> list[str]:
    """The model's stages bottom to top: the encoder's named stages when it has them (a fusion model's
    graph, text_fine, text_final, fused), else each encoder layer; then the task head and the projection."""
    names = {id(module): name for name, module in model.named_modules()}  # a module's first (own) name
    named = getattr(model.encoder, "stage_modules", None)
    modules = list(named().values()) if named is not None else model.encoder_layers()
    return [*(names[id(m)] for m in modules), "head", "projection"]


def _stage_label(name: str) -> str:
    """``encoder.stages.fused`` -> ``fused``; layer names stay as they are."""
    return name.removeprefix("encoder.stages.")


def diagnose_run(
    run_dir: str | Path,
    *,
    split: str = "val",
    against: str | Path | None = None,
    plots: bool = True,
    model: Any = None,
    dataset: Any = None,
) -> dict[str, Any]:
    """Diagnostics of a trained run (and, with ``against``, how it differs from another run). ``model`` and
    ``dataset``: the encoder and data the runs were trained with from Python (``contrastlab.fit``)."""
    run = Path(run_dir)
    files = RunDir(run)
    emb_file = files.embedding_file(split)
    if not emb_file.is_file():
        raise FileNotFoundError(
            f"{emb_file} not found: is {run} a finished contrastlab run (split {split!r})?"
        )
    config = run_config(run)
    emb, targets = load_embeddings(emb_file)
    data = dataset if dataset is not None else dataset_of(config)
    result: dict[str, Any] = {"run": str(run), "split": split}
    result["embedding"] = summarize(emb, targets, task=data.task, seed=config.trainer.seed)
    with np.load(emb_file) as archive:  # two views of each row, saved by runs that train on views
        if "view_a" in archive.files:
            result["embedding"]["geometry"]["alignment"] = alignment(archive["view_a"], archive["view_b"])
    if files.history.is_file():
        result["generalization"] = generalization_gap(read_history(files.history))
    if plots and importlib.util.find_spec("matplotlib") is not None:
        plot_projection(
            emb, targets, str(run / f"projection_{split}.png"), title=f"{run.name}: PCA of {split}"
        )
        result["plots"] = [f"projection_{split}.png"]

    if against is not None:
        result["comparison"] = _compare_with(run, Path(against), split, emb, config, data, model, plots,
                                             result)  # fmt: skip
    write_json(result, files.diagnostics)
    return result


def _compare_with(run: Path, other: Path, split: str, emb: np.ndarray, config: Any, data: Any, model: Any,
                  plots: bool, result: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """How ``run`` differs from ``other`` on the same ``split``: the embeddings' CKA (with a bootstrap
    interval) and the CKA of every stage pair of the two models on the split's inputs."""
    from contrastlab.diagnostics.layers import layer_cka, plot_cka_heatmap
    from contrastlab.train.build import batch_inputs, make_model, own_model

    files, other_files = RunDir(run), RunDir(other)
    other_emb, _ = load_embeddings(other_files.embedding_file(split))
    expected = "a run's split.json (as contrastlab train writes it)"
    rows = read_json(files.split, expected)
    if rows != read_json(other_files.split, expected) or other_emb.shape[0] != emb.shape[0]:
        raise ValueError(f"{run} and {other} did not use the same {split} split; CKA needs the same inputs")
    point, lo, hi = bootstrap_cka(emb, other_emb, n_boot=200, seed=0)
    comparison: dict[str, Any] = {
        "against": str(other),
        "embedding_cka": {"linear": point, "ci95": [lo, hi],
                          "linear_debiased": linear_cka(emb, other_emb, debiased=True)},
    }  # fmt: skip
    if model is not None:
        train_rows = torch.tensor(rows["train"])
        model_a, model_b = (own_model(model, c, data, train_rows) for c in (config, run_config(other)))
    else:
        model_a, model_b = make_model(config, data), make_model(run_config(other), data)
    model_a.load_state_dict(load_checkpoint(files.best)["model"])
    model_b.load_state_dict(load_checkpoint(other_files.best)["model"])
    idx = torch.tensor(rows[split])
    cpu = torch.device("cpu")
    batches = [batch_inputs(data, idx[i : i + 512], cpu) for i in range(0, len(idx), 512)]
    # The stages both models have (the graph tower alone lacks the fusion model's text stages).
    shared = set(_stage_names(model_b))
    stages = [name for name in _stage_names(model_a) if name in shared]
    pool = getattr(model_a.encoder, "pool_stage", None)  # text: masked mean over each text's tokens
    matrix = layer_cka(model_a, model_b, batches, layers_a=stages, pool=pool)
    labels = [_stage_label(name) for name in stages]
    comparison["stage_cka"] = {label: float(matrix[i, i]) for i, label in enumerate(labels)}
    comparison["stage_cka_matrix"] = {"stages": labels, "values": matrix.tolist()}
    if plots and importlib.util.find_spec("matplotlib") is not None:
        plot_cka_heatmap(matrix, labels, labels, str(run / "cka_against.png"),
                         title=f"{run.name} vs {other.name}")  # fmt: skip
        result.setdefault("plots", []).append("cka_against.png")
    return comparison


def dataset_of(config: TrainConfig) -> Any:
    """The dataset a run's config names (one passed from Python cannot be rebuilt from it)."""
    if config.data.name.startswith("python:"):
        raise ValueError(
            f"this run was trained on a dataset passed from Python ({config.data.name}), which its config "
            "cannot rebuild; pass the same data from Python: diagnose_run(run, dataset=...), "
            "ensemble_runs(runs, out, dataset=...)"
        )
    return get_dataset(config.data.name, **config.data.options)


def diagnose_file(
    path: str | Path, *, key: str = "embedding", task: str = "classification"
) -> dict[str, Any]:
    """Diagnostics of a plain embeddings file; writes ``<file>.diagnostics.json`` beside it."""
    emb, targets = load_embeddings(path, key=key)
    if targets is not None and task == "classification":
        y = np.asarray(targets).reshape(-1)
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y[np.isfinite(y)], 1) == 0):
            raise ValueError(f"{path}: its labels are fractional numbers ({y[:3].tolist()}, ...), not "
                             "classes; for a regression target pass --task regression")  # fmt: skip
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise ValueError(f"{path}: every label is {y[0]!r}; class diagnostics need two classes or more "
                             "(a regression target: --task regression)")  # fmt: skip
        if counts.min() < 2:
            lone = classes[counts < 2][:5].tolist()
            raise ValueError(f"{path}: classes {lone} have one sample each; class diagnostics need two or "
                             "more per class (a regression target: --task regression)")  # fmt: skip
    result = {"file": str(path), "embedding": summarize(emb, targets, task=task)}  # type: ignore[arg-type]
    write_json(result, Path(f"{path}.diagnostics.json"))
    return result


def format_diagnostics(result: dict[str, Any]) -> str:
    """A diagnostics result as a flat two-column table of every number in it (the stage-pair CKA matrix
    aside), indented two spaces."""

    def rows(prefix: str, value: object) -> list[tuple[str, str]]:
        if isinstance(value, dict):
            return [r for k, v in value.items() for r in rows(f"{prefix}.{k}" if prefix else str(k), v)]
        if isinstance(value, float):
            return [(prefix, f"{value:.4f}")]
        if isinstance(value, int):
            return [(prefix, str(value))]
        return []

    parts = ("embedding", "generalization", "comparison")
    table = [r for key in parts for r in rows(key, result.get(key, {})) if "stage_cka_matrix" not in r[0]]
    width = max((len(k) for k, _ in table), default=0)
    return "\n".join(f"  {key.ljust(width)}  {value}" for key, value in table)
