"""tell, tell_nowait, ask: ordering, backpressure, replies, crashes, deadlines."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from actorstage import (
    Actor,
    ActorCrashedError,
    ActorRef,
    ActorstageError,
    ActorSystem,
    MailboxFullError,
    Message,
)
from actorstage.testing import wait_until

pytestmark = pytest.mark.anyio


class Record(Actor):
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("asked to crash")
        self.log.append(message)
        return len(self.log)


class Gate(Actor):
    """Blocks on an event for messages equal to 'wait'."""

    def __init__(self, gate: asyncio.Event, log: list[Any]) -> None:
        self.gate = gate
        self.log = log

    async def receive(self, message: Any) -> Any:
        if message == "wait":
            await self.gate.wait()
        self.log.append(message)
        return message


class Deposit(Message, frozen=True):
    account: str
    amount: int


async def test_ask_returns_the_handlers_value() -> None:
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Record, log)
        assert await ref.ask("a") == 1
        assert await ref.ask(Deposit("x", 5)) == 2
    assert log == ["a", Deposit("x", 5)]


async def test_messages_are_handled_in_order_one_at_a_time() -> None:
    seen: list[int] = []
    running = 0
    overlap = False

    class Slow(Actor):
        async def receive(self, message: Any) -> None:
            nonlocal running, overlap
            running += 1
            overlap = overlap or running > 1
            await asyncio.sleep(0)
            seen.append(message)
            running -= 1

    async with ActorSystem() as system:
        ref = await system.spawn(Slow)
        for i in range(500):
            await ref.tell(i)
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(ref.tell, -1)
        await wait_until(lambda: len(seen) == 503)
    assert [m for m in seen if m >= 0] == list(range(500))
    assert not overlap


async def test_tell_waits_for_room_and_keeps_fifo_order() -> None:
    gate = asyncio.Event()
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Gate, gate, log, mailbox_size=2)
        await ref.tell("wait")  # taken into hand at once
        await wait_until(lambda: ref._cell.draining and not ref._cell.queue)
        await ref.tell(1)
        await ref.tell(2)
        with pytest.raises(MailboxFullError, match=r"mailbox of '/user/gate-\d+' is full \(2"):
            ref.tell_nowait(3)
        blocked = [asyncio.ensure_future(ref.tell(n)) for n in (3, 4, 5)]
        await asyncio.sleep(0)
        assert not any(t.done() for t in blocked)  # backpressure: all three wait
        gate.set()
        await asyncio.gather(*blocked)
        assert await ref.ask("end") == "end"
    assert log == ["wait", 1, 2, 3, 4, 5, "end"]


async def test_a_waiting_sender_that_gives_up_sends_nothing() -> None:
    gate = asyncio.Event()
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Gate, gate, log, mailbox_size=1)
        await ref.tell("wait")
        await wait_until(lambda: not ref._cell.queue)
        await ref.tell(1)
        with anyio.move_on_after(0.05):
            await ref.tell("never")
        gate.set()
        assert await ref.ask(2) == 2
    assert log == ["wait", 1, 2]


async def test_crash_fails_the_asker_with_the_remote_details_and_is_not_retried() -> None:
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Record, log)
        with pytest.raises(ActorCrashedError) as caught:
            await ref.ask("crash")
        error = caught.value
        assert error.path == ref.path
        assert error.type_name == "ValueError"
        assert error.error_message == "asked to crash"
        assert "raise ValueError" in error.traceback
        assert str(error) == f"actor {ref.path!r} crashed: ValueError: asked to crash"
        assert isinstance(error.__cause__, ValueError)
        assert await ref.ask("after") == 1  # a fresh incarnation, the crash not retried
        assert system.tree().find(ref.path).restarts == 1  # type: ignore[union-attr]
    assert log == ["after"]


async def test_deadline_raises_timeout_and_the_expired_ask_is_not_delivered() -> None:
    gate = asyncio.Event()
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Gate, gate, log)
        await ref.tell("wait")
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.05):
                await ref.ask("late")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await ref.ask("later")
        gate.set()
        assert await ref.ask("on time") == "on time"
    assert log == ["wait", "on time"]


async def test_asking_itself_is_refused_instead_of_hanging() -> None:
    class Narcissist(Actor):
        async def receive(self, message: Any) -> Any:
            return await self.context.self_ref.ask("again")

    async with ActorSystem() as system:
        ref = await system.spawn(Narcissist)
        with pytest.raises(ActorCrashedError, match="asked itself"):
            await ref.ask("go")


async def test_refs_are_handed_out_not_built() -> None:
    with pytest.raises(TypeError, match="come from spawn"):
        ActorRef()


async def test_many_senders_each_keep_their_order() -> None:
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Record, log, mailbox_size=8)

        async def sender(k: int) -> None:
            for i in range(200):
                await ref.tell((k, i))

        async with anyio.create_task_group() as tg:
            for k in range(5):
                tg.start_soon(sender, k)
        await ref.ask(None)
    for k in range(5):
        assert [i for (s, i) in log[:-1] if s == k] == list(range(200))


async def test_ask_and_tell_from_inside_actors() -> None:
    class Forwarder(Actor):
        def __init__(self, target: ActorRef) -> None:
            self.target = target

        async def receive(self, message: Any) -> Any:
            return await self.target.ask(message) * 10

    log: list[Any] = []
    async with ActorSystem() as system:
        target = await system.spawn(Record, log)
        front = await system.spawn(Forwarder, target)
        assert await front.ask("x") == 10
        with pytest.raises(ActorCrashedError) as caught:
            await front.ask("crash")
        # the forwarder crashed because the target's crash reached it
        assert caught.value.type_name == "actorstage.exceptions.ActorCrashedError"


async def test_a_system_runs_only_once() -> None:
    system = ActorSystem()
    async with system:
        pass
    with pytest.raises(ActorstageError, match="already started"):
        async with system:
            pass
    with pytest.raises(ActorstageError, match="is not running"):
        await system.spawn(Record, [])


async def test_a_task_started_by_a_handler_may_ask_its_own_actor() -> None:
    class Spawner(Actor):
        def __init__(self) -> None:
            self.tasks: set[asyncio.Task[Any]] = set()

        async def receive(self, message: Any) -> Any:
            if message == "start":
                task = asyncio.ensure_future(self.context.self_ref.ask("from the side"))
                self.tasks.add(task)
                return None
            if message == "result":
                return await asyncio.gather(*self.tasks)
            return f"answered {message}"

    async with ActorSystem() as system:
        ref = await system.spawn(Spawner)
        await ref.ask("start")
        assert await ref.ask("result") == ["answered from the side"]


async def test_asking_itself_from_on_start_is_refused_too() -> None:
    class EagerNarcissist(Actor):
        async def on_start(self) -> None:
            await self.context.self_ref.ask("before my first message")

        async def receive(self, message: Any) -> Any:
            return message

    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError, match="asked itself"):
            with anyio.fail_after(5):
                await system.spawn(EagerNarcissist)


async def test_an_actor_that_only_takes_tells_and_asks_keeps_no_rare_part_and_no_task() -> None:
    # What an idle actor costs (docs/benchmarks.md) assumes it: the cell's rarely used part
    # is made only by what needs it (watchers, timers, restarts, process options,
    # an abandoned ask), and its mailbox loop runs only while it has work.
    log: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Record, log)
        await ref.tell("told")
        assert await ref.ask("asked") == 2
        await wait_until(lambda: ref._cell.drain_task is None)
        cell = ref._cell
        assert cell.rare is None and cell.queue is None and cell.current is None
        assert cell.process is None and cell.abandoned is None
    assert log == ["told", "asked"]
