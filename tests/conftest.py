from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Featurized datasets are cached in a directory of this test session, never in the user's cache."""
    os.environ["CONTRASTLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def no_network(monkeypatch):
    """The test fails if anything tries to reach the network (a hub download, say)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


pytest_plugins = ["tests._no_skips"]
