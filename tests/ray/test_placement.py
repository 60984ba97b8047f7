"""Process actors placed on a real local Ray cluster (a head and a second raylet with a
custom resource): placed on the chosen node, asked both ways, restarted by policy on that
node when Ray kills the hosting actor, paused and resumed; a workflow spawned onto Ray."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from actorstage import Actor, ActorSystem, ChildSpec, ProcessOptions, Strategy, Supervisor
from actorstage.transport import RayPlacement
from actorstage.workflows import ActionDef, Runner, StageDef, WorkflowDef

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")])]


def _on_node_b(cluster: Any, **options: Any) -> ProcessOptions:
    return ProcessOptions(transport="tcp", start_timeout=60, placement=RayPlacement(
        cluster.address, num_cpus=0.5, resources={"node_b": 0.1}), **options)


class Where(Actor):
    """Says where it runs (its pid and its Ray node); asks the actor of a ref it is sent."""

    async def receive(self, message: Any) -> Any:
        if isinstance(message, tuple):  # ("ask", a ref of an actor elsewhere)
            return await message[1].ask("who are you?")
        return os.getpid(), os.environ.get("ACTORSTAGE_RAY_NODE", "")


class Local(Actor):
    async def receive(self, message: Any) -> Any:
        return f"{message} a local actor, pid {os.getpid()}"


class Asker(Actor):
    """A local actor, parent of the Ray-placed one."""

    def __init__(self, options: ProcessOptions) -> None:
        self.options = options
        self.child: Any = None

    async def on_start(self) -> None:
        self.child = await self.context.spawn(Where, name="placed", process=self.options)

    async def receive(self, message: Any) -> Any:
        return await self.child.ask(message)


async def test_a_process_actor_runs_on_the_node_ray_chose_and_talks_both_ways(
        ray_cluster: Any) -> None:
    async with ActorSystem() as system:
        asker = await system.spawn(Asker, _on_node_b(ray_cluster), name="asker")
        pid, node = await asker.ask("where")
        assert pid != os.getpid() and node == ray_cluster.node_b
        local = await system.spawn(Local, name="local")
        answer = await asker.ask(("ask", local))  # a ref sent there, asked back from there
        assert answer == f"who are you? a local actor, pid {os.getpid()}"


async def test_ray_killing_the_host_restarts_the_actor_on_the_same_node(
        ray_cluster: Any) -> None:
    import ray

    options = _on_node_b(ray_cluster, heartbeat_interval=0.2, heartbeat_timeout=3.0)
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="app", strategy=Strategy.ONE_FOR_ONE,
                           children=[ChildSpec("placed", Where, process=options)])
        path = "/user/app/placed"
        placed = system.lookup(path)
        assert placed is not None
        first_pid, first_node = await placed.ask("where")
        host: Any = placed._cell.actor  # (its ProcessHost)
        ray.kill(host.proc.launched.host)  # the Ray actor hosting its process
        for _ in range(400):
            node = system.tree().find(path)
            if node is not None and node.restarts == 1 and node.status.value == "running":
                break
            await asyncio.sleep(0.05)
        pid, node_id = await placed.ask("where")
        assert pid != first_pid and node_id == first_node == ray_cluster.node_b
        await system.pause(placed)
        answer = asyncio.ensure_future(placed.ask("while paused"))
        await asyncio.sleep(0.3)
        assert not answer.done()  # held by the pause
        await system.resume(placed)
        assert (await asyncio.wait_for(answer, 10))[0] == pid


async def test_a_workflow_spawned_onto_ray_runs_its_actions_there(ray_cluster: Any) -> None:
    defn = WorkflowDef(id="on-ray", stages=[StageDef(id="s", actions=[
        ActionDef(id="put", action="store.set", params={"key": "k", "value": 7})])])
    async with Runner() as runner:
        execution = await runner.start(defn, process=_on_node_b(ray_cluster))
        result = await execution.result()
        assert result.status == "succeeded" and result.store == {"k": 7}
        assert execution.pid is not None and execution.pid != os.getpid()
