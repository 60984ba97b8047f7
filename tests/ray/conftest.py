"""A real local Ray cluster for the module's tests: a head, and a second raylet with a
custom resource (``node_b``), on this machine; shut down after the module, with none of
its processes (nor any ``actorstage join`` under them) left."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.transport.conftest import descendants


def _joined() -> set[int]:
    """``actorstage join`` processes under this one (a Ray actor's children)."""
    found = set()
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                command = file.read().split(b"\0")
        except OSError:
            continue
        if b"join" in command and any(part.endswith(b"actorstage") for part in command):
            found.add(pid)
    return found


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    before = descendants()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"head": 1}, "include_dashboard": False})
    node_b = cluster.add_node(num_cpus=2, resources={"node_b": 1})
    cluster.node_b = node_b.node_id  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 15
        while descendants() - before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not descendants() - before, f"Ray left processes: {descendants() - before}"


@pytest.fixture(autouse=True)
def _no_joined_process_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10
    while _joined() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _joined(), f"actorstage join processes left: {_joined()}"
