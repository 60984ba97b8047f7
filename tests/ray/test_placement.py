"""Process actors placed on a real local Ray cluster (a head and a second raylet with a
custom resource): placed on the chosen node, asked both ways and handed refs, restarted by
policy on that node when Ray kills the hosting actor, paused, resumed, cancelled and
stopped; what does not fit, and who cannot prove they belong, refused clearly; a workflow
spawned onto Ray; a pipeline with a node on Ray."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import msgspec
import pytest

from actorstage import (
    Actor,
    ActorCrashedError,
    ActorSystem,
    ProcessOptions,
)
from actorstage.pipelines import Node, Pipeline, RuntimeConfig, parse_manifest, register_node
from actorstage.testing import Probe
from actorstage.transport import RayPlacement
from actorstage.workflows import ActionDef, Runner, StageDef, WorkflowDef
from tests.ray.conftest import restarted, supervised

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")])]


def _on_node_b(cluster: Any, **options: Any) -> ProcessOptions:
    return ProcessOptions(transport="tcp", start_timeout=60, placement=RayPlacement(
        cluster.address, num_cpus=0.5, resources={"node_b": 0.1}), **options)


class Where(Actor):
    """Says where it runs (its pid and its Ray node); asks or tells the actor of a ref it is
    sent."""

    async def receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] == "ask":  # a ref of an actor elsewhere
            return await message[1].ask("who are you?")
        if isinstance(message, tuple) and message[0] == "tell":
            await message[1].tell(("told from", os.getpid()))
            return None
        if isinstance(message, tuple) and message[0] == "size":  # a large payload came
            from actorstage.transport._payloads import ARENA

            return len(message[1]), len(ARENA.mapped)  # (slots of others it had to map)
        return os.getpid(), os.environ.get("ACTORSTAGE_RAY_NODE", "")


class Local(Actor):
    async def receive(self, message: Any) -> Any:
        if isinstance(message, tuple):  # ("send", a ref, a size): a large payload to it
            return await message[1].ask(("size", bytes(message[2])))
        return f"{message} a local actor, pid {os.getpid()}"


class Slow(Actor):
    """Sleeps on "sleep" until cancelled, and says whether it was."""

    def __init__(self) -> None:
        self.cancelled = False

    async def receive(self, message: Any) -> Any:
        if message == "sleep":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return self.cancelled, os.getpid()


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
        probe = await Probe.spawn(system)
        placed = system.lookup("/user/asker/placed")
        assert placed is not None
        await placed.tell(("tell", probe.ref))  # a tell there, a tell back
        assert await probe.expect(tuple) == ("told from", pid)
        child = await system.spawn(Local, name="child", process=True)  # a process actor here
        answer = await asker.ask(("ask", child))
        child_pid = system.tree().find("/user/child").pid  # type: ignore[union-attr]
        assert answer == f"who are you? a local actor, pid {child_pid}"
        assert child_pid not in (os.getpid(), pid)
        # A payload large enough for shared memory, from the process actor here to the one
        # Ray placed (through the parent): it arrives inline, as if on another machine.
        assert await child.ask(("send", placed, 300_000)) == (300_000, 0)
        assert await asker.ask(("size", bytes(300_000))) == (300_000, 0)  # from the parent


async def test_ray_killing_the_host_restarts_the_actor_on_the_same_node(
        ray_cluster: Any) -> None:
    import ray

    options = _on_node_b(ray_cluster, heartbeat_interval=0.2, heartbeat_timeout=3.0)
    async with ActorSystem() as system:
        placed, first_pid, first_node = await supervised(system, Where, options)
        path = placed.path
        host: Any = placed._cell.actor  # (its ProcessHost)
        ray.kill(host.proc.launched.host)  # the Ray actor hosting its process
        await restarted(system, path)
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


async def test_a_placed_actor_is_cancelled_and_stopped_and_its_ray_actor_released(
        ray_cluster: Any) -> None:
    import ray

    async with ActorSystem() as system:
        slow = await system.spawn(Slow, name="slow", process=_on_node_b(ray_cluster))
        host: Any = slow._cell.actor
        ray_actor = host.proc.launched.host
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await slow.ask("sleep")  # given up on: the handler over there is cancelled
        cancelled, pid = await slow.ask("were you cancelled?")
        assert cancelled and pid == host.pid
        await system.stop(slow)
        await asyncio.wait_for(host.proc.wait(), 20)  # its end: the Ray call returned
        for _ in range(100):  # and its Ray actor is killed (ray.kill takes effect shortly)
            try:
                await asyncio.wait_for(ray_actor.__ray_ready__.remote(), 5)
            except ray.exceptions.RayActorError:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the Ray actor that hosted it lives on after it stopped")


async def test_what_does_not_fit_on_the_cluster_fails_at_its_start_timeout(
        ray_cluster: Any) -> None:
    options = ProcessOptions(transport="tcp", start_timeout=3, placement=RayPlacement(
        ray_cluster.address, num_cpus=0.5, resources={"nowhere": 1}))
    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError, match=r"did not join within 3s.*Ray has not "
                                                    r"placed it.*'nowhere': 1"):
            await system.spawn(Where, name="homeless", process=options)


class Tampered(RayPlacement):
    """A placement that hands its process a bundle someone changed on the way."""

    def __init__(self, address: str, change: Any) -> None:
        super().__init__(address, num_cpus=0.5, resources={"node_b": 0.1})
        self.change = change

    async def start(self, bundle: str) -> Any:
        boot = json.loads(base64.urlsafe_b64decode(bundle))
        self.change(boot)
        return await super().start(base64.urlsafe_b64encode(json.dumps(boot).encode()).decode())


def _wrong_secret(boot: dict[str, Any]) -> None:
    boot["secret"] = "not-the-secret"


def _another_trees_certificate(boot: dict[str, Any]) -> None:
    from actorstage.transport._tls import TreeTls

    boot["tls"] = TreeTls.create("another tree").issue("/user/impostor").to_boot()


@pytest.mark.parametrize("change", [_wrong_secret, _another_trees_certificate])
async def test_a_process_that_cannot_prove_it_belongs_is_refused(
        ray_cluster: Any, change: Any) -> None:
    options = ProcessOptions(transport="tcp", tls=True, start_timeout=60,
                             placement=Tampered(ray_cluster.address, change))
    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError, match=r"before it connected"):
            await system.spawn(Where, name="impostor", process=options)
        if change is _wrong_secret:
            assert system._bridges[("tcp", "127.0.0.1", True)].refused >= 1


@register_node("ray-test.Blob")
class Blob(Node):
    """Makes ``n`` bytes of each item ``n`` (large ones cross in shared memory)."""

    async def process(self, item: int) -> bytes:
        return bytes(item)


@register_node("ray-test.Where")
class WhereNode(Node):
    """Says how large each item was, and where it was handled."""

    async def process(self, item: bytes) -> dict[str, Any]:
        return {"size": len(item), "pid": os.getpid(),
                "node": os.environ.get("ACTORSTAGE_RAY_NODE", "")}


async def test_a_pipeline_node_runs_on_ray_where_its_placement_says(ray_cluster: Any) -> None:
    manifest = parse_manifest(json.dumps({
        "version": "v1", "metadata": {"name": "on-ray"},
        "nodes": [{"id": "blob", "node_type": "ray-test.Blob", "executor": "process"},
                  {"id": "where", "node_type": "ray-test.Where", "executor": "process",
                   "placement": "node-b"}],
        "connections": [{"from": "blob", "to": "where"}]}))
    runtime = msgspec.convert({"placements": {"node-b": {"ray": {
        "address": ray_cluster.address, "num_cpus": 0.5, "resources": {"node_b": 0.1}}}}},
        RuntimeConfig)
    pipe = Pipeline(manifest, runtime=runtime)
    async with ActorSystem() as system, pipe.session(system) as session:
        for size in (10, 300_000, 20):  # 300,000 bytes leave shared memory for the message
            await session.send(size)
        session.close_input()
        outputs = [output.item async for output in session.outputs()]
        stats = session.stats()
    assert [output["size"] for output in outputs] == [10, 300_000, 20]
    assert {output["node"] for output in outputs} == {ray_cluster.node_b}
    assert {output["pid"] for output in outputs} == {stats["where"].pid}
    assert stats["blob"].pid not in (None, os.getpid(), stats["where"].pid)
