"""A node of the Ray cluster lost under a placed process actor: the supervisor sees its end
and restarts it by policy, and Ray places the new incarnation on a node that is left."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from actorstage import ActorSystem, ProcessOptions
from actorstage.transport import RayPlacement
from tests.ray.conftest import cluster_of, restarted, supervised
from tests.ray.test_placement import Where

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")])]


@pytest.fixture
def two_pool_nodes() -> Iterator[Any]:
    """A head and two raylets that both offer the resource ``pool``."""
    with cluster_of({"a": {"pool": 1}, "b": {"pool": 1}}, num_cpus=1) as cluster:
        yield cluster


async def test_a_lost_node_restarts_the_actor_on_a_node_that_is_left(
        two_pool_nodes: Any) -> None:
    cluster = two_pool_nodes
    options = ProcessOptions(transport="tcp", start_timeout=60, heartbeat_interval=0.2,
                             heartbeat_timeout=3.0, placement=RayPlacement(
                                 cluster.address, num_cpus=0.5, resources={"pool": 0.5}))
    async with ActorSystem() as system, system.tree_events.subscribe() as stream:
        placed, first_pid, first_node = await supervised(system, Where, options)
        path = placed.path
        [lost] = [node for node in cluster.worker_nodes if node.node_id == first_node]
        cluster.remove_node(lost)  # its raylet and its workers: gone
        await restarted(system, path)
        pid, node_id = await placed.ask("where")
        assert node_id != first_node and node_id in cluster.node_ids.values()
        assert pid not in (first_pid, os.getpid())
        events: list[Any] = []  # what the tree reported, up to its restart
        with anyio.fail_after(10):
            async for event in stream:
                events.append(event)
                if event.kind == "restarted" and event.path == path:
                    break
        [crash] = [event for event in events if event.kind == "crashed"]
        assert crash.path == path and crash.pid == first_pid and crash.error, crash
