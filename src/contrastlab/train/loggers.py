"""Where a run's numbers go besides ``history.csv``: TensorBoard, MLflow and W&B (``trainer.loggers``).

Every logger gets the same things: the configuration and the run's metadata when the run starts; each
optimiser step's loss, task, unweighted terms, their weights and the gradient norms (``step/...``); each
epoch's history row (the ``history.csv`` columns); and at the end the best and test metrics and the run's
small files (config.yaml, metrics.json, history.csv, split.json, any plots and reports) as artifacts.

A resumed run continues the same MLflow and W&B run: their ids are kept in the run directory's
``tracking.json``. Runs trained by a verdict or a sweep are grouped (:func:`tracking_group`): children of
one MLflow parent run that also receives the verdict's or sweep's summary, and one W&B group.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrastlab._io import read_json
from contrastlab.train.checkpoint import write_json
from contrastlab.train.config import TrackingConfig, TrainerConfig
from contrastlab.train.rundir import RunDir

__all__ = [
    "Group",
    "RunLogger",
    "check_trackers",
    "finish_group",
    "flat_params",
    "open_loggers",
    "tracking_group",
]

#: The run directory's files sent as artifacts (checkpoints and embeddings stay on disk: they are large).
ARTIFACT_SUFFIXES = (".yaml", ".json", ".csv", ".png", ".svg", ".html")


@dataclass(frozen=True)
class Group:
    """Runs that belong together: a verdict's arms and seeds, a sweep's trials."""

    kind: str  # "verdict" or "sweep"
    name: str  # shown in the trackers (the output directory's name)
    key: str  # what identifies it across processes and resumes (the output directory's absolute path)


_GROUP: ContextVar[Group | None] = ContextVar("contrastlab_tracking_group", default=None)


@contextlib.contextmanager
def tracking_group(kind: str, out_dir: str | Path) -> Iterator[Group]:
    """Runs trained inside this block are logged as members of one verdict or sweep (``out_dir``)."""
    path = Path(out_dir).resolve()
    token = _GROUP.set(Group(kind, path.name, str(path)))
    try:
        yield _GROUP.get()  # type: ignore[misc]
    finally:
        _GROUP.reset(token)


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys with scalar values (lists and other values as text).

    Example:
        >>> flat_params({"trainer": {"lr": 0.1, "loggers": ["csv"], "threads": None}})
        {'trainer.lr': 0.1, 'trainer.loggers': "['csv']"}
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        elif value is not None:
            out[name] = str(value)
    return out


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}  # fmt: skip


def _artifacts(run: RunDir) -> list[Path]:
    skipped = {run.checkpoints.name, run.embeddings.name, run.events.name, "wandb"}
    return sorted(p for p in run.path.rglob("*") if p.is_file() and p.suffix in ARTIFACT_SUFFIXES
                  and not skipped & set(p.relative_to(run.path).parts[:-1]))  # fmt: skip


class RunLogger:
    """One tracker's view of a run. Subclasses override what their tracker records."""

    def step(self, step: int, scalars: Mapping[str, float]) -> None:
        """An optimiser step's scalars (``step/...``)."""

    def epoch(self, epoch: int, step: int, row: Mapping[str, Any]) -> None:
        """An epoch's history row, at the global step it ended on."""

    def finish(self, metrics: Mapping[str, float], files: Sequence[Path], root: Path) -> None:
        """The final metrics, and the run's small files (relative to ``root``) as artifacts."""

    def close(self, status: str = "FINISHED") -> None:
        """Ends the tracker's run: FINISHED, FAILED (training raised) or KILLED (a pruned sweep trial)."""


class TensorBoardLogger(RunLogger):
    """Event files in the run's ``events/``: scalars per step and epoch, and the HPARAMS tab at the end."""

    def __init__(self, run: RunDir, config: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.events))
        self.config = config

    def step(self, step: int, scalars: Mapping[str, float]) -> None:
        for key, value in _finite(scalars).items():
            self.writer.add_scalar(key, value, step)

    def epoch(self, epoch: int, step: int, row: Mapping[str, Any]) -> None:
        for key, value in _finite(row).items():
            if key != "epoch":
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def finish(self, metrics: Mapping[str, float], files: Sequence[Path], root: Path) -> None:
        # TensorBoard's HPARAMS tab: the config beside the best and test metrics
        hparams = {f"hparam/{k}": v for k, v in _finite(metrics).items()}
        self.writer.add_hparams(flat_params(self.config), hparams, run_name=".")

    def close(self, status: str = "FINISHED") -> None:
        self.writer.close()


class MLflowLogger(RunLogger):
    """An MLflow run (``MlflowClient``: no global active run is touched): the config as params, the run's
    metadata as tags, scalars as metrics, the small files as artifacts."""

    def __init__(self, run: RunDir, config: Mapping[str, Any], meta: Mapping[str, Any], name: str,
                 tracking: TrackingConfig, ids: dict[str, Any], group: Group | None) -> None:  # fmt: skip
        self.client = _mlflow_client(tracking)
        known = ids.get("mlflow", {})
        if known.get("run_id") and known.get("tracking_uri") == self.client.tracking_uri:
            self.run_id = known["run_id"]  # a resumed run goes on logging into its MLflow run
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = _mlflow_experiment(self.client, tracking.experiment)
            tags = {"contrastlab.run_dir": str(run.path.resolve()),
                    **{f"contrastlab.{k}": str(v) for k, v in meta.items() if v is not None}}  # fmt: skip
            if group is not None:
                tags["mlflow.parentRunId"] = _mlflow_parent(self.client, experiment, group)
                tags["contrastlab.group"] = group.key
            self.run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
            _log_batch(self.client, self.run_id, params=flat_params(config))
            ids["mlflow"] = {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri}

    def step(self, step: int, scalars: Mapping[str, float]) -> None:
        _log_batch(self.client, self.run_id, metrics=_finite(scalars), step=step)

    def epoch(self, epoch: int, step: int, row: Mapping[str, Any]) -> None:
        _log_batch(self.client, self.run_id, metrics=_finite(row), step=epoch)

    def finish(self, metrics: Mapping[str, float], files: Sequence[Path], root: Path) -> None:
        _log_batch(self.client, self.run_id, metrics=_finite(metrics))
        for path in files:
            parent = path.parent.relative_to(root).as_posix()
            self.client.log_artifact(self.run_id, str(path), None if parent == "." else parent)

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def _mlflow_client(tracking: TrackingConfig) -> Any:
    """A client of ``tracking.mlflow_uri``, else MLFLOW_TRACKING_URI, else MLflow's default store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI"))


def _mlflow_experiment(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return str(found.experiment_id if found is not None else client.create_experiment(name))


def _mlflow_parent(client: Any, experiment: str, group: Group) -> str:
    """The group's parent run: found by its tag (another worker or an earlier process may have made it).

    Workers that start together may each find none and create one. Every worker then looks again and
    keeps the oldest (by start time, then id), the same one in each; a worker whose own run lost deletes
    it, so the group ends with one parent whichever way the creations interleave."""
    key = group.key.replace("'", "\\'")

    def oldest() -> Any:
        found = client.search_runs([experiment], f"tags.`contrastlab.group_of` = '{key}'", max_results=1000)
        return min(found, key=lambda r: (r.info.start_time, r.info.run_id), default=None)

    existing = oldest()
    if existing is not None:
        return str(existing.info.run_id)
    tags = {"contrastlab.group_of": group.key, "contrastlab.kind": group.kind}
    ours = str(client.create_run(experiment, run_name=f"{group.kind} {group.name}", tags=tags).info.run_id)
    winner = str(oldest().info.run_id)
    if winner != ours:
        client.delete_run(ours)
    return winner


def _log_batch(client: Any, run_id: str, *, params: Mapping[str, Any] | None = None,
               metrics: Mapping[str, float] | None = None, step: int = 0) -> None:  # fmt: skip
    """MLflow's log_batch, in the chunks it accepts (100 params, 1,000 metrics a call)."""
    import time

    from mlflow.entities import Metric, Param

    stamp = int(time.time() * 1000)
    plist = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
    mlist = [Metric(_mlflow_key(k), v, stamp, step) for k, v in (metrics or {}).items()]
    for i in range(0, len(plist), 100):
        client.log_batch(run_id, params=plist[i : i + 100])
    for i in range(0, len(mlist), 1000):
        client.log_batch(run_id, metrics=mlist[i : i + 1000])


def _mlflow_key(name: str) -> str:
    """MLflow keys allow letters, digits, ``_ - . / space``; anything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


class WandbLogger(RunLogger):
    """A W&B run written under the run directory's ``wandb/`` (its mode: ``tracking.wandb_mode``, else
    WANDB_MODE, else W&B's default)."""

    def __init__(self, run: RunDir, config: Mapping[str, Any], name: str, tracking: TrackingConfig,
                 ids: dict[str, Any], group: Group | None, job: str | None) -> None:  # fmt: skip
        import wandb

        known = ids.get("wandb", {})
        self.name = name
        self.run = wandb.init(
            project=tracking.experiment,
            name=name,
            dir=str(run.path),
            config=dict(config),
            group=group.name if group is not None else None,
            job_type=job,
            id=known.get("id"),
            resume="allow" if known.get("id") else None,
            mode=tracking.wandb_mode,
            reinit="create_new",
        )
        ids["wandb"] = {"id": self.run.id}

    def step(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log(_finite(scalars), step=step)

    def epoch(self, epoch: int, step: int, row: Mapping[str, Any]) -> None:
        self.run.log(_finite(row), step=step)

    def finish(self, metrics: Mapping[str, float], files: Sequence[Path], root: Path) -> None:
        import wandb

        self.run.summary.update(_finite(metrics))
        if files:
            artifact = wandb.Artifact(_wandb_name(f"{self.name}-files"), type="run-files")
            for path in files:
                artifact.add_file(str(path), name=path.relative_to(root).as_posix())
            self.run.log_artifact(artifact)

    def close(self, status: str = "FINISHED") -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


def _wandb_name(name: str) -> str:
    """W&B artifact names allow letters, digits, ``- _ .``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _require_packages(names: Sequence[str]) -> None:
    import importlib.util

    for logger in ("mlflow", "wandb"):
        if logger in names and importlib.util.find_spec(logger) is None:
            from contrastlab.train.config import ConfigError

            raise ConfigError(f"trainer.loggers has {logger!r} but {logger} is not installed "
                              f"(pip install 'contrastlab[{logger}]')")  # fmt: skip


def check_trackers(names: Sequence[str], tracking: TrackingConfig) -> None:
    """That the trackers in ``trainer.loggers`` can be used, before a run starts: their packages are
    installed, and MLflow's tracking store opens (MLflow 3 refuses a file store such as ``file:///...`` or
    ``./mlruns``; its experiment is created if it is new).

    Raises:
        ConfigError: naming the tracker, what failed and what to use instead.
    """
    _require_packages(names)
    if "mlflow" not in names:
        return
    from mlflow.exceptions import MlflowException

    from contrastlab.train.config import ConfigError

    uri = tracking.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or "(MLflow's default)"
    try:
        _mlflow_experiment(_mlflow_client(tracking), tracking.experiment)
    except MlflowException as exc:
        first = str(exc).split(". ")[0]
        raise ConfigError(
            f"trainer.loggers has 'mlflow' but its tracking store {uri} cannot be used ({first}); use a "
            "database, e.g. trainer.tracking.mlflow_uri=sqlite:///mlflow.db, or a tracking server, "
            "http://host:5000"
        ) from None


def open_loggers(names: Sequence[str], *, run: RunDir, config: Mapping[str, Any], meta: Mapping[str, Any],
                 tracking: TrackingConfig, group: Group | None = None) -> list[RunLogger]:  # fmt: skip
    """The trackers named in ``trainer.loggers`` (``csv`` is history.csv, which the trainer always writes),
    opened for ``run``; their ids are saved in the run's ``tracking.json`` so a resume continues them.

    Raises:
        ConfigError: a tracker whose package is not installed.
    """
    import importlib.util

    if group is None:
        group = _GROUP.get()
    _require_packages(names)
    ids = read_json(run.tracking, "a run's tracking.json (its tracker ids)") if run.tracking.is_file() else {}
    name, job = run.path.name, None
    if group is not None:  # "verdict_dir/baseline/seed0" (job: the arm), "sweep_dir/trial_3" (job: trial)
        path = run.path.resolve()
        inside = path.relative_to(group.key).as_posix() if path.is_relative_to(group.key) else path.name
        name = f"{group.name}/{inside}"
        job = run.path.parent.name if group.kind == "verdict" else "trial"
    opened: list[RunLogger] = []
    try:
        if "tensorboard" in names:
            if importlib.util.find_spec("tensorboard") is None:  # the default: a note, not an error
                print("note: tensorboard is not installed; no events written (pip install tensorboard)",
                      file=sys.stderr)  # fmt: skip
            else:
                opened.append(TensorBoardLogger(run, config))
        if "mlflow" in names:
            opened.append(MLflowLogger(run, config, meta, name, tracking, ids, group))
        if "wandb" in names:
            opened.append(WandbLogger(run, config, name, tracking, ids, group, job))
    except BaseException:
        for tracker in opened:
            tracker.close("FAILED")
        raise
    if ids:
        write_json(ids, run.tracking)
    return opened


def finish_run(loggers: Sequence[RunLogger], run: RunDir, metrics: Mapping[str, float]) -> None:
    """The final metrics and the run's small files to every tracker, then each tracker's run is closed."""
    files = _artifacts(run)
    for logger in loggers:
        logger.finish(metrics, files, run.path)
        logger.close()


def finish_group(trainer: TrainerConfig, out_dir: str | Path, summary: Mapping[str, Any],
                 files: Sequence[Path]) -> None:  # fmt: skip
    """A verdict's or sweep's summary (numbers as metrics, text as tags) and files, on its MLflow parent
    run and as one W&B run of the group, when its runs' ``trainer.loggers`` name those trackers."""
    group = _GROUP.get()
    if group is None or group.key != str(Path(out_dir).resolve()):
        return
    names, tracking = trainer.loggers, trainer.tracking
    numbers = _finite(summary)
    text = {k: str(v) for k, v in summary.items() if isinstance(v, str)}
    root = Path(out_dir)
    if "mlflow" in names:
        client = _mlflow_client(tracking)
        experiment = _mlflow_experiment(client, tracking.experiment)
        parent = _mlflow_parent(client, experiment, group)
        _log_batch(client, parent, metrics=numbers)
        for key, value in text.items():
            client.set_tag(parent, f"contrastlab.{key}", value[:5000])
        for path in files:
            client.log_artifact(parent, str(path))
        client.set_terminated(parent, "FINISHED")
    if "wandb" in names:
        import wandb

        run = wandb.init(project=tracking.experiment, name=f"{group.kind} {group.name}", group=group.name,
                         job_type=group.kind, dir=str(root), mode=tracking.wandb_mode,
                         config=dict(text), reinit="create_new")  # fmt: skip
        run.summary.update(numbers)
        if files:
            artifact = wandb.Artifact(_wandb_name(f"{group.kind}-{group.name}"), type=group.kind)
            for path in files:
                artifact.add_file(str(path), name=path.name)
            run.log_artifact(artifact)
        run.finish()
