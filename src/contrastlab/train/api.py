"""What notebooks and scripts call: train, compare and tune with your own model and data.

>>> import torch
>>> from torch import nn
>>> import contrastlab
>>> class Encoder(nn.Module):  # any module mapping a batch to (N, E) embeddings
...     def __init__(self):
...         super().__init__()
...         self.layers = nn.ModuleList([nn.Linear(8, 16), nn.Linear(16, 4)])  # optional: named layers
...     def forward(self, x):
...         return self.layers[1](torch.relu(self.layers[0](x)))
>>> g = torch.Generator().manual_seed(0)
>>> y = torch.arange(120) % 3
>>> x = torch.randn(120, 8, generator=g) + 2.0 * y[:, None]
>>> recipe = {"objective": {"supcon": {"weight": 0.2}},
...           "trainer": {"epochs": 2, "batch_size": 24, "views": {"count": 2}}}
>>> result = contrastlab.fit(recipe, model=Encoder(), dataset=(x.numpy(), y.numpy()),
...                          run_dir=getfixture("tmp_path") / "run", progress=False, quiet=True)
>>> sorted(result.test)[:2], len(result.history)
(['accuracy', 'auprc'], 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from contrastlab.train.config import TrainConfig, apply_overrides, load_config, validate
from contrastlab.train.rundir import RunDir, RunDirError
from contrastlab.train.trainer import RunResult, train

__all__ = ["fit", "resolve_config", "resume"]


def resolve_config(recipe: str | Path | dict[str, Any] | TrainConfig | None, overrides: Sequence[str] = ()
                   ) -> tuple[TrainConfig, dict[str, Any]]:  # fmt: skip
    """A recipe file, a mapping or a TrainConfig, with dotted overrides applied, as (config, raw mapping).

    Raises:
        ConfigError: an unreadable recipe, unknown keys or bad values (named).
    """
    if isinstance(recipe, TrainConfig):
        raw = recipe.model_dump(mode="json")
    elif isinstance(recipe, dict):
        raw = recipe
    else:
        return load_config(recipe, list(overrides))
    raw = apply_overrides(raw, list(overrides))
    return validate(raw), raw


def fit(
    recipe: str | Path | dict[str, Any] | TrainConfig | None = None,
    *,
    model: nn.Module | None = None,
    dataset: Any = None,
    target: str | None = None,
    task: str | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    quiet: bool = False,
) -> RunResult:
    """Trains a recipe (a YAML path, a mapping, or a TrainConfig; None: the defaults) into ``run_dir``.

    Args:
        model: Your encoder, any ``nn.Module`` whose ``forward(batch)`` returns an (N, E) tensor (see
            :class:`~contrastlab.models.ContrastiveModel` for the contract); a copy is trained, with the task
            and projection heads added. Without it, ``model.name`` from the recipe.
        dataset: Your data: ``(X, y)`` arrays or tensors, a pandas DataFrame (with ``target=`` naming its
            target column), a torch Dataset of ``(x, y)`` pairs, or a dataset object with ``targets``,
            ``task`` and ``take(idx)``. Without it, ``data.name`` from the recipe.
        target, task: For ``dataset``: the DataFrame's target column, and "classification" or
            "regression" (default: from the targets' dtype).
        run_dir: Where the run goes (default ``runs/<recipe name>``).
        overrides: Dotted overrides, as on the command line (``"objective.supcon.weight=0.2"``).
        resume, overwrite, progress, quiet: As :func:`contrastlab.train.train`.

    Returns:
        The run's result: history, best and test metrics, and the trained ``model``.
    """
    config, raw = resolve_config(recipe, overrides)
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset, target=target, task=task)
    where = Path(run_dir) if run_dir is not None else Path("runs") / config.name
    return train(config, where, raw_config=raw, override_note=list(overrides), resume=resume,
                 overwrite=overwrite, progress=progress, quiet=quiet, model=model,
                 dataset=dataset)  # fmt: skip


def resume(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    model: nn.Module | None = None,
    dataset: Any = None,
    progress: bool | None = None,
    quiet: bool = False,
) -> RunResult:
    """Continues the run in ``run_dir`` from its last checkpoint, with the config it recorded.

    Args:
        overrides: Dotted overrides of the recorded config (``"trainer.epochs=20"``, a new λ); they are
            recorded in config.yaml's history, and a term whose weight they set drops its adapted λ.
        model, dataset: The same encoder and data objects, for a run trained on them from Python.

    The plugins the run loaded (``--plugin``, entry points) are loaded again first.

    Raises:
        RunDirError: no run there, a config.yaml contrastlab did not write, or a run trained on Python
            objects resumed without them.
        CheckpointError: an unreadable checkpoint.
    """
    import yaml

    from contrastlab import plugins

    run = RunDir(run_dir)
    if not run.config.is_file():
        raise RunDirError(f"{run.path} has no config.yaml; is it a contrastlab run directory?")
    try:
        saved = yaml.safe_load(run.config.read_text())
    except yaml.YAMLError as exc:
        raise RunDirError(f"{run.config} is not valid YAML ({exc}); contrastlab did not write it") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise RunDirError(
            f"{run.config} is not a run's recorded config (no 'config' mapping; a recipe?). resume continues "
            f"a run that `contrastlab train` started; to start one from a recipe: contrastlab train RECIPE"
        )
    recorded = saved["config"]
    missing = [f"{what} {recorded[part]['name']}" for what, part, given in
               (("model", "model", model), ("dataset", "data", dataset))
               if str(recorded[part]["name"]).startswith("python:") and given is None]  # fmt: skip
    if missing:
        raise RunDirError(
            f"{run.path} was trained on {' and '.join(missing)} passed from Python; resume it with the same "
            "objects: contrastlab.resume(run_dir, model=..., dataset=...)"
        )
    plugins.load_plugins(saved.get("plugins") or [])  # what the run registered its model, data or terms with
    config = validate(apply_overrides(recorded, list(overrides)))  # the recorded, fully resolved config
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset)
    return train(config, run.path, raw_config=saved.get("raw", {}), resume=True,
                 override_note=list(overrides), progress=progress, quiet=quiet, model=model,
                 dataset=dataset)  # fmt: skip
