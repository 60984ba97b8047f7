"""A real PostgreSQL server for the durability tests: Debian's postgresql packages (which
`.ci/run` installs), started by the tests on a private port and socket, as the postgres user
when the tests run as root, and stopped (by its pid) at the end. It starts before the first
test that needs it and lives for the session: each test's check for processes left behind
counts it as already there (its connections' backends end with them)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.transport.conftest import descendants, socket_dirs

__all__ = ["_no_leftover_processes", "postgres", "postgres_db", "state_url"]


@pytest.fixture(autouse=True)
def _no_leftover_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """No process or socket directory a test started is left after it; the PostgreSQL
    server a test uses is started first (it stays for the session)."""
    callspec = getattr(request.node, "callspec", None)
    if "postgres" in request.fixturenames or (
            callspec is not None and callspec.params.get("state_url") == "postgresql"):
        request.getfixturevalue("postgres")
    processes, dirs = descendants(), socket_dirs()
    yield
    deadline = time.monotonic() + 5.0  # a backend of a closed connection may still be going
    while True:
        left = descendants() - processes
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"child processes left behind: {sorted(left)}"
    assert not socket_dirs() - dirs, f"socket directories left: {socket_dirs() - dirs}"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server of this test process's own (no database in it)."""
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL (Debian's postgresql) is required in CI")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    root = os.geteuid() == 0
    user = "postgres" if root else None
    home = Path(tempfile.mkdtemp(prefix="actorstage-pg-", dir="/tmp"))
    data, sockets = home / "data", home / "sockets"
    sockets.mkdir()
    if root:
        shutil.chown(home, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync"], check=True,
                   capture_output=True, user=user, timeout=120)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = home / "postgres.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "max_connections=200", "-c", "autovacuum=off"],
            stdout=subprocess.DEVNULL, stderr=output, user=user)
    try:
        for _ in range(300):
            ready = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(port), "-U", "postgres"], capture_output=True)
            if ready.returncode == 0:
                break
            if server.poll() is not None:
                raise RuntimeError(f"postgres did not start: {log.read_text()!r}")
            time.sleep(0.1)
        else:
            raise RuntimeError("postgres did not accept connections within 30 s")
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGINT)  # a fast shutdown, of the server we started
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(home, ignore_errors=True)


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
