"""Ensembles of finished runs: several runs of one recipe (different seeds, or different settings) on the
same split, whose predictions are averaged row by row, as Chemprop's ``ensemble_size`` and deep ensembles
(Lakshminarayanan et al. 2017) do:

    contrastlab ensemble runs/sol_seed0 runs/sol_seed1 runs/sol_seed2 --out runs/sol_ensemble

A regression averages the members' predictions in the targets' own units (and records their spread per
row, a cheap uncertainty); a classification averages the members' class probabilities. Each member is
rebuilt from its run directory (config.yaml and checkpoints/best.pt, the weights its own test metrics came
from) and re-scored alongside, so the ensemble's metrics sit beside each member's. The output is a run
directory like a baseline's: ``metrics.json`` (``test``, ``final`` with the ``val/`` metrics, and
``members``), ``config.yaml`` (the first member's config and the members), ``split.json`` and
``predictions/{val,test}.npz``; ``contrastlab compare`` and ``bench.quality`` read it as they read a run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from contrastlab._io import read_json
from contrastlab.experiments.schemas import load_result
from contrastlab.metrics import classification_metrics, dataset_regression_metrics
from contrastlab.train.build import make_model
from contrastlab.train.checkpoint import load_checkpoint, write_json, write_yaml
from contrastlab.train.diagnose import dataset_of, run_config
from contrastlab.train.evaluate import predict
from contrastlab.train.rundir import RunDir, RunDirError, fitted_metrics
from contrastlab.train.split import TargetScale

SPLIT_FILE = "a run's split.json (as contrastlab train writes it)"

__all__ = ["ensemble_runs"]

PARTS = ("val", "test")


def ensemble_runs(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    overwrite: bool = False,
    dataset: Any = None,
    target: str | None = None,
    task: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Averages the predictions of finished ``runs`` on their shared split; writes the ensemble's run
    directory ``out`` and returns its metrics.

    Args:
        runs: Two or more finished runs (each with metrics.json and checkpoints/best.pt) of one task on
            the same data settings and the same split.
        out: The ensemble's run directory.
        overwrite: Replace an ensemble or run already in ``out`` (otherwise it is refused).
        dataset, target, task: The data the runs were trained on, when passed from Python (as
            :func:`contrastlab.fit` takes them).
        progress: A bar over the members as each is rebuilt and run (default: on a terminal).

    Returns:
        ``{"test": ..., "final": {"val/<metric>": ...}, "members": [{"run", "val", "test"}, ...], ...}``.

    Raises:
        ValueError: fewer than two distinct runs, a run that did not finish, runs whose data, task or
            split differ, or a task without predictions (``objective.task: none``, an open-set split).
        RunDirError: ``out`` holds a run or ensemble and ``overwrite`` is off.
    """
    members = [Path(r) for r in runs]
    configs, split = _checked_members(members)
    first = configs[0]
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset, target=target, task=task)
    data = dataset if dataset is not None else dataset_of(first)
    open_set = list(getattr(data, "open_set", ()))
    if first.objective.task == "none" or open_set:
        raise ValueError(f"{members[0]} has no task predictions to average (objective.task "
                         f"{first.objective.task!r}, open-set parts {open_set})")  # fmt: skip
    dest = RunDir(out)
    if dest.path.resolve() in {m.resolve() for m in members}:
        raise ValueError(f"--out {dest.path} is one of the members; write the ensemble elsewhere")
    _refuse_existing(dest, overwrite)  # before the predictions; again under the lock
    rows = {part: torch.tensor(split[part], dtype=torch.long) for part in PARTS}
    # (members, N) predictions in the targets' units, or (members, N, C) class probabilities
    parts = [part for part in PARTS if rows[part].numel()]
    per_member = []
    show = sys.stderr.isatty() if progress is None else progress
    for m, config in tqdm(list(zip(members, configs, strict=True)), desc="ensemble", unit="run",
                          disable=not show, dynamic_ncols=True):  # fmt: skip
        per_member.append(_predictions(m, config, data, [rows[part] for part in parts]))
    stacked = {part: torch.stack([p[i] for p in per_member]) for i, part in enumerate(parts)}
    scores = {part: [_score(p, data, rows[part]) for p in preds] for part, preds in stacked.items()}
    mean = {part: preds.mean(dim=0) for part, preds in stacked.items()}
    ensemble = {part: _score(m, data, rows[part]) for part, m in mean.items()}
    result: dict[str, Any] = {
        "ensemble": {"members": [str(m) for m in members]},
        **fitted_metrics(data.task, ensemble.get("val", {}), ensemble.get("test", {})),
        "members": [{"run": str(m), **{part: got[i] for part, got in scores.items()}}
                    for i, m in enumerate(members)],
    }
    with dest.lock():
        if _refuse_existing(dest, overwrite):
            dest.clear()
        write_yaml({"config": first.model_dump(mode="json"), "ensemble": result["ensemble"]}, dest.config)
        write_json(split, dest.split)
        (dest.path / "predictions").mkdir()
        for part, preds in stacked.items():
            arrays = {"mean": mean[part].numpy(), "members": preds.numpy(),
                      "targets": data.targets[rows[part]].numpy()}  # fmt: skip
            if data.task == "regression":
                arrays["sd"] = preds.std(dim=0, unbiased=False).numpy()
            np.savez(dest.path / "predictions" / f"{part}.npz", **arrays)
        write_json(result, dest.metrics)  # last: the ensemble is complete
    return result


def _checked_members(members: list[Path]) -> tuple[list[Any], dict[str, Any]]:
    """The members' configs and their one split, after refusing fewer than two distinct finished runs, and
    runs of other data, another task or another split."""
    if len({m.resolve() for m in members}) != len(members) or len(members) < 2:
        raise ValueError(f"an ensemble needs two or more distinct runs; got {[str(m) for m in members]}")
    for m in members:
        if not RunDir(m).is_complete() or not RunDir(m).best.is_file():
            raise ValueError(f"{m} is not a finished run (no metrics.json or checkpoints/best.pt); an "
                             "ensemble averages finished runs")  # fmt: skip
    configs = [run_config(m) for m in members]
    first = configs[0]
    split = read_json(RunDir(members[0]).split, SPLIT_FILE)
    for m, config in zip(members[1:], configs[1:], strict=True):
        if config.data != first.data or config.objective.task != first.objective.task:
            raise ValueError(f"{m} was trained on other data settings or another task than {members[0]} "
                             f"(data {config.data.model_dump()} task {config.objective.task!r}); an ensemble "
                             "averages runs of one task on one dataset")  # fmt: skip
        if read_json(RunDir(m).split, SPLIT_FILE) != split:
            raise ValueError(f"{m} used another split than {members[0]} (split.json differs); an ensemble "
                             "averages predictions for the same rows")  # fmt: skip
    return configs, split


def _refuse_existing(target: RunDir, overwrite: bool) -> bool:
    """Whether ``target`` holds a run or ensemble (to be replaced); refused without ``overwrite``."""
    held = target.holds_run() or target.is_complete()
    if held and not overwrite:
        raise RunDirError(f"{target.path} already holds a run or an ensemble; pass overwrite=True "
                          "(--overwrite; it is deleted) or choose another --out")  # fmt: skip
    return held


def _predictions(run: Path, config: Any, data: Any, parts: list[Tensor]) -> list[Tensor]:
    """A run's predictions for each tensor of rows in ``parts``, from its best weights: (N,) in the targets'
    units for a regression (the run's own target scale undone), (N, C) probabilities for a classification."""
    model = make_model(config, data)
    model.load_state_dict(load_checkpoint(RunDir(run).best)["model"])
    scale = TargetScale()
    if data.task == "regression":
        saved = load_result(RunDir(run).metrics, "metrics").get("target_scale")
        if saved is None:
            raise ValueError(f"{run}/metrics.json has no target_scale; its predictions cannot be put back in "
                             "the targets' units")  # fmt: skip
        scale = TargetScale(float(saved["mean"]), float(saved["sd"]))
    out = []
    for idx in parts:
        logits = predict(model, data, idx, torch.device("cpu")).logits.double()
        out.append(logits.softmax(dim=-1) if data.task == "classification"
                   else logits.squeeze(-1) * scale.sd + scale.mean)  # fmt: skip
    return out


def _score(prediction: Tensor, data: Any, idx: Tensor) -> dict[str, float]:
    if data.task == "classification":  # probabilities: their log is a logit vector with the same softmax
        return classification_metrics(prediction.clamp_min(1e-300).log(), data.targets[idx])
    return dataset_regression_metrics(prediction, data, idx)
