"""Cancellation in every place it can land: callers, spawns, stops, the system's own host."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from actorstage import Actor, ActorCrashedError, ActorStatus, ActorSystem
from actorstage.testing import wait_until

pytestmark = pytest.mark.anyio


class Hooks(Actor):
    def __init__(self, log: list[str], tag: str, gate: asyncio.Event | None = None) -> None:
        self.log = log
        self.tag = tag
        self.gate = gate

    async def on_start(self) -> None:
        if self.gate is not None:
            self.log.append(f"starting {self.tag}")
            await self.gate.wait()
        self.log.append(f"start {self.tag}")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.tag}")

    async def receive(self, message: Any) -> Any:
        return message


async def test_a_cancelled_spawn_leaves_nothing_registered() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        with anyio.move_on_after(0.05):
            await system.spawn(Hooks, log, "slow", asyncio.Event(), name="slow")
        assert log == ["starting slow"]
        assert system.lookup("/user/slow") is None
        ref = await system.spawn(Hooks, log, "slow", name="slow")  # the name is free again
        assert await ref.ask(1) == 1


async def test_a_cancelled_stop_caller_does_not_leave_a_half_stopped_actor() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    stopped: list[str] = []

    class Busy(Actor):
        async def on_stop(self) -> None:
            stopped.append("busy")

        async def receive(self, message: Any) -> Any:
            started.set()
            await release.wait()

    async with ActorSystem() as system:
        ref = await system.spawn(Busy)
        await ref.tell("work")
        await started.wait()
        with anyio.move_on_after(0.02):
            await system.stop(ref)  # gives up waiting, the stop goes on
        assert system.tree().find(ref.path).status is ActorStatus.STOPPING  # type: ignore[union-attr]
        release.set()
        await wait_until(lambda: system.lookup(ref.path) is None)
        assert stopped == ["busy"]


async def test_cancelling_the_systems_host_still_stops_every_actor() -> None:
    log: list[str] = []
    ready = asyncio.Event()

    async def host() -> None:
        async with ActorSystem() as system:
            for tag in "ab":
                await system.spawn(Hooks, log, tag)
            ready.set()
            await asyncio.Event().wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(host)
        await ready.wait()
        tg.cancel_scope.cancel()
    assert log == ["start a", "start b", "stop b", "stop a"]


async def test_native_task_cancel_of_the_host_is_not_swallowed() -> None:
    log: list[str] = []
    ready = asyncio.Event()

    async def host() -> None:
        async with ActorSystem() as system:
            await system.spawn(Hooks, log, "a")
            ready.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(host())
    await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["start a", "stop a"]


async def test_an_ask_cancelled_while_waiting_for_room_sends_nothing() -> None:
    gate = asyncio.Event()
    seen: list[Any] = []

    class Gated(Actor):
        async def receive(self, message: Any) -> Any:
            await gate.wait()
            seen.append(message)
            return message

    async with ActorSystem() as system:
        ref = await system.spawn(Gated, mailbox_size=1)
        await ref.tell("first")
        await wait_until(lambda: not ref._cell.queue)
        await ref.tell("second")
        with anyio.move_on_after(0.02):
            await ref.ask("cancelled while waiting for room")
        gate.set()
        assert await ref.ask("last") == "last"
    assert seen == ["first", "second", "last"]


async def test_a_restart_during_a_pause_keeps_the_new_incarnation_paused() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    seen: list[Any] = []

    class Crashy(Actor):
        async def receive(self, message: Any) -> Any:
            if message == "crash later":
                started.set()
                await release.wait()
                raise RuntimeError("crashed while a pause waited")
            seen.append((self.context.restarts, message))
            return message

    async with ActorSystem() as system:
        ref = await system.spawn(Crashy)
        crash = asyncio.ensure_future(ref.ask("crash later"))
        await started.wait()
        pausing = asyncio.ensure_future(system.pause(ref))
        await ref.tell("queued before the crash")
        release.set()
        with pytest.raises(ActorCrashedError):
            await crash
        await pausing
        await wait_until(lambda: ref._cell.restarts == 1 and ref._cell.state == 1)
        node = system.tree().find(ref.path)
        assert node is not None
        assert node.status is ActorStatus.PAUSED
        assert seen == []
        await system.resume(ref)
        assert await ref.ask("after") == "after"
    assert seen == [(1, "queued before the crash"), (1, "after")]
