"""``system.tree_events``: starts, crashes, restarts, pauses and stops, as they happen."""

from __future__ import annotations

import anyio
import pytest

from actorstage import Actor, ActorCrashedError, ActorSystem, ChildSpec, Supervisor
from actorstage.actors import Subscription, TreeEvent

pytestmark = pytest.mark.anyio


class Worker(Actor):
    async def receive(self, message: str) -> str:
        if message == "boom":
            raise ValueError("boom on purpose")
        return message


async def take(events: Subscription[TreeEvent], count: int) -> list[TreeEvent]:
    got = []
    with anyio.fail_after(10):
        async for event in events:
            got.append(event)
            if len(got) == count:
                break
    return got


async def test_a_subscriber_sees_the_tree_change_in_order() -> None:
    async with ActorSystem() as system, system.tree_events.subscribe() as events:
        sup = await system.spawn(Supervisor, name="sup", children=[ChildSpec("w", Worker)])
        worker = system.lookup("/user/sup/w")
        assert worker is not None
        with pytest.raises(ActorCrashedError):
            await worker.ask("boom")
        assert await worker.ask("again") == "again"
        await system.pause(sup)
        await system.resume(sup)
        await system.stop(sup)
        got = await take(events, 10)
    assert [(event.kind, event.path) for event in got] == [
        ("started", "/user/sup/w"), ("started", "/user/sup"),
        ("crashed", "/user/sup/w"), ("restarted", "/user/sup/w"),
        ("paused", "/user/sup"), ("paused", "/user/sup/w"),
        ("resumed", "/user/sup"), ("resumed", "/user/sup/w"),
        ("stopped", "/user/sup/w"), ("stopped", "/user/sup")]
    crashed, restarted = got[2], got[3]
    assert crashed.error == "ValueError: boom on purpose" and crashed.actor_type == "Worker"
    assert restarted.restarts == 1
    assert (got[8].reason, got[9].reason) == ("shutdown", "stopped")
    assert all(event.time > 0 for event in got)


async def test_a_process_actor_event_carries_its_pid() -> None:
    async with ActorSystem() as system, system.tree_events.subscribe() as events:
        ref = await system.spawn(Worker, name="far", process=True)
        [started] = await take(events, 1)
        node = system.tree().find(ref.path)
        assert node is not None
        await system.stop(ref)
    assert started.kind == "started" and started.pid == node.pid and started.pid


async def test_a_slow_subscriber_misses_the_newest_and_counts_them() -> None:
    async with ActorSystem() as system, system.tree_events.subscribe(max_buffer=2) as events:
        for n in range(5):
            await system.spawn(Worker, name=f"w{n}")
        got = await take(events, 2)
        assert [event.path for event in got] == ["/user/w0", "/user/w1"]
        assert events.missed == 3
