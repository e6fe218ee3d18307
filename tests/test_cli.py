"""Command-line conventions: overrides anywhere after the command, --version."""

from __future__ import annotations

import pytest

from contrastlab import __version__
from contrastlab.cli import main as cli_main
from contrastlab.cli import parse_args

# Each command with an override and flags, the override written last: the same line with the override
# moved anywhere after the recipe (before, between or after the flags) must parse to the same arguments.
LINES = {
    "train": (["r.yaml", "--name", "n", "--overwrite"], "trainer.epochs=2"),
    "resume": (["runs/r", "--plugin", "p.py"], "trainer.epochs=9"),
    "sweep": (["r.yaml", "--param", "objective.supcon.weight=0.1,0.2", "--no-prune"], "trainer.epochs=2"),
    "verdict": (["r.yaml", "--treatment", "objective.supcon.weight=0.2", "--seeds", "3"], "trainer.epochs=2"),
    "demo": (["--seeds", "2", "--out", "d"], "trainer.epochs=2"),
    "baseline": (["r.yaml", "--kind", "tfidf_lr", "--seeds", "2"], "data.split_seed=1"),
}


@pytest.mark.parametrize("command", sorted(LINES))
def test_overrides_may_come_anywhere_after_the_command(command):
    words, override = LINES[command]
    last = parse_args([command, *words, override])
    assert last.overrides == [override]
    start = 0 if words[0].startswith("--") else 1  # after the recipe (or run directory), which comes first
    for at in range(start, len(words) + 1):  # the override before, between and after every flag
        moved = [command, *words[:at], override, *words[at:]]
        if at and words[at - 1].startswith("--") and words[at - 1] not in ("--overwrite", "--no-prune"):
            continue  # right after a flag that takes a value, it would be that value
        assert vars(parse_args(moved)) == vars(last), moved


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_code:
        cli_main(["--version"])
    assert exit_code.value.code == 0 and capsys.readouterr().out.strip() == f"contrastlab {__version__}"



def test_config_prints_the_resolved_configuration_with_every_default(capsys, tmp_path):
    import yaml

    from contrastlab.train import load_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nobjective: {supcon: {weight: 0.2}}\ntrainer: {views: {count: 2}}\n")
    assert cli_main(["config", str(recipe), "trainer.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected, _ = load_config(recipe, ["trainer.epochs=3"])
    assert printed == expected.model_dump(mode="json")
    assert printed["trainer"]["epochs"] == 3 and printed["objective"]["supcon"]["temperature"] == 0.1
    assert cli_main(["config", "trainer.epochs=4"]) == 0  # no recipe: the defaults
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["epochs"] == 4


def test_the_command_line_starts_without_torch():
    # `contrastlab --help` and `--version` must not pay torch's import (2 s here): bench/startup.py times it.
    import subprocess
    import sys

    code = "import sys, contrastlab.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    command = [sys.executable, "-m", "contrastlab", "--version"]
    version = subprocess.run(command, capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith("contrastlab ")


def test_every_command_has_a_help_with_an_example(capsys):
    from contrastlab.cli import EXAMPLES, build_parser

    commands = build_parser().get_default("commands")
    assert set(EXAMPLES) == set(commands)
    for name in commands:
        with pytest.raises(SystemExit):
            cli_main([name, "--help"])
        assert f"example:\n  contrastlab {name}" in capsys.readouterr().out


def test_every_help_shows_every_option_default_worth_saying():
    from contrastlab.cli import build_parser

    commands = build_parser().get_default("commands")
    shown = 0
    for name, parser in commands.items():
        text = " ".join(parser.format_help().split())  # unwrapped
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default in (None, False, "==SUPPRESS==") or default == []:
                continue
            entry = parser._get_formatter()._expand_help(action)  # the option's help as --help prints it
            assert f"(default: {default})" in entry, f"{name}: {action.option_strings} hides {default!r}"
            assert " ".join(entry.split()) in text
            shown += 1
    assert shown >= 15
