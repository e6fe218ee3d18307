"""``contrastlab report DIR``: one self-contained HTML file from the JSON results a command saved.

The kind of report follows from what the directory holds: ``curve.json`` (verdicts along a setting, e.g. a
label budget), ``verdicts.json`` (verdicts over several recipes), ``verdict.json`` (a paired verdict),
``sweep.json`` (a sweep), ``compare.json`` (a comparison) or ``metrics.json`` (a single run). Everything
is read from those saved results and the run directories they point to (``history.csv``,
``embeddings/*.npz``, ``diagnostics.json``); nothing is trained or recomputed except the figures, which are
drawn with matplotlib and embedded as base64 PNGs, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from contrastlab.experiments.report.document import Report, Section
from contrastlab.experiments.report.runs import comparison_sections, run_sections, sweep_sections
from contrastlab.experiments.report.verdict import curve_sections, verdict_sections, verdicts_sections
from contrastlab.train.checkpoint import atomic_write

__all__ = ["Report", "Section", "build_report", "render_html", "write_report"]

_KINDS = (
    ("curve.json", "curve"),
    ("verdicts.json", "verdicts"),
    ("verdict.json", "verdict"),
    ("sweep.json", "sweep"),
    ("compare.json", "comparison"),
    ("metrics.json", "run"),
)

_BUILDERS: dict[str, Callable[[Path], list[Section]]] = {
    "curve": curve_sections,
    "verdicts": verdicts_sections,
    "verdict": verdict_sections,
    "sweep": sweep_sections,
    "comparison": comparison_sections,
    "run": run_sections,
}


def build_report(directory: str | Path) -> Report:
    """Reads the saved results in ``directory`` into a :class:`Report` (sections of tables and figures).

    Raises:
        FileNotFoundError: the directory holds none of curve.json, verdicts.json, verdict.json, sweep.json,
            compare.json, metrics.json; or a curve's point whose verdict has not finished.
    """
    path = Path(directory)
    for filename, kind in _KINDS:
        if (path / filename).is_file():
            return Report(
                title=f"contrastlab {kind}: {path.resolve().name}",
                kind=kind,
                source=str(path),
                sections=_BUILDERS[kind](path),
            )
    raise FileNotFoundError(
        f"{path} holds no contrastlab result: expected one of {', '.join(f for f, _ in _KINDS)}"
    )


def render_html(report: Report) -> str:
    """The report as one HTML document (autoescaped; images inline)."""
    import jinja2

    from contrastlab import __version__

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("contrastlab.experiments.report", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template("template.html.j2")
    return template.render(
        title=report.title,
        kind=report.kind,
        source=report.source,
        sections=report.sections,
        version=__version__,
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Renders the report of ``directory`` into ``out`` (default ``DIR/report.html``), atomically. Links to
    the result's files are relative to where the report is written."""
    report = build_report(directory)
    target = Path(out) if out is not None else Path(directory) / "report.html"
    base = os.path.relpath(Path(directory).resolve(), target.resolve().parent)
    for section in report.sections:
        for link in section.links:
            link.path = Path(base, link.path).as_posix() if base != "." else link.path
    with atomic_write(target, "wb") as handle:
        handle.write(render_html(report).encode("utf-8"))
    return target
