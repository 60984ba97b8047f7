"""A real local Ray cluster for the module's tests: a head, and a second raylet with a
custom resource (``node_b``), on this machine, on loopback; shut down after the module,
with none of its processes (nor a Ray actor that hosted a process actor, after each test) left."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    pytest.importorskip("ray")
    from actorstage.testing import ray_cluster

    before = descendants()
    try:
        with ray_cluster({"node_b": {"node_b": 1}}) as cluster:
            cluster.node_b = cluster.node_ids["node_b"]
            yield cluster
    finally:
        deadline = time.monotonic() + 15
        while descendants() - before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not descendants() - before, f"Ray left processes: {descendants() - before}"


@pytest.fixture(autouse=True)
def _no_host_left() -> Iterator[None]:
    """Every Ray actor that hosted a process actor of the test is gone after it."""
    yield
    deadline = time.monotonic() + 10
    while _hosts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _hosts(), f"Ray actors hosting process actors left: {_hosts()}"
