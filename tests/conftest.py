"""Every async test runs on asyncio and on uvloop, and must leave no task behind.

Each test process (one per pytest-xdist worker) keeps to itself: it is a
child subreaper, so the processes its tests start stay its descendants even
when their parent dies, and it gives itself (and so every process it starts)
a private temporary folder and shared-memory folder, so socket directories
and segments are its own (and `actorstage serve` keeps no state file unless a
test asks for one). Other actorstage programs on the machine, and
other workers, neither disturb it nor are judged by it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actorstage import _shm
from actorstage.testing import leftover_tasks

_PR_SET_CHILD_SUBREAPER = 36
_private: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    temp = tempfile.mkdtemp(prefix="astest-")
    shm_root = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(temp)
    shm = tempfile.mkdtemp(prefix="astest-", dir=shm_root)
    _private.extend((temp, shm))
    os.environ["TMPDIR"] = tempfile.tempdir = temp
    os.environ["ACTORSTAGE_SHM_DIR"] = shm
    _shm.SHM_DIR = Path(shm)  # imported already: it read the variable before it was set
    # `actorstage serve` keeps executions in a state file by default: the tests' servers
    # keep them in memory unless a test gives them a state of their own.
    os.environ["ACTORSTAGE_STATE"] = "memory"
    os.environ["ACTORSTAGE_STATE_DIR"] = str(Path(temp) / "state")


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _private:
        shutil.rmtree(path, ignore_errors=True)



@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def _is_test_runner(task: asyncio.Task[Any]) -> bool:
    return "TestRunner" in getattr(task.get_coro(), "__qualname__", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every async test (they run through anyio) must leave no task behind.
    for item in items:
        if item.get_closest_marker("anyio") is not None and isinstance(item, pytest.Function):
            item.fixturenames.append("_no_leftover_tasks")


@pytest.fixture
async def _no_leftover_tasks(anyio_backend: Any) -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    # Let callbacks that finish cancelled tasks run before looking.
    for _ in range(3):
        await asyncio.sleep(0)
    left = [t for t in leftover_tasks(before) if not _is_test_runner(t)]
    assert not left, f"tasks left running after the test: {left}"
