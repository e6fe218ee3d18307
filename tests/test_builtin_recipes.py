"""The built-in recipes ship inside the package and are found by name from any folder: ``contrastlab train
NAME``, ``extends: NAME`` (a file beside the recipe first), ``contrastlab recipes [show NAME]``; an unknown
name is refused with the closest built-in names."""

from __future__ import annotations

from pathlib import Path

import pytest

from contrastlab.cli import main as cli_main
from contrastlab.train import ConfigError, load_config
from contrastlab.train.recipes import RECIPES_DIR, builtin_recipes, find_recipe

REPOSITORY_RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_every_recipe_of_the_repository_is_a_built_in_one():
    files = sorted(p.relative_to(REPOSITORY_RECIPES).with_suffix("").as_posix()
                   for p in REPOSITORY_RECIPES.rglob("*.yaml"))  # fmt: skip
    assert files and list(builtin_recipes()) == files
    assert RECIPES_DIR.is_relative_to(Path(__import__("contrastlab").__file__).parent)  # inside the package


@pytest.mark.parametrize("written", ["blobs_supcon", "blobs_supcon.yaml", "recipes/blobs_supcon.yaml"])
def test_a_built_in_recipe_is_found_by_name_from_any_folder(written, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no recipes/ here
    assert find_recipe(written) == RECIPES_DIR / "blobs_supcon.yaml"
    config, _ = load_config(written, ["trainer.epochs=1"])
    assert config.name == "blobs_supcon" and config.trainer.epochs == 1


def test_a_nested_recipe_by_its_path_or_by_its_unambiguous_stem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nested = RECIPES_DIR / "text" / "rt_supcon.yaml"
    assert find_recipe("text/rt_supcon") == find_recipe("rt_supcon") == nested


def test_an_unknown_name_names_the_closest_built_in_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'blob_supcon'.*did you mean blobs_supcon"):
        find_recipe("blob_supcon")


def test_extends_a_built_in_recipe_by_name_and_a_file_beside_it_comes_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("extends: blobs_supcon\nname: mine\ntrainer: {epochs: 1}\n")
    config, _ = load_config(tmp_path / "mine.yaml")
    assert config.name == "mine" and config.data.name == "blobs" and config.objective.supcon is not None
    (tmp_path / "blobs_supcon.yaml").write_text("data: {name: blobs}\nobjective: {task: cross_entropy}\n")
    config, _ = load_config(tmp_path / "mine.yaml")  # the file beside it, not the built-in recipe
    assert config.objective.supcon is None


def test_recipes_command_lists_every_built_in_recipe_and_shows_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["recipes"]) == 0
    listed = capsys.readouterr().out
    rows = {line.split()[0]: line for line in listed.splitlines()[1:] if line and not line.startswith("one ")}
    assert set(rows) == set(builtin_recipes())
    assert "blobs" in rows["blobs_supcon"] and "The smallest complete recipe" in rows["blobs_supcon"]
    assert cli_main(["recipes", "show", "blobs_supcon"]) == 0
    assert capsys.readouterr().out == (RECIPES_DIR / "blobs_supcon.yaml").read_text()
    assert cli_main(["recipes", "show", "blob_supcon"]) == 2
    assert "did you mean blobs_supcon" in capsys.readouterr().err


def test_train_takes_a_built_in_recipe_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["train", "blobs_supcon", "trainer.epochs=1", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "blobs_supcon" / "metrics.json").is_file()
