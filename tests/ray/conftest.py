"""A real local Ray cluster for the module's tests: a head, and a second raylet with a
custom resource (``node_b``), on this machine, on loopback; shut down after the module,
with none of its processes (nor a Ray actor that hosted a process actor, after each test) left."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.transport.conftest import descendants


def _hosts() -> set[int]:
    """Ray worker processes under this one that host (or hosted) a process actor."""
    found = set()
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                command = file.read()
        except OSError:
            continue
        if command.startswith((b"ray::actorstage", b"ray::RayHost")):
            found.add(pid)
    return found


@contextlib.contextmanager
def cluster_of(nodes: dict[str, dict[str, float]], **options: Any) -> Iterator[Any]:
    """``actorstage.testing.ray_cluster``, checked to leave none of its processes."""
    pytest.importorskip("ray")
    from actorstage.testing import ray_cluster

    before = descendants()
    try:
        with ray_cluster(nodes, **options) as cluster:
            yield cluster
    finally:
        deadline = time.monotonic() + 15
        while descendants() - before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not descendants() - before, f"Ray left processes: {descendants() - before}"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    with cluster_of({"node_b": {"node_b": 1}}) as cluster:
        cluster.node_b = cluster.node_ids["node_b"]
        yield cluster


async def supervised(system: Any, actor: Any, options: Any) -> tuple[Any, int, str]:
    """``actor`` placed as ``/user/app/placed`` under a one-for-one supervisor: its ref,
    and the pid and Ray node of its first incarnation (it answers "where")."""
    from actorstage import ChildSpec, Strategy, Supervisor

    await system.spawn(Supervisor, name="app", strategy=Strategy.ONE_FOR_ONE,
                       children=[ChildSpec("placed", actor, process=options)])
    placed = system.lookup("/user/app/placed")
    assert placed is not None
    pid, node = await placed.ask("where")
    return placed, pid, node


async def restarted(system: Any, path: str) -> None:
    """Wait (up to 30 s) until the actor at ``path`` runs again after one restart."""
    for _ in range(600):
        node = system.tree().find(path)
        if node is not None and node.restarts == 1 and node.status.value == "running":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} did not run again after a restart within 30 s: "
                         f"{system.tree().find(path)}")


@pytest.fixture(autouse=True)
def _no_host_left() -> Iterator[None]:
    """Every Ray actor that hosted a process actor of the test is gone after it."""
    yield
    deadline = time.monotonic() + 10
    while _hosts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _hosts(), f"Ray actors hosting process actors left: {_hosts()}"
