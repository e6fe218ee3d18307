"""HTML reports: built from saved results of each kind, and rendered in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")
pytest.importorskip("optuna")

from contrastlab.cli import main as cli_main
from contrastlab.experiments.compare import compare_runs
from contrastlab.experiments.curve import CurvePoint, write_curve
from contrastlab.experiments.report import build_report, render_html, write_report
from contrastlab.experiments.sweep import run_sweep
from contrastlab.experiments.verdict import run_verdict
from tests.train.test_trainer import TINY

QUICK = {**TINY, "trainer": {**TINY["trainer"], "epochs": 2}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    """One directory of each kind, from real (tiny) runs."""
    root = tmp_path_factory.mktemp("results")
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(QUICK))
    verdict = root / "verdict"
    run_verdict(recipe, treatment=["objective.supcon.weight=0.3"], seeds=2, out_dir=verdict, progress=False)
    compare = root / "compare"
    compare_runs([verdict / "baseline" / "seed0", verdict / "treatment" / "seed0"], out_dir=compare)
    sweep = root / "sweep"
    run_sweep(recipe, {"objective.supcon.weight": [0.1, 0.3], "objective.supcon.temperature": [0.1, 0.2]},
              out_dir=sweep)  # fmt: skip
    curve = root / "curve"  # the same verdict twice: a relative and an absolute path to it
    write_curve(curve, title="tiny budget curve", metric="test.accuracy", x_label="rows per class",
                points=[CurvePoint("10", 10, "../verdict"), CurvePoint("all (100)", 100, str(verdict))],
                arms=("CE", "CE + SupCon"), notes="Both points are one verdict.")  # fmt: skip
    return {"verdict": verdict, "comparison": compare, "sweep": sweep, "run": verdict / "treatment" / "seed1",
            "curve": curve}


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


@pytest.mark.parametrize(
    ("kind", "expected_sections", "min_images"),
    [
        ("verdict", ["Verdict", "What was compared", "Every metric", "Per seed", "Curves",
                     "Embeddings of both arms", "CKA between the arms", "Run metadata"], 5),
        ("sweep", ["Summary", "What was compared", "Grid", "Trials", "Run metadata"], 1),
        ("curve", ["Curve"], 1),
        ("comparison", ["Runs side by side", "What was compared", "Curves", "Run metadata"], 1),
        ("run", ["Summary", "Training curves", "Train/val gap", "Representation diagnostics (test split)",
                 "Embedding projection", "Run metadata"], 2),
    ],
)  # fmt: skip
def test_report__every_kind_has_its_sections_and_embedded_images(
    results, kind, expected_sections, min_images
):
    report = build_report(results[kind])
    assert report.kind == kind
    assert [s.title for s in report.sections] == expected_sections
    html = render_html(report)
    images = _images(html)
    assert len(images) >= min_images
    assert all(image.startswith(PNG_MAGIC) and len(image) > 2000 for image in images)
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch


def test_report__verdict_shows_every_metric_seed_and_verdict(results):
    import json

    verdict = json.loads((results["verdict"] / "verdict.json").read_text())
    html = render_html(build_report(results["verdict"]))
    for comparison in verdict["comparisons"]:
        assert comparison["metric"] in html
        assert comparison["verdict"] in html
    assert verdict["primary"] == "test.accuracy"  # the recipe early-stops on val/accuracy
    primary = next(c for c in verdict["comparisons"] if c["metric"] == verdict["primary"])
    assert primary["sentence"] in html and "Holm-adjusted" in primary["sentence"]
    assert "p (Holm)" in html
    assert "seed 0" in html and "seed 1" in html


def test_report__sweep_lists_every_trial(results):
    import json

    sweep = json.loads((results["sweep"] / "sweep.json").read_text())
    report = build_report(results["sweep"])
    trials = next(s for s in report.sections if s.title == "Trials").tables[0]
    assert len(trials.rows) == len(sweep["trials"]) == 4
    assert trials.columns[2:4] == ["objective.supcon.weight", "objective.supcon.temperature"]
    # what differs between the trials, a column per trial: exactly the swept settings
    compared = next(s for s in report.sections if s.title == "What was compared").tables[0]
    assert compared.columns == ["config key", *(f"trial {t['number']}" for t in sweep["trials"])]
    assert sorted(row[0].text for row in compared.rows) == sorted(["objective.supcon.weight",
                                                                   "objective.supcon.temperature"])


def test_report__text_from_results_is_escaped(results, tmp_path):
    run = tmp_path / "<b>odd</b>"
    shutil.copytree(results["run"], run)
    html = render_html(build_report(run))
    assert "<b>odd</b>" not in html and "&lt;b&gt;odd&lt;/b&gt;" in html


def test_report__directory_without_results_names_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"verdict\.json, sweep\.json, compare\.json, metrics\.json"):
        build_report(tmp_path)


def test_report__cli_writes_report_html(results, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert cli_main(["report", str(results["sweep"]), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert cli_main(["report", str(tmp_path / "nothing")]) == 2  # a clean error, not a traceback
    assert "holds no contrastlab result" in capsys.readouterr().err


# --- in a real browser ----------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = "chromium" in os.environ.get("CONTRASTLAB_REQUIRE", "").split(",")


def _browser():
    if CHROMIUM is None or importlib_missing("playwright"):
        if REQUIRED:
            pytest.fail("CONTRASTLAB_REQUIRE has chromium but chromium or playwright is not installed")
        pytest.skip("needs Debian's chromium (apt-get install chromium) and playwright (pip)")
    from playwright.sync_api import sync_playwright

    return sync_playwright()


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


def test_report__curve_gives_each_points_verdict_call_and_link(results, tmp_path):
    import json

    primary = next(c for c in json.loads((results["verdict"] / "verdict.json").read_text())["comparisons"]
                   if c["metric"] == "test.accuracy")  # fmt: skip
    path = write_report(results["curve"], tmp_path / "elsewhere" / "curve.html")
    report = build_report(results["curve"])
    table = report.sections[0].tables[0]
    assert [row[0].text for row in table.rows] == ["10", "all (100)"]
    assert all(row[-1].text == primary["call"] for row in table.rows)
    difference = primary["mean_difference"]
    assert table.rows[0][4].text == f"{0.0 if abs(difference) < 1e-7 else difference:.3g}"
    html = path.read_text(encoding="utf-8")
    assert "10: " + primary["call"] in html and "Both points are one verdict." in html
    hrefs = re.findall(r'href="([^"#]+)"', html)
    assert hrefs and all((path.parent / h).resolve() == results["verdict"].resolve() for h in hrefs)


def test_report__curve_with_an_unfinished_point_names_it(results, tmp_path):
    points = [CurvePoint("a", 1, str(results["verdict"])), CurvePoint("b", 2, "missing")]
    write_curve(tmp_path, title="t", metric="test.accuracy", x_label="x", points=points)
    with pytest.raises(FileNotFoundError, match=r"point 'b' .*missing/verdict\.json does not exist"):
        build_report(tmp_path)


@pytest.mark.parametrize("kind", ["verdict", "sweep", "comparison", "run", "curve"])
def test_report__renders_in_headless_chromium(results, tmp_path, kind):
    import numpy as np
    from matplotlib.image import imread

    path = write_report(results[kind], tmp_path / f"{kind}.html")
    with _browser() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load")
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            assert page.evaluate("document.images.length") >= 1
            # The sort script works: clicking a header twice reverses its table's rows (the main table's
            # metric column; the verdict table has it second, after the verdict).
            table, column = ("#every-metric table", 1) if kind == "verdict" else ("table", 0)
            rows = f"document.querySelector('{table}').tBodies[0].rows"
            first_column = f"Array.from({rows}, r => r.cells[{column}].dataset.sort)"
            header = f"{table} >> nth=0 >> th >> nth={column}"
            page.click(header)
            ascending = page.evaluate(first_column)
            assert page.get_attribute(header, "aria-sort") == "ascending"
            page.click(header)
            assert page.evaluate(first_column) == ascending[::-1] and len(set(ascending)) > 1
            # Nothing overflows the page sideways at 1280 px (wide tables scroll inside their box).
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            if kind == "verdict":  # the answer first: a badge above the fold, the verdict column first
                badge = page.locator(".badge").first
                box = badge.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 900 and badge.is_visible()
                assert page.locator(".badge .word").first.inner_text().lower() in {
                    "helped", "hurt", "no detectable effect", "equivalent", "inconclusive"}
                assert page.locator("#every-metric th >> nth=0").inner_text().startswith("verdict")
                assert "objective.supcon.weight" in page.locator("#what-was-compared").inner_text()
                assert "torch_threads" in page.locator("#run-metadata").inner_text()
                href = page.locator("#per-seed .links a").first.get_attribute("href")
                run = results["verdict"] / "baseline" / "seed0"  # the report is elsewhere: links follow it
                assert href is not None and (path.parent / href).resolve() == run.resolve()
            screenshot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert errors == []
    pixels = imread(io.BytesIO(screenshot), format="png")
    assert pixels.shape[0] > 900 and float(np.std(pixels)) > 0.05  # taller than one screen, not blank
