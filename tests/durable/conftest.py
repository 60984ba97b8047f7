"""A real PostgreSQL server for the durability tests: Debian's postgresql packages (which
`.ci/run` installs), started by the tests on a private port and socket, as the postgres user
when the tests run as root, and stopped (by its pid) at the end. It starts before the first
test that needs it and lives for the session: each test's check for processes left behind
counts it as already there (its connections' backends end with them)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actorstage.testing import postgres_server
from tests.transport.conftest import no_leftovers

__all__ = ["_no_leftover_processes", "postgres", "postgres_db", "state_url"]


@pytest.fixture(autouse=True)
def _no_leftover_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """No process or socket directory a test started is left after it; the PostgreSQL
    server a test uses is started first (it stays for the session)."""
    callspec = getattr(request.node, "callspec", None)
    if "postgres" in request.fixturenames or (
            callspec is not None and callspec.params.get("state_url") == "postgresql"):
        request.getfixturevalue("postgres")
    with no_leftovers():
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server of this test process's own (no database in it)."""
    try:
        with postgres_server() as url:
            yield url
    except FileNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL (Debian's postgresql) is required in CI")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")


@pytest.fixture
def postgres_db(postgres: str) -> str:
    """A fresh database of its own for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    host, port = postgres.rsplit("@", 1)[1].split(":")
    subprocess.run(["psql", "-h", host, "-p", port, "-U", "postgres", "-q", "-c",
                    f"CREATE DATABASE {name}"], check=True, capture_output=True, timeout=60)
    return f"{postgres}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on each kind of state."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_db")
    return f"{url}?lease=1"  # (a killed runner's executions are taken over after 1 s)
