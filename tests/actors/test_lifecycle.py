"""Hooks, stop, dead letters, watch, timers, the tree, and closing the system."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from actorstage import (
    Actor,
    ActorCrashedError,
    ActorDeadError,
    ActorStatus,
    ActorSystem,
    ExitReason,
    InvalidDefinitionError,
    Terminated,
)
from actorstage.testing import Probe, wait_until

pytestmark = pytest.mark.anyio


class Hooks(Actor):
    """Logs its hooks and messages into a shared list."""

    def __init__(self, log: list[str], tag: str = "a") -> None:
        self.log = log
        self.tag = tag

    async def on_start(self) -> None:
        self.log.append(f"start {self.tag}")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.tag}")

    async def on_pause(self) -> None:
        self.log.append(f"pause {self.tag}")

    async def on_resume(self) -> None:
        self.log.append(f"resume {self.tag}")

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash requested")
        if message == "exit":
            self.context.stop()
            return "bye"
        self.log.append(f"{self.tag} got {message}")
        return message


class Blocker(Actor):
    def __init__(self, started: asyncio.Event, release: asyncio.Event) -> None:
        self.started = started
        self.release = release

    async def receive(self, message: Any) -> Any:
        self.started.set()
        await self.release.wait()
        return message


async def test_hooks_run_in_order_and_spawn_waits_for_on_start() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Hooks, log, name="h")
        assert log == ["start a"]  # spawn returned after on_start
        assert ref.path == "/user/h"
        await ref.ask(1)
        await system.stop(ref)
        assert log == ["start a", "a got 1", "stop a"]


async def test_failing_start_raises_and_leaves_nothing() -> None:
    class BadStart(Actor):
        async def on_start(self) -> None:
            raise OSError("port taken")

        async def receive(self, message: Any) -> Any:
            return message

    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError, match=r"crashed starting: OSError: port taken"):
            await system.spawn(BadStart, name="bad")
        assert system.lookup("/user/bad") is None
        assert system.tree().children == ()
        await system.spawn(Hooks, [], name="bad")  # the name is free again


async def test_bad_definitions_are_refused_with_the_reason() -> None:
    class NoReceive(Actor):
        pass

    async with ActorSystem() as system:
        with pytest.raises(InvalidDefinitionError, match="does not define `async def receive"):
            await system.spawn(NoReceive)
        with pytest.raises(InvalidDefinitionError, match="is not an Actor subclass"):
            await system.spawn(int)  # type: ignore[call-arg, arg-type]
        with pytest.raises(InvalidDefinitionError, match="invalid actor name 'a/b'"):
            await system.spawn(Hooks, [], name="a/b")
        with pytest.raises(InvalidDefinitionError, match="mailbox_size must be a positive int"):
            await system.spawn(Hooks, [], mailbox_size=0)
        await system.spawn(Hooks, [], name="twin")
        with pytest.raises(InvalidDefinitionError, match="'twin' already runs under '/user'"):
            await system.spawn(Hooks, [], name="twin")
    with pytest.raises(InvalidDefinitionError, match="mailbox_size"):
        ActorSystem(mailbox_size=-1)


class Named(Actor):
    def __init__(self, name: str, process: str = "default") -> None:
        self.value = (name, process)

    async def receive(self, message: Any) -> Any:
        return self.value


async def test_constructor_arguments_are_checked_and_never_confused_with_spawn_options(
) -> None:
    from actorstage import Supervisor

    async with ActorSystem() as system:
        with pytest.raises(InvalidDefinitionError, match=r"Named\(name, process='default'\) "
                           r"cannot take these arguments: missing a required argument: "
                           r"'name'; spawn\(\) keeps name= for itself"):
            await system.spawn(Named, name="alice")
        with pytest.raises(InvalidDefinitionError, match="too many positional arguments"):
            await system.spawn(Named, "a", "b", "c")  # type: ignore[call-arg, arg-type]
        with pytest.raises(InvalidDefinitionError, match="unexpected keyword argument 'nme'"):
            await system.spawn(Named, "a", nme="a")  # type: ignore[call-arg]
        with pytest.raises(InvalidDefinitionError, match="constructor has a parameter 'process'"):
            await system.spawn(Named, "alice", process=False)  # left to its default: ambiguous
        ref = await system.spawn(Named, "bob", name="alice")  # said positionally: no doubt
        assert await ref.ask("?") == ("bob", "default")
        assert system.lookup("/user/alice") is not None
        # Constructor-time refusals are definition errors, not crashes (nothing started).
        with pytest.raises(InvalidDefinitionError, match="max_restarts must be an int >= 0"):
            await system.spawn(Supervisor, max_restarts=-1)
        assert [node.name for node in system.tree().children] == ["alice"]


async def test_stop_fails_pending_asks_and_dead_letters_the_queue() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(Blocker, started, release)
        in_hand = asyncio.ensure_future(ref.ask("in hand"))
        await started.wait()
        queued_ask = asyncio.ensure_future(ref.ask("queued"))
        await wait_until(lambda: bool(ref._cell.queue))
        await ref.tell("queued tell")
        async with system.dead_letters.subscribe() as letters:
            stopping = asyncio.ensure_future(system.stop(ref))
            await asyncio.sleep(0)
            release.set()  # the message in hand finishes within the shutdown timeout
            await stopping
            assert await in_hand == "in hand"
            with pytest.raises(ActorDeadError, match=r"is not running \(stopped\)"):
                await queued_ask
            got = [await letters.__anext__(), await letters.__anext__()]
        assert [(d.message, d.reason) for d in got] == [("queued", "stopped"),
                                                         ("queued tell", "stopped")]
        assert all(d.recipient == ref for d in got)
        # after the stop: tell is a dead letter, ask raises
        await ref.tell("late")
        ref.tell_nowait("later")
        with pytest.raises(ActorDeadError):
            await ref.ask("too late")
        assert system.dead_letters.count == 5
        assert system.dead_letters.by_reason() == {"stopped": 5}
        assert system.lookup(ref.path) is None


async def test_stop_cancels_a_handler_after_the_shutdown_timeout() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    async with ActorSystem(shutdown_timeout=0.05) as system:
        ref = await system.spawn(Blocker, started, release)
        pending = asyncio.ensure_future(ref.ask("forever"))
        await started.wait()
        await system.stop(ref)
        with pytest.raises(ActorDeadError, match="stopped while handling"):
            await pending


async def test_a_handler_that_swallows_cancellation_is_abandoned_not_awaited_forever() -> None:
    class Stubborn(Actor):
        async def receive(self, message: Any) -> Any:
            for _ in range(3):
                try:  # noqa: SIM105 - swallowing cancellation is what this actor is for
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    pass
            return None

    async with ActorSystem(shutdown_timeout=0.01) as system:
        ref = await system.spawn(Stubborn)
        await ref.tell("go")
        with anyio.fail_after(5):
            await system.stop(ref)
        assert system.lookup(ref.path) is None


async def test_watch_delivers_terminated_exactly_once() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        probe = await Probe.spawn(system)
        ref = await system.spawn(Hooks, log)
        probe.watch(ref)
        probe.watch(ref)  # idempotent
        await system.stop(ref)
        note = await probe.expect_terminated(ref)
        assert note == Terminated(ref, ExitReason.STOPPED)
        probe.watch(ref)  # already dead: delivered at once, once
        late = await probe.expect(Terminated)
        assert late.reason is ExitReason.STOPPED
        other = await system.spawn(Hooks, log)
        await other.ask("flush")
        await system.stop(other)
        await probe.sync()
        assert probe.pending() == 0
        assert [m for m in probe.received if isinstance(m, Terminated)] == [note, late]


async def test_terminated_carries_the_crash_after_restarts_run_out() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        probe = await Probe.spawn(system)
        ref = await system.spawn(Hooks, log)
        probe.watch(ref)
        for _ in range(3):  # restarted three times
            with pytest.raises(ActorCrashedError):
                await ref.ask("crash")
            assert await ref.ask("ping") == "ping"
        with pytest.raises(ActorCrashedError):
            await ref.ask("crash")  # the fourth crash within 5 s stops it
        note = await probe.expect_terminated(ref)
        assert note.reason is ExitReason.CRASHED
        assert note.error is not None and note.error.error_message == "crash requested"
        with pytest.raises(ActorDeadError):
            await ref.ask("ping")


async def test_normal_exit_of_a_plain_actor_is_final() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        probe = await Probe.spawn(system)
        ref = await system.spawn(Hooks, log)
        probe.watch(ref)
        assert await ref.ask("exit") == "bye"
        assert (await probe.expect_terminated(ref)).reason is ExitReason.NORMAL
    assert log == ["start a", "stop a"]


async def test_children_stop_before_their_parent_in_reverse_order() -> None:
    log: list[str] = []

    class Parent(Hooks):
        async def on_start(self) -> None:
            await super().on_start()
            for tag in ("c1", "c2", "c3"):
                await self.context.spawn(Hooks, self.log, tag, name=tag)

    async with ActorSystem() as system:
        await system.spawn(Parent, log, "p", name="p")
        assert system.lookup("/user/p/c2") is not None
        assert [n.path for n in system.tree().walk()] == [
            "/user", "/user/p", "/user/p/c1", "/user/p/c2", "/user/p/c3"]
    assert log == ["start p", "start c1", "start c2", "start c3",
                   "stop c3", "stop c2", "stop c1", "stop p"]


async def test_closing_the_system_stops_top_level_actors_in_reverse_order() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        for tag in "xyz":
            await system.spawn(Hooks, log, tag)
    assert log == ["start x", "start y", "start z", "stop z", "stop y", "stop x"]


async def test_the_mailbox_survives_a_restart() -> None:
    log: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    class CrashAfterGate(Actor):
        async def receive(self, message: Any) -> Any:
            if message == "gate":
                started.set()
                await release.wait()
                raise RuntimeError("crash with work queued")
            log.append(message)
            return message

    async with ActorSystem() as system:
        ref = await system.spawn(CrashAfterGate)
        crashing = asyncio.ensure_future(ref.ask("gate"))
        await started.wait()
        for i in range(5):
            await ref.tell(i)
        pending = asyncio.ensure_future(ref.ask("asked while crashing"))
        release.set()
        with pytest.raises(ActorCrashedError):
            await crashing
        assert await pending == "asked while crashing"
        assert log == [0, 1, 2, 3, 4, "asked while crashing"]
        assert system.dead_letters.count == 0


async def test_timers_deliver_and_die_with_the_incarnation() -> None:
    class Ticker(Actor):
        def __init__(self, probe: Any) -> None:
            self.probe = probe

        async def on_start(self) -> None:
            self.context.send_every(0.01, "tick")
            self.context.send_after(0.02, "once")

        async def receive(self, message: Any) -> Any:
            await self.probe.tell((self.context.restarts, message))
            if message == "crash":
                raise RuntimeError("restart me")

    async with ActorSystem() as system:
        probe = await Probe.spawn(system)
        ref = await system.spawn(Ticker, probe.ref)
        await probe.expect(tuple, lambda m: m == (0, "once"))
        await probe.expect(tuple, lambda m: m == (0, "tick"))
        await ref.tell("crash")
        await probe.expect(tuple, lambda m: m == (1, "once"))  # new incarnation, new timers
        await system.stop(ref)
        assert not ref._cell.timers
        await probe.sync()
        seen = len(probe.received) + probe.pending()
        await asyncio.sleep(0.05)
        await probe.sync()
        assert len(probe.received) + probe.pending() == seen  # nothing after the stop


async def test_repeating_ticks_do_not_pile_up_while_paused() -> None:
    ticks: list[str] = []

    class Ticker(Actor):
        async def on_start(self) -> None:
            self.context.send_every(0.005, "tick")

        async def receive(self, message: Any) -> Any:
            ticks.append(message)
            return len(ticks)

    async with ActorSystem() as system:
        ref = await system.spawn(Ticker)
        await system.pause(ref)
        before = len(ticks)
        await asyncio.sleep(0.1)  # twenty intervals pass while paused
        assert len(ref._cell.queue or ()) == 1  # one tick waits, the rest were skipped
        await system.resume(ref)
        count = await ref.ask("probe")
        assert count >= before + 2
        assert system.dead_letters.count == 0


async def test_tree_and_lookup_show_status_and_restarts() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Hooks, [], name="w")
        with pytest.raises(ActorCrashedError):
            await ref.ask("crash")
        await ref.ask("ok")
        await system.pause(ref)
        node = system.tree().find("/user/w")
        assert node is not None
        assert (node.status, node.restarts, node.kind, node.actor_type) == (
            ActorStatus.PAUSED, 1, "actor", "Hooks")
        assert system.lookup("/user/w") == ref
        assert system.lookup("/user/nope") is None
        assert system.lookup("/elsewhere/w") is None
        await system.resume(ref)
        assert system.tree().find("/user/w").status is ActorStatus.RUNNING  # type: ignore[union-attr]


async def test_context_stop_outside_a_handler_exits_now() -> None:
    class Quitter(Actor):
        async def on_start(self) -> None:
            self.context.send_after(0, "quit")

        async def receive(self, message: Any) -> Any:
            if message == "quit":
                return None
            return message

    async with ActorSystem() as system:
        probe = await Probe.spawn(system)
        ref = await system.spawn(Quitter)
        probe.watch(ref)
        cell_ctx = ref._cell.actor.context  # type: ignore[union-attr]
        cell_ctx.stop()
        assert (await probe.expect_terminated(ref)).reason is ExitReason.NORMAL


async def test_stop_requested_in_on_start_is_honoured_after_a_restart_too() -> None:
    class QuitsOnRestart(Actor):
        async def on_start(self) -> None:
            if self.context.restarts:
                self.context.stop()

        async def receive(self, message: Any) -> Any:
            raise RuntimeError("crash once")

    async with ActorSystem() as system:
        probe = await Probe.spawn(system)
        ref = await system.spawn(QuitsOnRestart)
        probe.watch(ref)
        with pytest.raises(ActorCrashedError):
            await ref.ask("go")
        note = await probe.expect_terminated(ref)
        assert note.reason is ExitReason.NORMAL


async def test_a_crash_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Hooks, [], name="logged")
        await ref.tell("crash")
        await ref.ask("after")  # handled by the restarted incarnation
    records = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert records[0].getMessage() == (
        "actor /user/logged crashed: RuntimeError('crash requested')")
    assert records[0].exc_info is not None
    assert "raise RuntimeError" in caplog.text


async def test_the_tree_snapshot_encodes_to_json() -> None:
    import msgspec

    async with ActorSystem() as system:
        await system.spawn(Hooks, [], name="w")
        data = msgspec.json.decode(msgspec.json.encode(system.tree()))
    assert data["path"] == "/user"
    assert data["children"][0] == {
        "path": "/user/w", "name": "w", "kind": "actor", "actor_type": "Hooks",
        "status": "running", "restarts": 0, "queued": 0, "children": [], "pid": None}


async def test_no_task_outlives_its_actor_while_the_system_runs() -> None:
    from actorstage.testing import leftover_tasks

    class Busy(Actor):
        async def on_start(self) -> None:
            self.context.send_every(0.001, "tick")
            for i in range(3):
                await self.context.spawn(Hooks, [], f"c{i}", name=f"c{i}")

        async def receive(self, message: Any) -> Any:
            await asyncio.sleep(0)
            return message

    async with ActorSystem() as system:
        before = set(asyncio.all_tasks())
        ref = await system.spawn(Busy)
        for i in range(100):
            await ref.tell(i)
        assert leftover_tasks(before)  # it is working
        await system.stop(ref)
        for _ in range(3):
            await asyncio.sleep(0)
        assert leftover_tasks(before) == []
        assert system.tree().children == ()
