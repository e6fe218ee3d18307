"""Every function that reads a file a user hands us, against garbage: random bytes, a real header followed by
random bytes, truncations and byte flips of a valid file, and valid-format files with wrong contents. Each
either reads the file or raises our error naming the file; none ends in another exception, and none runs
code stored in the file.

The default suite tries a fixed set of examples per reader (derandomised, well under a minute in all);
``pytest -m slow tests/test_readers.py`` draws many more at random.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contrastlab._io import UnreadableFileError, load_cache, save_cache
from contrastlab.data.tables import read_table
from contrastlab.data.text import read_text_csv
from contrastlab.experiments.schemas import load_result
from contrastlab.train import CheckpointError, ConfigError, RunDirError, load_config
from contrastlab.train.api import recorded_run
from contrastlab.train.build import load_pretrained_encoder
from contrastlab.train.checkpoint import load_checkpoint, read_history, save_checkpoint, write_history
from contrastlab.train.diagnose import diagnose_file, load_embeddings
from contrastlab.train.rundir import RunDir

RECIPES = Path(__file__).parents[1] / "recipes"

#: Where a file that runs code when unpickled leaves its mark.
SENTINEL = Path("/tmp/contrastlab-readers-test-ran-code")


class _RunsCode:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (SENTINEL,))


def _zip_of(member: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, payload)
    return buffer.getvalue()


@dataclass
class Reader:
    """A reader: the suffix of its files, a valid file, what reads one, and the errors that are ours."""

    name: str
    suffix: str
    valid: Callable[[Path], bytes]
    read: Callable[[Path], Any]
    errors: tuple[type[Exception], ...]
    #: Files of the right format with the wrong contents.
    wrong: tuple[bytes, ...] = ()


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _pt(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _embeddings(tmp: Path) -> bytes:
    rng = np.random.default_rng(0)
    return _npz(embedding=rng.normal(size=(40, 4)), labels=np.arange(40) % 3)


def _diagnose(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate embeddings warn in scikit-learn; errors are what count
        return diagnose_file(path)


def _checkpoint(tmp: Path) -> bytes:
    path = tmp / "valid.pt"
    save_checkpoint({"model": {"encoder.w": torch.ones(3, 2)}, "epoch": 1}, path)
    return path.read_bytes()


def _init_from(path: Path) -> Any:
    from contrastlab.models import build_model

    model = build_model("mlp", num_features=2, num_outputs=2, hidden_dims=[4], embedding_dim=4,
                        projection_dim=4, dropout=0.0)  # fmt: skip
    return load_pretrained_encoder(model, path)


def _recipe(tmp: Path) -> bytes:
    return (RECIPES / "blobs_supcon.yaml").read_bytes()


def _table(tmp: Path) -> bytes:
    rows = "\n".join(f"{i % 7},{i * 0.5},{i % 2}" for i in range(30))
    return f"a,b,target\n{rows}\n".encode()


def _parquet(tmp: Path) -> bytes:
    import pandas as pd

    path = tmp / "valid.parquet"
    frame = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) % 4, "target": np.arange(30) % 2})
    frame.to_parquet(path)
    return path.read_bytes()


def _table_npz(tmp: Path) -> bytes:
    return _npz(features=np.arange(60.0).reshape(30, 2), target=np.arange(30) % 2)


def _texts(tmp: Path) -> bytes:
    rows = "\n".join(f'"a review, number {i}",{"fresh" if i % 2 else "rotten"}' for i in range(20))
    return f"text,label\n{rows}\n".encode()


def _history(tmp: Path) -> bytes:
    path = tmp / "history.csv"
    write_history([{"epoch": e, "train/loss": 1.0 / e, "val/accuracy": 0.5} for e in (1, 2, 3)], path)
    return path.read_bytes()


def _run_config(tmp: Path) -> bytes:
    config, raw = load_config(RECIPES / "blobs_supcon.yaml")
    return yaml.safe_dump({"config": config.model_dump(mode="json"), "raw": raw, "overrides": [],
                           "plugins": [], "meta": {}}).encode()  # fmt: skip


def _resume_config(path: Path) -> Any:
    run = path.parent / f"run_{path.stem}"
    run.mkdir(exist_ok=True)
    (run / "config.yaml").write_bytes(path.read_bytes())
    return recorded_run(RunDir(run))


_VERDICT = {
    "recipe": "recipes/blobs_supcon.yaml", "treatment": ["objective.supcon.weight=0.2"],
    "baseline": ["objective.supcon.weight=0"], "seeds": [0, 1], "vary": ["init", "order"],
    "smallest_effect": {}, "alpha": 0.05, "sequential": None, "primary": "test.accuracy",
    "comparisons": [{
        "metric": "test.accuracy", "higher_is_better": True, "baseline": [0.8, 0.82],
        "treatment": [0.83, 0.84], "differences": [0.03, 0.02], "mean_difference": 0.025, "ci_low": -0.04,
        "ci_high": 0.09, "confidence": 0.95, "t_statistic": 5.0, "p_value": 0.13,
        "minimum_detectable_effect": 0.2, "verdict": "no detectable effect", "p_adjusted": 0.13,
        "family": "task", "smallest_effect": None, "p_equivalence": None, "p_equivalence_adjusted": None,
        "equivalence_low": None, "equivalence_high": None, "alpha": 0.05, "n": 2, "sentence": "...",
        "call": "no detectable effect",
        "probability_of_improvement": {"estimate": 1.0, "low": 0.5, "high": 1.0},
    }],
    "stage_cka_baseline_vs_treatment": {"encoder.0": [0.9, 0.8]}, "stage_cka_mean": {"encoder.0": 0.85},
}  # fmt: skip


def _result(kind: str, value: dict[str, Any]) -> Reader:
    return Reader(f"{kind}.json", ".json", lambda tmp: json.dumps(value, indent=1).encode(),
                  lambda path: load_result(path, kind), (UnreadableFileError,),  # type: ignore[arg-type]
                  wrong=(b"[]", b"null", b"3", b'"verdict"', json.dumps({**value, "seeds": "0"}).encode()))


_SWEEP = {"params": {"objective.supcon.weight": [0.1, 0.2]}, "monitor": "val/accuracy", "mode": "max",
          "trials": [{"state": "COMPLETE", "params": {"objective.supcon.weight": 0.1}, "value": 0.8,
                      "run_dir": "sweeps/x/trial_0"}], "best": None}  # fmt: skip
_CURVE = {"title": "t", "metric": "test.accuracy", "x_label": "rows", "arms": ["CE", "CE + SupCon"],
          "notes": "", "points": [{"label": "10", "x": 10, "verdict": "../v"}]}  # fmt: skip
_METRICS = {"best": {"epoch": 3, "metric": "val/accuracy", "value": 0.8}, "final": {},
            "test": {"accuracy": 0.8, "loss": 0.5}, "stopped_early": False, "epochs_run": 3,
            "target_scale": {"mean": 0.0, "sd": 1.0}, "diverged": None}  # fmt: skip

READERS = [
    Reader("embeddings.npz", ".npz", _embeddings, load_embeddings, (ValueError,), wrong=(
        _npz(embedding=np.zeros((3,))), _npz(labels=np.zeros(3)), _npz(embedding=np.array(["a", "b"])),
        _npz(embedding=np.zeros((4, 2)), labels=np.zeros((2, 2))),
    )),
    Reader("diagnose --embeddings", ".npz", _embeddings, _diagnose, (ValueError,), wrong=(
        _npz(embedding=np.full((10, 3), np.nan)), _npz(embedding=np.zeros((1, 3))),
        _npz(embedding=np.zeros((0, 3))), _npz(embedding=np.ones((10, 2)), labels=np.linspace(0, 1, 10)),
        _npz(embedding=np.ones((10, 2)), labels=np.zeros(10)),
        _npz(embedding=np.random.default_rng(0).normal(size=(10, 2)), labels=np.arange(10)),
    )),
    Reader("embeddings.npy", ".npy", lambda tmp: _npy(np.ones((20, 3))), load_embeddings, (ValueError,),
           wrong=(_npy(np.ones(3)), _npy(np.array(["x"])), pickle.dumps(_RunsCode()))),
    Reader("embeddings.pt", ".pt", lambda tmp: _pt({"embedding": torch.ones(20, 3)}), load_embeddings,
           (ValueError,), wrong=(_pt([1, 2]), _pt({"x": torch.ones(2)}), pickle.dumps(_RunsCode()),
                                 _zip_of("archive/data.pkl", pickle.dumps(_RunsCode())))),
    Reader("checkpoint", ".pt", _checkpoint, load_checkpoint, (CheckpointError,),
           wrong=(_pt({"format": "other"}), _pt([1]), pickle.dumps(_RunsCode()))),
    Reader("model.init_from", ".pt", _checkpoint, _init_from, (CheckpointError, ValueError),
           wrong=(_pt({"format": "contrastlab-checkpoint-v1", "model": 3}),)),
    Reader("recipe", ".yaml", _recipe, load_config, (ConfigError,),
           wrong=(b"- 1\n- 2\n", b"7", b"{1: 2}", b"trainer: 3\n", b"data: {name: [1]}\n", b"extends: 3\n",
                  b"extends: no_such.yaml\n", b"!!python/object/apply:os.system [echo]\n", b"a: &a [*a]\n")),
    Reader("table.csv", ".csv", _table, read_table, (ValueError,),
           wrong=(b"a,b\n1,2\n", b"a,target\n1\n2,1,3\n", b"target\n\n", b"a,target\nx,1\n", b"\x00\x00")),
    Reader("table.parquet", ".parquet", _parquet, read_table, (ValueError,)),
    Reader("table.npz", ".npz", _table_npz, read_table, (ValueError,),
           wrong=(_npz(features=np.ones(3), target=np.ones(3)), _npz(features=np.ones((3, 2))),
                  _npz(features=np.array([["a"]]), target=np.ones(1)))),
    Reader("text_csv", ".csv", _texts,
           lambda path: read_text_csv(path, text_column="text", label_column="label"), (ValueError,),
           wrong=(b"text,label\n,fresh\n", b"text,label\nx,\ny,\n", b"text\nx\n", b"text,label\nx,a\n")),
    Reader("history.csv", ".csv", _history, read_history, (UnreadableFileError,),
           wrong=(b"epoch\nx\n", b"a,b\n1\n", b"epoch,a\n1,2,3\n")),
    Reader("config.yaml (resume)", ".yaml", _run_config, _resume_config, (RunDirError,),
           wrong=(b"config: 3\n", b"- config\n", b"config: {}\nplugins: 3\n", b"config: {}\nraw: [1]\n")),
    _result("verdict", _VERDICT),
    _result("request", {"recipe": "r.yaml", "treatment": ["x=1"], "seeds": 3, "first_seed": 0}),
    _result("sweep", _SWEEP),
    _result("curve", _CURVE),
    _result("metrics", _METRICS),
    _result("compare", {"runs": [{"run": "a", "epochs": 3, "best": {}, "test": {"x": 0.5}, "gap": {}}]}),
]  # fmt: skip

HEADERS = (b"PK\x03\x04", b"\x93NUMPY\x01\x00", b"\x80\x04\x95", b"PAR1", b"{", b"epoch,", b"---\n")


def _garbage(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, a header and random bytes, truncations and byte flips of ``valid``."""
    flips = st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)), min_size=1, max_size=4)

    def flipped(changes: list[tuple[int, int]]) -> bytes:
        data = bytearray(valid)
        for at, mask in changes:
            data[at] ^= mask
        return bytes(data)

    return st.one_of(
        st.binary(max_size=2048),
        st.tuples(st.sampled_from(HEADERS), st.binary(max_size=512)).map(lambda pair: pair[0] + pair[1]),
        st.integers(0, len(valid) - 1).map(lambda n: valid[:n]),
        flips.map(flipped),
    )


def _check(reader: Reader, path: Path, data: bytes) -> None:
    """Reads ``data`` from ``path``: fine, or our error naming the file; never code run."""
    path.write_bytes(data)
    SENTINEL.unlink(missing_ok=True)
    message = None
    try:
        reader.read(path)
    except reader.errors as exc:
        message = str(exc)
    assert not SENTINEL.exists(), f"{reader.name} ran code stored in the file"
    if message is not None:
        named = path.name in message or path.stem in message or reader.name.startswith("recipe")
        assert named, f"{reader.name}: the error does not name the file: {message}"
        assert "weights_only=False" not in message and "allow_pickle=True" not in message, message


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readers")


def _fuzz(reader: Reader, workdir: Path, examples: int, derandomize: bool) -> None:
    valid = reader.valid(workdir)
    path = workdir / f"input{reader.suffix}"
    _check(reader, path, valid)  # the valid file reads

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(_garbage(valid))
    def fuzz(data: bytes) -> None:
        _check(reader, path, data)

    fuzz()


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)
def test_reader__garbage_ends_in_our_error(reader, workdir):
    _fuzz(reader, workdir, examples=25, derandomize=True)


@pytest.mark.parametrize("reader", [r for r in READERS if r.wrong], ids=lambda r: r.name)
def test_reader__the_right_format_with_wrong_contents_ends_in_our_error(reader, workdir):
    for i, data in enumerate(reader.wrong):
        _check(reader, workdir / f"wrong{i}{reader.suffix}", data)


@pytest.mark.slow
@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)
def test_reader__garbage_ends_in_our_error__many(reader, workdir):
    _fuzz(reader, workdir, examples=500, derandomize=False)


def test_cache__garbage_is_rebuilt_never_raised(tmp_path):
    path = tmp_path / "entry.pt"
    save_cache(path, {"x": torch.ones(3)})
    valid = path.read_bytes()

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(_garbage(valid))
    def fuzz(data: bytes) -> None:
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load_cache(path, lambda state: state["x"].sum())
        assert loaded is None or float(loaded) == 3.0 or torch.is_tensor(loaded)

    fuzz()
