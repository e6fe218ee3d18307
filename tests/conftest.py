from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Featurized datasets are cached in a directory of this test session, never in the user's cache."""
    os.environ["CONTRASTLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
