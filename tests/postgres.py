"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, loopback only, trust auth.

Needs Debian's ``postgresql`` package (scripts/test.sh installs it when run as root). As root the server
runs as the ``postgres`` system user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRED = "postgres" in os.environ.get("CONTRASTLAB_REQUIRE", "").split(",")


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Starts a server and yields its SQLAlchemy URL (psycopg 3 driver); stops and deletes it after."""
    bin_dir = _bin_dir()
    missing = "PostgreSQL (apt-get install postgresql)" if bin_dir is None else None
    if missing is None and importlib_missing("psycopg"):
        missing = "psycopg (pip install 'psycopg[binary]')"
    if missing is not None:
        if REQUIRED:
            pytest.fail(f"CONTRASTLAB_REQUIRE has postgres but {missing} is not installed")
        pytest.skip(f"needs {missing}")
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="contrastlab-pg-"))  # not under pytest's 0700 tmp: postgres reads it
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    pg_ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
        subprocess.run([*pg_ctl, "-l", str(root / "server.log"), "-w", "-o", options, "start"],
                       check=True, capture_output=True)  # fmt: skip
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        except BaseException as error:
            # A failure while the server ran: its log says whether it was asked to stop (and how) or crashed.
            log = root / "server.log"
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no server.log)"
            error.add_note(f"PostgreSQL server log ({log}), last lines:\n{tail}")
            raise
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None
