"""Result directories written by an earlier version load and render exactly as they did when written.

The directories under ``golden/`` (one of each kind: a single verdict, one extended after it was written, a
sequential one, verdicts over two recipes, a curve) were trained and rendered by the commit that added them
(``python -m tests.experiments.golden.regenerate``); users hold such files, and a change to how a verdict
is stored or read must keep reading them.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.experiments.golden.regenerate import HERE, KINDS, ROOT, rendered, table


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the verdicts record their recipes relative to the repository root


@pytest.mark.parametrize("kind", KINDS)
def test_golden__report_shows_what_it_showed_when_written(kind):
    expected = json.loads((HERE / f"{kind}.expected" / "report.json").read_text())
    assert rendered(HERE / kind) == expected


@pytest.mark.parametrize("kind", [k for k in KINDS if (HERE / k / "verdict.json").is_file()])
def test_golden__cli_table_is_what_it_was_when_written(kind):
    assert table(HERE / kind) == (HERE / f"{kind}.expected" / "table.txt").read_text()


def test_golden__every_kind_is_committed():
    assert all((HERE / kind).is_dir() for kind in KINDS)
    assert not [p for p in HERE.rglob("*.pt")], "checkpoints do not belong in the golden set"
    assert os.path.getsize(HERE / "single" / "verdict.json") > 0


def _verdict_files() -> list:
    return sorted(HERE.glob("*/**/verdict.json"))


@pytest.mark.parametrize("path", _verdict_files(), ids=lambda p: str(p.parent.relative_to(HERE)))
def test_golden__a_verdict_json_reads_into_a_verdict_and_writes_back_the_same(path):
    from contrastlab.experiments.results import Verdict

    written = json.loads(path.read_text())
    assert Verdict.from_json(path).to_dict() == written


def test_golden__verdicts_over_recipes_read_and_write_back_the_same():
    from contrastlab.experiments.results import RecipeVerdicts

    path = HERE / "recipes" / "verdicts.json"
    assert RecipeVerdicts.from_json(path).to_dict() == json.loads(path.read_text())


def test_golden__results_show_themselves_in_a_notebook():
    import html.parser

    from contrastlab.experiments.results import Verdict

    verdict = Verdict.from_json(HERE / "sequential")
    shown = verdict._repr_html_()
    primary = verdict.primary_comparison
    assert primary.call() in shown and primary.metric in shown
    assert shown.count("<tr>") == len(verdict.comparisons) + 1  # a row per metric under the header
    assert html.parser.HTMLParser().feed(shown) is None  # it parses
    assert str(verdict) == (HERE / "sequential.expected" / "table.txt").read_text().rstrip("\n")
