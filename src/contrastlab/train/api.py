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

from contrastlab._io import reading
from contrastlab.train.callbacks import Callback
from contrastlab.train.config import TrainConfig, load_config, validate
from contrastlab.train.recipes import apply_overrides
from contrastlab.train.rundir import RunDir, RunDirError
from contrastlab.train.trainer import RunResult, train

__all__ = ["fit", "recorded_run", "resolve_config", "resume"]


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
    callbacks: Sequence[Callback] = (),
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
        callbacks: Your :class:`~contrastlab.train.callbacks.Callback` objects (``on_epoch_end`` may stop
            the run through its ``control``).

    Returns:
        The run's result: history, best and test metrics, and the trained ``model``.
    """
    config, raw = resolve_config(recipe, overrides)
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset, target=target, task=task)
    where = Path(run_dir) if run_dir is not None else Path("runs") / config.name
    return train(config, where, raw_config=raw, override_note=list(overrides), resume=resume,
                 overwrite=overwrite, progress=progress, quiet=quiet, model=model, dataset=dataset,
                 callbacks=callbacks)  # fmt: skip


def recorded_run(run: RunDir) -> dict[str, Any]:
    """What a run directory's config.yaml records (``config``, ``raw``, ``overrides``, ``plugins``, ``meta``).

    Raises:
        RunDirError: the directory does not exist or cannot be read, nothing was saved in it yet, or its
            config.yaml is not one that contrastlab train writes.
    """
    import yaml

    run.check_started()
    with reading(run.config, "a run's config.yaml (as contrastlab train writes it)", error=RunDirError):
        saved = yaml.safe_load(run.config.read_text(encoding="utf-8"))
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise RunDirError(
            f"{run.config} is not a run's recorded config (no 'config' mapping; a recipe?). resume continues "
            f"a run that `contrastlab train` started; to start one from a recipe: contrastlab train RECIPE"
        )
    loaded = saved.get("plugins") or []
    if not (isinstance(loaded, list) and all(isinstance(p, str) for p in loaded)):
        raise RunDirError(f"{run.config}: its 'plugins' are {loaded!r}, not a list of plugin files or "
                          "modules")  # fmt: skip
    if not isinstance(saved.get("raw", {}), dict):
        raise RunDirError(f"{run.config}: its 'raw' recipe is not a mapping")
    return saved


def resume(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    model: nn.Module | None = None,
    dataset: Any = None,
    target: str | None = None,
    task: str | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Continues the run in ``run_dir`` from its last checkpoint, with the config it recorded.

    Args:
        overrides: Dotted overrides of the recorded config (``"trainer.epochs=20"``, a new λ); they are
            recorded in config.yaml's history, and a term whose weight they set drops its adapted λ.
        model, dataset, target, task: The same encoder and data, for a run trained on them from Python
            (as :func:`fit` takes them).

    The plugins the run loaded (``--plugin``, entry points) are loaded again first.

    Raises:
        RunDirError: no run there, a config.yaml contrastlab did not write, or a run trained on Python
            objects resumed without them.
        CheckpointError: an unreadable checkpoint.
    """
    from contrastlab import plugins

    run = RunDir(run_dir)
    saved = recorded_run(run)
    # what the run registered its model, data or terms with
    plugins.load_plugins(saved.get("plugins") or [], command="contrastlab resume")
    config = validate(apply_overrides(saved["config"], list(overrides)))  # the recorded, resolved config
    missing = [f"{what} {name}" for what, name, given in
               (("model", config.model.name, model), ("dataset", config.data.name, dataset))
               if name.startswith("python:") and given is None]  # fmt: skip
    if missing:
        raise RunDirError(
            f"{run.path} was trained on {' and '.join(missing)} passed from Python; resume it with the same "
            "objects: contrastlab.resume(run_dir, model=..., dataset=...)"
        )
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset, target=target, task=task)
    return train(config, run.path, raw_config=saved.get("raw", {}), resume=True,
                 override_note=list(overrides), progress=progress, quiet=quiet, model=model,
                 dataset=dataset, callbacks=callbacks)  # fmt: skip
