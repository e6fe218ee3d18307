"""A pytest plugin: with ``CONTRASTLAB_NO_SKIPS=1`` (CI sets it) a run that skipped anything fails, except
the documented float16-range cases. A module-level ``importorskip`` then cannot hide a whole file."""

from __future__ import annotations

import os
from typing import Any

import pytest

#: Skip reasons that are allowed: mathematical facts, not missing dependencies.
ALLOWED = ("exceeds float16's range",)

_skipped: list[tuple[str, str]] = []


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _record(report: Any) -> None:
    if report.skipped:
        reason = _reason(report)
        if not any(allowed in reason for allowed in ALLOWED):
            _skipped.append((report.nodeid, reason))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CONTRASTLAB_NO_SKIPS") != "1" or not _skipped:
        return
    lines = "\n".join(f"  {nodeid}: {reason}" for nodeid, reason in _skipped)
    print(f"\nCONTRASTLAB_NO_SKIPS: {len(_skipped)} skipped, which CI does not allow:\n{lines}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
