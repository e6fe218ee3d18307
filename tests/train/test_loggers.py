"""trainer.loggers: what TensorBoard, MLflow (a file store and a tracking server the test starts) and W&B
(offline, its run file read back) receive from a run, a resumed run and a verdict."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrastlab.train import train
from contrastlab.train.checkpoint import load_checkpoint
from contrastlab.train.config import ConfigError, validate
from tests.train.test_trainer import TINY

mlflow = pytest.importorskip("mlflow")  # the mlflow extra; CI installs it
wandb = pytest.importorskip("wandb")  # the wandb extra; CI installs it


def _config(tmp_path: Path, loggers: list[str], epochs: int = 2, **tracking: object):
    raw = {**TINY, "trainer": {**TINY["trainer"], "epochs": epochs, "loggers": loggers,
                               "tracking": {"experiment": "tests", **tracking}}}  # fmt: skip
    return validate(raw)


def _mlflow_run(client, run_dir: Path):
    ids = json.loads((run_dir / "tracking.json").read_text())
    return client.get_run(ids["mlflow"]["run_id"])


def _check_mlflow_run(client, run_dir: Path, result) -> None:
    run = _mlflow_run(client, run_dir)
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.batch_size"] == "24"
    assert run.data.params["objective.supcon.temperature"] == "0.2"
    assert run.data.tags["contrastlab.run_dir"] == str(run_dir.resolve())
    assert run.data.tags["contrastlab.torch"]  # the run's metadata
    global_step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["global_step"]
    losses = client.get_metric_history(run.info.run_id, "step/loss")
    assert sorted(m.step for m in losses) == list(range(1, global_step + 1))  # every optimiser step once
    for key in ("step/supcon", "step/weight/supcon", "step/grad_norm", "step/grad_norm/supcon"):
        assert client.get_metric_history(run.info.run_id, key), key
    accuracy = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert [(m.step, m.value) for m in sorted(accuracy, key=lambda m: m.step)] == [
        (row["epoch"], pytest.approx(row["val/accuracy"])) for row in result.history
    ]
    assert run.data.metrics["test.accuracy"] == pytest.approx(result.test["accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "history.csv", "split.json"} <= artifacts
    assert not {"checkpoints", "embeddings", "events"} & artifacts  # large or already elsewhere


def test_mlflow_local_store__params_tags_every_step_every_epoch_final_metrics_and_artifacts(tmp_path,
                                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlartifacts
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train(_config(tmp_path, ["mlflow"], mlflow_uri=uri), tmp_path / "r", progress=False, quiet=True)
    _check_mlflow_run(mlflow.tracking.MlflowClient(uri), tmp_path / "r", result)
    assert not (tmp_path / "r" / "events").exists()  # tensorboard was not asked for


def test_mlflow__a_resumed_run_goes_on_in_the_same_mlflow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    class Stop(Exception):
        pass

    def stop_in_epoch_two(step):
        if step.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(_config(tmp_path, ["mlflow"], epochs=3, mlflow_uri=uri), tmp_path / "r", progress=False,
              quiet=True, on_step=stop_in_epoch_two)  # fmt: skip
    client = mlflow.tracking.MlflowClient(uri)
    first = _mlflow_run(client, tmp_path / "r")
    assert first.info.status == "FAILED"
    result = train(_config(tmp_path, ["mlflow"], epochs=3, mlflow_uri=uri), tmp_path / "r", progress=False,
                   quiet=True, resume=True)  # fmt: skip
    run = _mlflow_run(client, tmp_path / "r")
    assert run.info.run_id == first.info.run_id
    assert run.info.status == "FINISHED"
    epochs = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy"))
    assert epochs == [1, 2, 3] == [row["epoch"] for row in result.history]
    assert len(client.search_runs([run.info.experiment_id])) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """``mlflow server`` with a SQLite backend store and a local artifact store; yields its URL."""
    port = _free_port()
    log = (root / "server.log").open("w")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", str(root / "art")]  # fmt: skip
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                tail = (root / "server.log").read_text()[-2000:]
                raise RuntimeError(f"mlflow server did not start: {tail}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_mlflow_tracking_server__a_verdict_is_one_parent_run_with_every_arm_and_seed_as_children(tmp_path):
    from contrastlab.experiments.verdict import run_verdict

    recipe = {**TINY, "trainer": {**TINY["trainer"], "epochs": 1, "loggers": ["mlflow"],
                                  "tracking": {"experiment": "verdicts"}}}  # fmt: skip
    (tmp_path / "server").mkdir()
    with mlflow_server(tmp_path / "server") as url:
        os.environ["MLFLOW_TRACKING_URI"] = url
        try:
            verdict = run_verdict(recipe, treatment=["objective.supcon.weight=0.4"], seeds=2,
                                  out_dir=tmp_path / "v", progress=False)  # fmt: skip
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
        client = mlflow.tracking.MlflowClient(url)
        experiment = client.get_experiment_by_name("verdicts")
        runs = client.search_runs([experiment.experiment_id])
        parents = [r for r in runs if "contrastlab.group_of" in r.data.tags]
        assert len(parents) == 1
        parent = parents[0]
        assert parent.info.status == "FINISHED"
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_name for r in children) == [
            "v/baseline/seed0", "v/baseline/seed1", "v/treatment/seed0", "v/treatment/seed1"]
        assert all(r.info.status == "FINISHED" for r in children)
        primary = verdict.primary_comparison
        assert parent.data.tags["contrastlab.verdict"] == primary.verdict
        assert parent.data.metrics["mean_difference"] == pytest.approx(primary.mean_difference)
        assert "verdict.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
        # the artifacts went through the server into its artifact store
        assert glob.glob(str(tmp_path / "server" / "art" / "**" / "verdict.json"), recursive=True)


# W&B's offline run file (run-<id>.wandb) is a log of protobuf records in 32 KiB blocks: a 7-byte file
# header, then per record piece a 7-byte header (CRC32, length, type: full, first, middle or last).
def _wandb_records(path: Path) -> Iterator[object]:
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B", "not a W&B run file"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0:  # the rest of the block is padding
            pos += left - 7
            continue
        piece, pos = data[pos : pos + length], pos + length
        pending = piece if kind in (1, 2) else pending + piece
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _finished_records(path: Path) -> list[object]:
    """The run file's records once W&B's writer (a separate process) has written the run's exit record."""
    deadline = time.monotonic() + 30
    while True:
        records = list(_wandb_records(path))
        kinds = [r.WhichOneof("record_type") for r in records]
        if ("exit" in kinds and "run" in kinds) or time.monotonic() > deadline:
            assert "run" in kinds, f"no run record in {path.name}: {kinds}"
            return records
        time.sleep(0.5)


def test_wandb_offline__config_every_step_every_epoch_summary_and_artifact_in_the_run_file(tmp_path):
    result = train(_config(tmp_path, ["wandb"], wandb_mode="offline"), tmp_path / "r", progress=False,
                   quiet=True)  # fmt: skip
    files = glob.glob(str(tmp_path / "r" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    records = _finished_records(Path(files[0]))
    kinds = [r.WhichOneof("record_type") for r in records]
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "tests" and run.display_name == "r"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["trainer"]["batch_size"] == 24
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]  # fmt: skip
    global_step = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["global_step"]
    assert sorted(h["_step"] for h in history if "step/loss" in h) == list(range(1, global_step + 1))
    assert any("step/grad_norm/supcon" in h for h in history)
    epochs = [h for h in history if "val/accuracy" in h]
    assert [h["val/accuracy"] for h in epochs] == pytest.approx([r["val/accuracy"] for r in result.history])
    summary = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for i in r.summary.update if i.key}  # fmt: skip
    assert summary["test.accuracy"] == pytest.approx(result.test["accuracy"])
    artifact = next(r.artifact for r in records if r.WhichOneof("record_type") == "artifact")
    assert {"config.yaml", "metrics.json", "history.csv"} <= {m.path for m in artifact.manifest.contents}
    assert "exit" in kinds


def test_loggers__an_unknown_or_missing_tracker_is_a_named_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="loggers"):
        _config(tmp_path, ["neptune"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    missing = r"'mlflow' but mlflow is not installed \(pip install 'contrastlab\[mlflow\]'\)"
    with pytest.raises(ConfigError, match=missing):
        train(_config(tmp_path, ["mlflow"]), tmp_path / "r", progress=False, quiet=True)


def test_mlflow__a_sweep_is_one_parent_run_with_its_best_trial_and_every_trial_as_a_child(
    tmp_path, monkeypatch
):
    from contrastlab.experiments.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = {**TINY, "trainer": {**TINY["trainer"], "epochs": 1, "loggers": ["mlflow"],
                                  "tracking": {"experiment": "sweeps", "mlflow_uri": uri}}}  # fmt: skip
    result = run_sweep(recipe, {"objective.supcon.weight": [0.1, 0.3]}, out_dir=tmp_path / "s", prune=False)
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
    (parent,) = [r for r in runs if "contrastlab.group_of" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["s/trials/trial000", "s/trials/trial001"]
    assert parent.data.metrics["best_value"] == pytest.approx(result.best.value)
    assert json.loads(parent.data.tags["contrastlab.best_params"]) == result.best.params
    assert {"sweep.json", "heatmap.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_mlflow__workers_that_create_a_groups_parent_at_once_end_with_one_parent(tmp_path):
    from contrastlab.train.loggers import Group, _mlflow_parent

    class Blind:
        """A client whose first search sees no parent: its worker looked before the other one created its."""

        def __init__(self, client):
            self.client, self.searched = client, False

        def search_runs(self, *args, **kwargs):
            if not self.searched:
                self.searched = True
                return []
            return self.client.search_runs(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.client, name)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("race")
    group = Group("verdict", "v", str(tmp_path / "v"))
    workers = [Blind(mlflow.tracking.MlflowClient(uri)) for _ in range(3)]
    parents = [_mlflow_parent(w, experiment, group) for w in workers]
    later = _mlflow_parent(client, experiment, group)  # a worker that starts after all that
    assert len(set(parents)) == 1 and later == parents[0]
    (active,) = [r for r in client.search_runs([experiment]) if "contrastlab.group_of" in r.data.tags]
    assert active.info.run_id == parents[0]


def test_wandb_offline__a_verdicts_runs_share_one_group_with_a_summary_run(tmp_path):
    from contrastlab.experiments.verdict import run_verdict

    tracking = {"experiment": "verdicts", "wandb_mode": "offline"}
    recipe = {**TINY, "trainer": {**TINY["trainer"], "epochs": 1, "loggers": ["wandb"], "tracking": tracking}}
    verdict = run_verdict(recipe, treatment=["objective.supcon.weight=0.4"], seeds=2, out_dir=tmp_path / "v",
                          progress=False)  # fmt: skip
    runs = {}
    for path in glob.glob(str(tmp_path / "v" / "**" / "offline-run-*" / "run-*.wandb"), recursive=True):
        run = next(r.run for r in _finished_records(Path(path)) if r.WhichOneof("record_type") == "run")
        runs[run.display_name] = run
    assert sorted(runs) == ["v/baseline/seed0", "v/baseline/seed1", "v/treatment/seed0", "v/treatment/seed1",
                            "verdict v"]  # fmt: skip
    assert {r.run_group for r in runs.values()} == {"v"}
    assert {runs[n].job_type for n in runs} == {"baseline", "treatment", "verdict"}
    path = next(p for p in glob.glob(str(tmp_path / "v" / "wandb" / "offline-run-*" / "run-*.wandb")))
    summary = {i.key: json.loads(i.value_json) for r in _finished_records(Path(path))
               if r.WhichOneof("record_type") == "summary" for i in r.summary.update if i.key}  # fmt: skip
    assert summary["mean_difference"] == pytest.approx(verdict.primary_comparison.mean_difference)
