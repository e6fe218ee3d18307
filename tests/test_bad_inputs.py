"""Inputs a practitioner could plausibly give, as a table: the command, the exit code it must end with, a
fragment of its message, and, for every one, that a finished reference run beside it is unchanged (no
command may damage a run it was not asked to touch, and a refused one must not have touched its own).

Each row was a silent success, a late failure or a raw traceback before (the No silent failure issues);
the errors of the first round are in ``tests/test_cli_errors.py``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from contrastlab.cli import main as cli_main
from contrastlab.plugins import PluginImportError
from tests.train.test_trainer import TINY

RECIPES = Path(__file__).parents[1] / "recipes"

TINY_RECIPE = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}

#: An encoder of width 16, whatever it is asked for.
TINY_ENCODER = """
import torch
from torch import nn
import contrastlab

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(8, 16)

    def forward(self, x):
        return self.layer(x)

contrastlab.register_model("ignores_its_arguments", lambda *args, **kwargs: Tiny())

def honours_nothing(num_features, embedding_dim):
    return Tiny()

contrastlab.register_model("takes_width_but_ignores_it", honours_nothing)
"""

#: A term that forgets to average over the batch.
ROWWISE_TERM = """
import contrastlab

def rowwise(batch, cfg):
    a, b = batch.views[0].projection, batch.views[1].projection
    return (a - b).pow(2).sum(dim=1)  # (N,), not a scalar

contrastlab.register_term("rowwise", rowwise)
"""


def _npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy_of_objects() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _table(with_nan: bool) -> bytes:
    rows = [f"{i % 5},{i % 3},{i % 2}" for i in range(60)]
    if with_nan:
        rows[1], rows[2] = "nan,1,1", "2,inf,0"
    return ("a,b,target\n" + "\n".join(rows) + "\n").encode()


@dataclass
class Case:
    name: str
    args: list[str]
    code: int = 2
    message: str = ""
    #: Text the message must not contain (a hint to switch a safety check off).
    not_in_message: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    #: A path that must not exist afterwards (what a refused command must not have created).
    absent: str | None = None
    #: An exception the command raises instead (a bug in user code keeps its traceback).
    raises: type[Exception] | None = None


CASES = [
    Case("batch larger than the training set",
         ["train", "tiny.yaml", "trainer.batch_size=512", "--name", "b"],
         message="trainer.batch_size=512 is larger than the 144 training rows", absent="runs/b"),
    Case("a batch of a billion", ["train", "tiny.yaml", "trainer.batch_size=1000000000", "--name", "b"],
         message="the largest batch that trains is 144", absent="runs/b"),
    Case("NaN and inf features in a table",
         ["train", "tiny.yaml", "data.name=table", "data.options={path: nan.csv}", "--name", "t"],
         files={"nan.csv": _table(with_nan=True)},
         message="2 feature values are NaN or infinite (row 2, column 'a': nan; row 3, column 'b': inf)",
         absent="runs/t"),
    Case("empty label cells in a text CSV",
         ["train", "tiny.yaml", "data.name=text_csv",
          "data.options={path: texts.csv, text_column: text, label_column: label}", "--name", "x"],
         files={"texts.csv": b"text,label\ngreat,fresh\nawful,rotten\nfine,\nbad,rotten\nmeh,\n"},
         message="2 record(s) have an empty label (rows 3, 5)", absent="runs/x"),
    Case("a 0-byte recipe", ["train", "empty.yaml"], files={"empty.yaml": b""}, message="is empty",
         absent="runs/run"),
    Case("a recipe of comments", ["train", "comments.yaml"], files={"comments.yaml": b"# later\n# maybe\n"},
         message="is empty", absent="runs/run"),
    Case("a loss that grows while accuracy falls to chance",
         ["train", str(RECIPES / "blobs_supcon.yaml"), "trainer.lr=10", "trainer.epochs=6",
          "trainer.early_stopping.patience=null", "--name", "lr10"],
         code=0, message="WARNING: the run diverged"),
    Case("a registered factory that ignores its arguments (its width is read)",
         ["train", "tiny.yaml", "model.name=ignores_its_arguments", "model.embedding_dim=32", "--plugin",
          "tiny_encoder.py", "--name", "own"],
         code=0, files={"tiny_encoder.py": TINY_ENCODER.encode()}, message="test: loss="),
    Case("a registered factory that takes a width and returns another",
         ["train", "tiny.yaml", "model.name=takes_width_but_ignores_it", "model.embedding_dim=32", "--plugin",
          "tiny_encoder.py", "--name", "own2"],
         files={"tiny_encoder.py": TINY_ENCODER.encode()},
         message="takes embedding_dim=32 but returned an encoder whose embeddings are 16 wide",
         absent="runs/own2"),
    Case("--overwrite of a finished run with a monitor typo",
         ["train", "tiny.yaml", "--name", "ref", "--overwrite", "trainer.early_stopping.monitor=val/acc",
          "trainer.early_stopping.mode=max"],
         message="'val/acc' is not a metric this run logs; did you mean 'val/accuracy'?"),
    Case("a monitor typo in a new run",
         ["train", "tiny.yaml", "--name", "typo", "trainer.early_stopping={monitor: val/acuracy, mode: max}"],
         message="did you mean 'val/accuracy'?", absent="runs/typo"),
    Case("a plateau scheduler on a metric that is not logged",
         ["train", "tiny.yaml", "--name", "sched",
          "trainer.scheduler={name: plateau, monitor: val/f1, mode: max}"],
         message="trainer.scheduler.monitor='val/f1' is not a metric this run logs", absent="runs/sched"),
    Case("--runs-dir that is a file", ["train", "tiny.yaml", "--runs-dir", "a_file"], files={"a_file": b"x"},
         message="a_file is a file, not a directory"),
    Case("a plugin that fails to import", ["train", "tiny.yaml", "--plugin", "broken.py", "--name", "p"],
         files={"broken.py": b"import a_module_nobody_installed\n"}, raises=PluginImportError,
         message="`contrastlab train` could not import the plugin broken.py", absent="runs/p"),
    Case("MLflow with a file store",
         ["train", "tiny.yaml", "trainer.loggers=[mlflow]", "trainer.tracking.mlflow_uri=file:///tmp/mlruns-x",
          "--name", "mlf"],
         message="cannot be used", absent="runs/mlf"),
    Case("a .npy of pickled objects", ["diagnose", "--embeddings", "objects.npy"],
         files={"objects.npy": _npy_of_objects()},
         message="pickled Python objects, which contrastlab never loads",
         not_in_message="allow_pickle"),
    Case("random bytes as a .pt", ["diagnose", "--embeddings", "random.pt"],
         files={"random.pt": np.random.default_rng(1).bytes(3000)},
         message="is not a readable embeddings file",
         not_in_message="weights_only"),
    Case("a .pt that would run code", ["diagnose", "--embeddings", "code.pt"],
         files={"code.pt": pickle.dumps({"embedding": np.zeros((3, 2))})},
         message="is not a readable embeddings file", not_in_message="weights_only"),
    Case("float labels diagnosed as classes", ["diagnose", "--embeddings", "floaty.npz"],
         files={"floaty.npz": _npz(embedding=np.random.default_rng(0).normal(size=(20, 3)),
                                   labels=np.linspace(0, 1, 20))},
         message="pass --task regression"),
    Case("resume of a directory that does not exist", ["resume", "runs/never"], message="does not exist"),
    Case("resume of a run killed before it saved anything", ["resume", "runs/killed"],
         files={"runs/killed/.lock": b""}, message="nothing was saved there yet"),
    Case("a custom term that returns one value per row",
         ["train", "tiny.yaml", "objective.rowwise={weight: 0.1}", "--plugin", "rowwise.py", "--name", "rw"],
         files={"rowwise.py": ROWWISE_TERM.encode()},
         message="objective term 'rowwise' returned a tensor of shape (24,)", absent="runs/rw"),
    Case("report of a hand-edited verdict.json", ["report", "edited"],
         files={"edited/verdict.json": b'{"recipe": "r.yaml", "seeds": "0,1"}'}, message="is not a verdict"),
]  # fmt: skip


def _fingerprint(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A folder with a tiny recipe and a finished reference run, ``runs/ref``."""
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    code = cli_main(["train", str(root / "tiny.yaml"), "--name", "ref", "--runs-dir", str(root / "runs")])
    assert code == 0
    return root


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(case, place, monkeypatch, capsys):
    monkeypatch.chdir(place)
    before = _fingerprint(place / "runs" / "ref")
    for name, content in case.files.items():
        (place / name).parent.mkdir(parents=True, exist_ok=True)
        (place / name).write_bytes(content)
    capsys.readouterr()
    if case.raises is not None:
        with pytest.raises(case.raises, match=case.message.replace("(", r"\(").replace(")", r"\)")):
            cli_main(case.args)
    else:
        code = cli_main(case.args)
        out, err = capsys.readouterr()
        assert code == case.code, err
        assert case.message in out + err, out + err
        assert "Traceback" not in err
        if case.not_in_message is not None:
            assert case.not_in_message not in out + err
    if case.absent is not None:
        assert not (place / case.absent).exists(), f"{case.absent} was created"
    assert _fingerprint(place / "runs" / "ref") == before, "the reference run changed"


def test_a_diverged_run_says_so_in_its_metrics(place, monkeypatch):
    import json

    monkeypatch.chdir(place)
    metrics = json.loads((place / "runs" / "lr10" / "metrics.json").read_text())
    assert "validation accuracy was at chance" in metrics["diverged"]
    assert json.loads((place / "runs" / "ref" / "metrics.json").read_text())["diverged"] is None


def test_fit__a_target_column_that_is_not_there_names_the_columns(tmp_path):
    import pandas as pd

    import contrastlab

    frame = pd.DataFrame({"x1": np.zeros(20), "label": ["cat", "dog"] * 10})
    expected = r"target='labels' is not a column .*'x1', 'label'.*did you mean 'label'"
    with pytest.raises(ValueError, match=expected):
        contrastlab.fit(TINY_RECIPE, dataset=frame, target="labels", run_dir=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_fit__string_labels_are_classes(tmp_path):
    import pandas as pd

    import contrastlab

    rng = np.random.default_rng(0)
    labels = np.array(["cat", "dog", "eel"])[np.arange(120) % 3]
    frame = pd.DataFrame(rng.normal(size=(120, 8)) + (np.arange(120) % 3)[:, None], columns=list("abcdefgh"))
    frame["animal"] = labels
    recipe = {**TINY_RECIPE, "trainer": {**TINY_RECIPE["trainer"], "batch_size": 12}}
    result = contrastlab.fit(recipe, dataset=frame, target="animal", run_dir=tmp_path / "run", quiet=True)
    assert "accuracy" in result.test
    with pytest.raises(ValueError, match=r"targets are .* values \('cat', 'dog', 'eel', \.\.\.\); for"):
        contrastlab.fit(recipe, dataset=frame, target="animal", task="regression", run_dir=tmp_path / "r2")


def test_a_dry_step_changes_nothing_the_run_trains_with(tmp_path):
    """The check before a run (one batch through model and objective) leaves the weights and every random
    generator as they were: a run is the same as one trained without it."""
    from contrastlab.train import load_config
    from contrastlab.train.build import build_parts
    from contrastlab.train.checkpoint import capture_rng
    from contrastlab.train.loop import dry_step

    config, _ = load_config(TINY_RECIPE)
    parts = build_parts(config, torch.device("cpu"), 0, 1)
    weights = {k: v.clone() for k, v in parts.model.state_dict().items()}
    rng = capture_rng()
    logged = dry_step(parts, config.trainer)
    assert {"loss", "task", "supcon", "rdrop"} <= set(logged)
    after = capture_rng()
    assert torch.equal(rng["torch"], after["torch"]) and rng["python"] == after["python"]
    assert all(torch.equal(weights[k], v) for k, v in parts.model.state_dict().items())
    assert parts.model.training
