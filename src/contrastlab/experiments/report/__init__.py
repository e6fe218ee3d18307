"""HTML reports of runs, comparisons, sweeps and verdicts (``contrastlab report DIR``)."""

from contrastlab.experiments.report.render import Report, build_report, render_html, write_report

__all__ = ["Report", "build_report", "render_html", "write_report"]
