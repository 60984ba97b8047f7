"""Pause and resume: queued delivery, asks during a pause, signals past a full mailbox."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from actorstage import (
    Actor,
    ActorCrashedError,
    ActorStatus,
    ActorSystem,
    ChildSpec,
    Supervisor,
)
from actorstage.testing import wait_until

pytestmark = pytest.mark.anyio


class Logger(Actor):
    def __init__(self, log: list[Any], tag: str = "") -> None:
        self.log = log
        self.tag = tag

    async def on_pause(self) -> None:
        self.log.append(("paused", self.tag))

    async def on_resume(self) -> None:
        self.log.append(("resumed", self.tag))

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        self.log.append((self.tag, message))
        return message


async def test_messages_queue_during_a_pause_and_arrive_in_order_after() -> None:
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Logger, log, "w")
        await system.pause(ref)
        for i in range(10):
            await ref.tell(i)
        assert log == [("paused", "w")]
        assert system.tree().find(ref.path).queued == 10  # type: ignore[union-attr]
        await system.resume(ref)
        assert await ref.ask("end") == "end"
    assert log == [("paused", "w"), ("resumed", "w"), *[("w", i) for i in range(10)],
                   ("w", "end")]


async def test_an_ask_waits_for_the_resume_or_its_deadline() -> None:
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Logger, log)
        await system.pause(ref)
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.05):
                await ref.ask("expires")
        waiting = asyncio.ensure_future(ref.ask("waits"))
        await wait_until(lambda: len(ref._cell.queue or ()) == 2)
        assert not waiting.done()
        await system.resume(ref)
        assert await waiting == "waits"
    assert ("", "expires") not in log


async def test_pause_waits_for_the_message_in_hand() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    class Busy(Actor):
        async def receive(self, message: Any) -> Any:
            started.set()
            await release.wait()
            finished.append(message)

    async with ActorSystem() as system:
        ref = await system.spawn(Busy)
        await ref.tell("in hand")
        await ref.tell("queued")
        await started.wait()
        pausing = asyncio.ensure_future(system.pause(ref))
        await asyncio.sleep(0.01)
        assert not pausing.done()
        release.set()
        await pausing
        assert finished == ["in hand"]
        await system.resume(ref)
        await wait_until(lambda: finished == ["in hand", "queued"])


async def test_signals_pass_a_full_mailbox_and_blocked_senders() -> None:
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Logger, log, mailbox_size=3)
        await system.pause(ref)
        for i in range(3):
            ref.tell_nowait(i)
        blocked = asyncio.ensure_future(ref.tell("blocked"))
        with anyio.fail_after(1):
            await system.pause(ref)  # idempotent, and not stuck behind the mailbox
            await system.resume(ref)
        await blocked
        await system.pause(ref)
        for i in range(3):
            await ref.tell(i)
        blocked = asyncio.ensure_future(ref.tell("dead"))
        with anyio.fail_after(1):
            await system.stop(ref)
        await blocked
        assert system.dead_letters.count == 4  # three queued, one blocked sender


async def test_pausing_a_supervisor_pauses_its_subtree_and_restarts_stay_paused() -> None:
    log: list[Any] = []
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", children=[
            ChildSpec("a", Logger, (log, "a")),
            ChildSpec("inner", Supervisor, kwargs={"children": [
                ChildSpec("b", Logger, (log, "b"))]}),
        ])
        a = system.lookup("/user/s/a")
        b = system.lookup("/user/s/inner/b")
        assert a is not None and b is not None
        await b.ask("crash-me-later")  # runs now
        await system.pause(sup)
        statuses = {n.path: n.status for n in system.tree().walk()}
        assert statuses["/user/s"] is ActorStatus.PAUSED
        assert statuses["/user/s/inner/b"] is ActorStatus.PAUSED
        await a.tell("while paused")
        await b.tell("while paused")
        await asyncio.sleep(0.01)
        assert ("a", "while paused") not in log
        await system.resume(sup)
        await a.ask("sync")
        await b.ask("sync")
        assert ("a", "while paused") in log and ("b", "while paused") in log
        # a restart during a pause leaves the new incarnation paused
        crash = asyncio.ensure_future(a.ask("crash"))
        with pytest.raises(ActorCrashedError):
            await crash
        await system.pause(sup)
        await wait_until(lambda: a._cell.restarts == 1 and a._cell.state == 1)
        node = system.tree().find("/user/s/a")
        assert node is not None and node.status is ActorStatus.PAUSED
        late = asyncio.ensure_future(a.ask("late"))
        await asyncio.sleep(0.01)
        assert not late.done()
        await system.resume(sup)
        assert await late == "late"
