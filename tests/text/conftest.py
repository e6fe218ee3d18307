from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every text test runs with the network refused."""
