"""Process actors with real child processes: messages, errors, restarts, signals."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from actorstage import (
    ActorCrashedError,
    ActorDeadError,
    ActorSystem,
    ChildSpec,
    InvalidDefinitionError,
    MessageEncodingError,
    ProcessOptions,
    Strategy,
    Supervisor,
)
from actorstage.testing import wait_until
from actorstage.transport._codec import BodyCodec
from actorstage.transport._grpc import BRIDGE_FRAME
from tests.transport.actors import (
    Add,
    Blob,
    Boss,
    Color,
    Config,
    Counter,
    FailsToStart,
    Mirror,
    Packed,
    PackedTagged,
    Parent,
    Point,
    Stamped,
    Total,
)
from tests.transport.helpers import FAST, supervised

pytestmark = pytest.mark.anyio



async def test_tell_and_ask_reach_an_actor_in_another_process() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, Config(start=10, label="ten"), process=True)
        assert await ref.ask("label") == "ten"  # a Struct argument arrived typed
        for amount in range(1, 101):
            await ref.tell(Add(amount))
        total = await ref.ask("total")
        assert isinstance(total, Total)
        assert total.value == 10 + 5050
        assert total.pid != os.getpid()
        assert await ref.ask("ppid") == os.getpid()
        assert await ref.ask({"plain": [1, 2.5, "x"]}) == {"plain": [1, 2.5, "x"]}
        assert await ref.ask("seen") == list(range(1, 101))  # in order
        node = system.tree().find(ref.path)
        assert node is not None and node.pid == total.pid


async def test_asks_and_replies_larger_than_the_http2_window_arrive_whole_and_in_order(
) -> None:
    # A lone ask, and its reply, are written at once from the step that makes them; one
    # larger than an HTTP/2 window (4 MiB) cannot go out whole that way, and the writer
    # finishes it before anything queued after it.
    async with ActorSystem() as system:
        ref = await system.spawn(Mirror, process=True)
        big = "x" * (6 * 1024 * 1024)
        for number in range(3):
            assert await ref.ask(f"{number}{big}") == f"{number}{big}"
        asked = [f"{number}{big}" if number % 3 == 0 else number for number in range(12)]
        assert await asyncio.gather(*(ref.ask(message) for message in asked)) == asked
        await ref.tell(big)
        assert await ref.ask("pid") != os.getpid()
        # Past the hello, both ends take frames of up to BRIDGE_FRAME, not HTTP/2's 16 KiB:
        # a bridge message goes in one frame, one write.
        link: Any = getattr(ref._cell.actor, "link", None)
        h2_connection = link.conn._stream._stream.connection._connection
        assert h2_connection.max_outbound_frame_size == BRIDGE_FRAME
        assert h2_connection.max_inbound_frame_size == BRIDGE_FRAME


async def test_a_crash_fails_the_ask_with_the_remote_traceback_and_restarts_the_child() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        first_pid = await ref.ask("pid")
        await ref.tell(Add(5))
        with pytest.raises(ActorCrashedError) as caught:
            await ref.ask("crash")
        error = caught.value
        assert error.type_name == "ValueError"
        assert error.error_message == "asked to crash"
        assert 'raise ValueError("asked to crash")' in error.traceback
        assert error.path == ref.path
        total = await ref.ask("total")  # a new incarnation: a new process, fresh state
        assert total.value == 0
        assert total.pid != first_pid


async def test_messages_queued_behind_a_crash_go_to_the_next_incarnation_in_order() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        await ref.tell("crash")
        for amount in range(1, 21):
            await ref.tell(Add(amount))
        assert await ref.ask("seen") == list(range(1, 21))


async def test_a_failing_on_start_fails_spawn_with_the_remote_error() -> None:
    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError) as caught:
            await system.spawn(FailsToStart, process=FAST)
        assert caught.value.type_name == "RuntimeError"
        assert caught.value.during == "starting"
        assert "cannot start here" in caught.value.traceback


@pytest.mark.parametrize("how", ["sys.exit", "os._exit", "kill-self"])
async def test_a_child_that_dies_is_reported_and_restarted(how: str) -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        pid = await ref.ask("pid")
        with pytest.raises((ActorCrashedError, ActorDeadError)) as caught:
            await ref.ask(how)
        if how == "kill-self":
            assert isinstance(caught.value, ActorCrashedError)
            assert caught.value.type_name == "ProcessKilled"
            assert "SIGKILL" in caught.value.error_message
        else:  # the status the child asked for, not a generic failure
            assert isinstance(caught.value, ActorCrashedError)
            assert caught.value.type_name == "ProcessExited"
            assert caught.value.error_message.endswith(
                f"exited with status {3 if how == 'sys.exit' else 4}")
        new_pid = await ref.ask("pid")
        assert new_pid != pid


async def test_sigkill_from_outside_fails_pending_asks_promptly() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        pid = await ref.ask("pid")
        async with anyio.create_task_group() as tg:
            results: list[BaseException] = []

            async def ask_slow() -> None:
                try:
                    await ref.ask(["sleep", 30, "/dev/null"])
                except Exception as exc:
                    results.append(exc)

            tg.start_soon(ask_slow)
            await wait_until(lambda: bool(getattr(ref._cell.actor, "link", None)
                                          and ref._cell.actor.link.pending))  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(5):
                await wait_until(lambda: bool(results))
        assert isinstance(results[0], ActorCrashedError)
        assert "SIGKILL" in results[0].error_message
        assert await ref.ask("pid") != pid


async def test_a_frozen_child_is_killed_after_the_heartbeat_timeout_and_restarted() -> None:
    async with ActorSystem() as system:
        ref = await supervised(system, Counter, FAST)
        pid = await ref.ask("pid")
        os.kill(pid, signal.SIGSTOP)
        with anyio.fail_after(10):
            await wait_until(lambda: ref._cell.restarts >= 1 and ref._cell.actor is not None
                             and getattr(ref._cell.actor, "pid", pid) != pid)
            assert await ref.ask("pid") != pid


async def test_a_long_handler_is_cancelled_when_the_askers_deadline_passes(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.5):
                await ref.ask(["sleep", 30, str(marker)])
        with anyio.fail_after(5):
            await wait_until(lambda: marker.exists() and marker.read_text() == "cancelled")
        assert await ref.ask("label") == ""  # the actor goes on


async def test_asyncio_timeout_also_cancels_the_remote_handler(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await ref.ask(["sleep", 30, str(marker)])
        with anyio.fail_after(5):
            await wait_until(lambda: marker.exists() and marker.read_text() == "cancelled")
        assert await ref.ask("label") == ""


async def test_pause_holds_messages_in_the_child_until_resume() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        await ref.ask("total")
        await system.pause(ref)
        for amount in (1, 2, 3):
            await ref.tell(Add(amount))
        answered: list[Any] = []
        async with anyio.create_task_group() as tg:
            async def ask() -> None:
                answered.append(await ref.ask("seen"))

            tg.start_soon(ask)
            with anyio.move_on_after(0.5):
                await wait_until(lambda: bool(answered))
            assert not answered  # paused: nothing was handled
            await system.resume(ref)
        assert answered == [[1, 2, 3]]


async def test_stop_ends_the_child_process_and_dead_letters_what_is_left() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        pid = await ref.ask("pid")
        await system.stop(ref)
        with pytest.raises(ActorDeadError):
            await ref.ask("total")
        await ref.tell(Add(1))
        assert system.dead_letters.count >= 1
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_supervisor_restarts_process_children_by_strategy() -> None:
    async with ActorSystem() as system:
        sup = await system.spawn(
            Supervisor, strategy=Strategy.ONE_FOR_ALL,
            children=[ChildSpec("a", Counter, process=FAST), ChildSpec("b", Counter)],
        )
        a, b = system.lookup(f"{sup.path}/a"), system.lookup(f"{sup.path}/b")
        assert a is not None and b is not None
        pid = await a.ask("pid")
        await b.tell(Add(1))
        with pytest.raises(ActorCrashedError):
            await a.ask("crash")
        with anyio.fail_after(10):
            await wait_until(lambda: b._cell.restarts == 1 and a._cell.restarts == 1)
        assert (await b.ask("total")).value == 0  # one_for_all restarted the local sibling
        assert await a.ask("pid") != pid


async def test_grandchildren_run_in_their_own_processes() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Parent, process=FAST)
        child_pid, child_ppid, grandchild_pid, grandchild_ppid = await ref.ask("pids")
        assert len({os.getpid(), child_pid, grandchild_pid}) == 3
        assert (child_ppid, grandchild_ppid) == (os.getpid(), child_pid)
        assert (await ref.ask(Add(2))).value == 2
        await system.stop(ref)


@pytest.mark.parametrize("start", ["spawn", "forkserver"])
async def test_child_logging_and_print_reach_the_parent(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], start: str
) -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=msgspec.structs.replace(FAST, start=start))
        pid = await ref.ask("pid")
        await ref.ask("log")
        with anyio.fail_after(5):
            await wait_until(lambda: any("a warning from the child" in r.getMessage()
                                         for r in caplog.records))
    record = next(r for r in caplog.records if "a warning from the child" in r.getMessage())
    assert record.name == "tests.child"
    assert record.process == pid
    assert record.__dict__["actor_path"] == ref.path
    assert record.getMessage() == f"[{ref.path} pid {pid}] a warning from the child"
    assert "a line printed by the child" in capfd.readouterr().out


async def test_a_child_crash_log_names_the_path_once(caplog: pytest.LogCaptureFixture) -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        pid = await ref.ask("pid")
        with pytest.raises(ActorCrashedError):
            await ref.ask("crash")
        with anyio.fail_after(5):
            await wait_until(lambda: any(getattr(r, "child_pid", None) == pid
                                         and "crashed" in r.getMessage()
                                         for r in caplog.records))
    crash = next(r for r in caplog.records
                 if getattr(r, "child_pid", None) == pid and "crashed" in r.getMessage())
    text = crash.getMessage()
    assert text.startswith(f"[pid {pid}] ") and text.count(ref.path) == 1, text


async def test_bad_messages_are_refused_at_the_call_with_a_clear_error() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        with pytest.raises(MessageEncodingError, match="object"):
            await ref.tell(object())
        with pytest.raises(MessageEncodingError):
            await ref.ask(lambda: None)
        assert await ref.ask("label") == ""


async def test_spawn_refuses_what_a_child_could_not_import() -> None:
    class Local(Counter):
        pass

    async with ActorSystem() as system:
        with pytest.raises(InvalidDefinitionError, match="inside a function"):
            await system.spawn(Local, process=True)
        with pytest.raises(InvalidDefinitionError, match="arguments"):
            await system.spawn(Counter, object(), process=True)
        with pytest.raises(InvalidDefinitionError, match="transport"):
            ProcessOptions(transport="pigeon")  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["tcp", "stdio"])
async def test_other_transports_carry_the_same_traffic(transport: str) -> None:
    options = ProcessOptions(transport=transport, heartbeat_interval=0.2,  # type: ignore[arg-type]
                             heartbeat_timeout=1.5)
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=options)
        for amount in range(1, 51):
            await ref.tell(Add(amount))
        assert (await ref.ask("total")).value == 1275
        await ref.ask("log")
        with pytest.raises(ActorCrashedError):
            await ref.ask("crash")
        assert (await ref.ask("total")).value == 0


async def test_a_child_sends_its_parent_actor_messages_with_backpressure(tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    async with ActorSystem() as system:
        boss = await system.spawn(Boss, mailbox_size=5)
        reporter = system.lookup(f"{boss.path}/reporter")
        assert reporter is not None
        node = system.tree().find(reporter.path)
        assert node is not None and node.pid != os.getpid()
        assert await reporter.ask("ask-parent") == f"boss answered {node.pid}"
        actor = boss._cell.actor
        assert isinstance(actor, Boss)
        actor.gate.clear()  # the boss stops taking messages out of its mailbox
        await boss.tell(["flood", 60, str(progress)])
        with anyio.fail_after(10):
            await wait_until(lambda: _count(progress) >= 5)
        await anyio.sleep(1.0)
        sent = _count(progress)
        # The boss's mailbox (5) is the child's credit window; its own root's queue (5)
        # holds what waits for credits, and then the child's tell waits.
        assert sent <= 12, sent
        queued = boss._cell.queue
        assert queued is not None and len(queued) <= 5 + 5
        actor.gate.set()
        with anyio.fail_after(10):
            await wait_until(lambda: len(actor.received) == 60)
        assert await boss.ask("received") == list(range(60))  # all of them, in order


def _count(progress: Path) -> int:
    text = progress.read_text() if progress.exists() else ""
    return int(text) if text else 0  # (empty while the child rewrites it)


async def test_a_child_sees_no_parent_ref_when_the_parent_takes_no_messages() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=True)
        assert await ref.ask("has-parent") is False
        child = await supervised(system, Counter, True)
        assert await child.ask("has-parent") is False



async def test_a_supervisor_cannot_be_a_process_actor_yet_and_says_so() -> None:
    async with ActorSystem() as system:
        with pytest.raises(InvalidDefinitionError, match="supervisor, which cannot run in a child"):
            await system.spawn(Supervisor, children=[ChildSpec("c", Counter)], process=True)
        assert system.tree().children == ()
    with pytest.raises(InvalidDefinitionError, match="ChildSpec 'sub': a supervisor cannot"):
        ChildSpec("sub", Supervisor, process=True)


async def test_values_keep_their_type_across_the_boundary() -> None:
    """Equal and of the same type on arrival, at any depth (docs: "What can cross")."""
    sent = [
        (1, 2), {1, 2}, frozenset({3}), bytearray(b"x"), b"ab", {1: "a"}, None, 1.5, True,
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.date(2026, 1, 2), datetime.time(1, 2, 3), datetime.timedelta(days=2, seconds=3),
        uuid.UUID(int=5), decimal.Decimal("1.50"), Color.RED, Point(1, (2, 3)),
        Stamped(when=datetime.datetime(2026, 1, 1), pair=(1, 2), extra={"tags": {"a"}}),
        [Stamped(when=datetime.datetime(2026, 1, 1), pair=(3, 4), extra=(Color.RED,))],
        Packed("p", (1, {2})), PackedTagged("t", [datetime.date(2026, 1, 3)]),
        {(1, 2): {"n": frozenset()}, "nested": [[(1,)]]},
    ]
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        for value in sent:
            got = await ref.ask(value)  # Counter answers what it is sent, as it received it
            assert got == value and type(got) is type(value), (value, got)
        local = await system.spawn(Counter)
        assert await ref.ask(local) is local  # a ref, too (see test_refs.py)
        with pytest.raises(MessageEncodingError, match="object"):
            await ref.ask([1, object()])


async def test_a_prepared_codec_writes_and_reads_each_class_as_it_would_unprepared() -> None:
    # prepare() only works out ahead what the first message of a class would.
    values = [Add(3), Stamped(when=datetime.datetime(2026, 1, 1), pair=(1, 2), extra={1}),
              Blob("small", b"x")]
    prepared, plain = BodyCodec(), BodyCodec()
    prepared.prepare(Add, Stamped, Blob)
    for value in values:
        name, body = prepared.encode(value)
        assert (name, body) == plain.encode(value)
        got = prepared.decode(name, body)
        assert got == value and type(got) is type(value)
    # A class with a bytes field is still looked at on each send (a large payload goes
    # through shared memory): it is not among the classes that travel without a look.
    assert Add in prepared._names and Blob not in prepared._names
