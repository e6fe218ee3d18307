"""The peer libraries the equivalence tests compare against; a test skips, with the reason, if one is
missing (the loader itself lives in bench/_peers.py, shared with the benchmarks)."""

from __future__ import annotations

import types

import pytest
from bench._peers import import_peer


def load_module(package: str, submodule: str) -> types.ModuleType:
    try:
        return import_peer(package, submodule)
    except ImportError as exc:
        pytest.skip(str(exc))
