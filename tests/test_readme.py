"""The README's examples of your own model, data and term run as written: the plugin file, the Python
calls, the command lines (with fewer epochs, rows and seeds appended: the suite has minutes, not hours)."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from contrastlab.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
SECTION = "### Your own model, data and terms"
#: What the suite appends to each README command, after its recipe, to keep it to seconds.
SMALL = {"blobs_supcon.yaml": ["trainer.epochs=2"],
         "my_texts.yaml": ["trainer.epochs=1", "data.max_rows_per_split=32", "model.options.max_length=16",
                           "trainer.batch_size=16"]}  # fmt: skip


def _blocks(language: str) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def _reviews(path: Path) -> None:
    rows = [("a wonderful, moving film", "pos"), ("dull and far too long", "neg")] * 40
    path.write_text("review,label\n" + "\n".join(f'"{t} ({i})",{y}' for i, (t, y) in enumerate(rows)) + "\n")


def _command(line: str) -> list[str]:
    args = shlex.split(line)[1:]  # without "contrastlab"
    recipe = next(a for a in args[1:] if a.endswith(".yaml"))
    at = args.index(recipe) + 1
    args[at:at] = SMALL[Path(recipe).name]
    return ["2" if a == "5" and args[i - 1] == "--seeds" else a for i, a in enumerate(args)]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_plugin", None)


def test_your_encoder_and_term_from_python_and_the_cli(workdir):
    plugin, *python = _blocks("python")
    assert plugin.startswith("# my_plugin.py") and len(python) == 1
    (workdir / "my_plugin.py").write_text(plugin)
    namespace: dict = {}
    exec(compile(python[0], "README.md", "exec"), namespace)  # the README is ours
    assert namespace["result"].test["accuracy"] > 0.5
    verdict = namespace["verdict"]
    assert {c.metric for c in verdict.comparisons} >= {"test.accuracy"}
    assert str(verdict).splitlines()[0].startswith("metric")  # print(verdict): the CLI's table
    assert len(namespace["sweep"].trials) == 2
    last = namespace["mine"].history[-1]
    assert last["weight/center"] == 0.1 and last["train/center"] >= 0
    assert len(namespace["stopped"].history) == 2 and namespace["stopped"].stopped_early  # its callback
    treated = json.loads((workdir / "verdicts" / "center" / "verdict.json").read_text())["treatment"]
    assert treated == ["objective.center.weight=0.1"]

    lines = [ln for ln in _blocks("bash")[0].splitlines() if ln.startswith("contrastlab ")]
    assert [ln.split()[1] for ln in lines] == ["train", "verdict", "sweep"]
    for line in lines:
        assert cli_main(_command(line)) == 0, line
    recorded = (workdir / "runs" / "blobs_supcon" / "config.yaml").read_text()
    assert "my_encoder" in recorded and "my_plugin.py" in recorded
    assert json.loads((workdir / "verdicts" / "blobs_supcon" / "verdict.json").read_text())["seeds"] == [0, 1]
    assert len(json.loads((workdir / "sweeps" / "blobs_supcon" / "sweep.json").read_text())["trials"]) == 2


def test_your_csv_of_texts_from_the_cli_and_python(workdir, no_network):
    (recipe,) = _blocks("yaml")
    assert recipe.startswith("# my_texts.yaml")
    (workdir / "my_texts.yaml").write_text(recipe)
    _reviews(workdir / "reviews.csv")
    lines = [ln for ln in _blocks("bash")[1].splitlines() if ln.startswith("contrastlab ")]
    assert [ln.split()[1] for ln in lines] == ["train", "verdict", "sweep"]
    for line in lines:
        assert cli_main(_command(line)) == 0, line
    metrics = json.loads((workdir / "runs" / "my_texts" / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"accuracy"}
    assert json.loads((workdir / "verdicts" / "my_texts" / "verdict.json").read_text())["seeds"] == [0, 1]
    assert len(json.loads((workdir / "sweeps" / "my_texts" / "sweep.json").read_text())["trials"]) == 3

    import contrastlab

    result = contrastlab.fit("my_texts.yaml", run_dir="runs/from_python", overrides=SMALL["my_texts.yaml"],
                             quiet=True)  # fmt: skip
    assert result.history and result.model is not None


def _training_code() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it in your training code", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_use_it_in_your_training_code__sentence_transformers_hf_trainer_and_lightning(workdir, no_network):
    sentence_transformers, hf_trainer, lightning = _training_code()
    assert "SentenceTransformerTrainer" in sentence_transformers and "ContrastiveTrainer" in hf_trainer
    assert "LightningModule" in lightning
    # As written, with no network: the README names the shipped model (it named a hub id, which the test used
    # to swap for the shipped folder before running the code)
    exec(compile(sentence_transformers, "README.md", "exec"), {})  # the README is ours
    namespace: dict = {}
    exec(compile(hf_trainer, "README.md", "exec"), namespace)
    logged = [row for row in namespace["trainer"].state.log_history if "contrastive/supcon" in row]
    assert logged and all(row["contrastive/supcon"] > 0 for row in logged)
    exec(compile(lightning, "README.md", "exec"), {})
    (metrics,) = (workdir / "runs" / "lightning").rglob("metrics.csv")
    header = metrics.read_text().splitlines()[0].split(",")
    wanted = {"contrastive/supcon_step", "contrastive/grad_norm/supcon", "contrastive/weight/supcon_epoch"}
    assert wanted <= set(header)
