"""OTP supervision with real actors: strategies, restart types, order, escalation, shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import pytest

from actorstage import (
    Actor,
    ActorCrashedError,
    ActorDeadError,
    ActorSystem,
    Backoff,
    ChildSpec,
    ExitReason,
    InvalidDefinitionError,
    Restart,
    Strategy,
    Supervisor,
    SupervisorRef,
    Terminated,
    UnknownChildError,
)
from actorstage.testing import Probe, wait_until

from .helpers import Worker, settle

pytestmark = pytest.mark.anyio


def specs(log: list[str], *tags: str, restart: Restart = Restart.PERMANENT) -> list[ChildSpec]:
    return [ChildSpec(tag, Worker, (log, tag), restart=restart) for tag in tags]


async def exit_child(system: ActorSystem, path: str, how: str) -> None:
    ref = system.lookup(path)
    assert ref is not None
    if how == "crash":
        with pytest.raises(ActorCrashedError):
            await ref.ask("crash")
    elif how == "exit":
        await ref.ask("exit")
    else:
        await system.stop(ref)


# Expected restarts of b (the middle child of a, b, c) and who else restarts,
# per OTP, for each restart type and way of exiting.
RESTARTED = {
    (Restart.PERMANENT, "crash"): True,
    (Restart.PERMANENT, "exit"): True,
    (Restart.PERMANENT, "stop"): False,
    (Restart.TRANSIENT, "crash"): True,
    (Restart.TRANSIENT, "exit"): False,
    (Restart.TRANSIENT, "stop"): False,
    (Restart.TEMPORARY, "crash"): False,
    (Restart.TEMPORARY, "exit"): False,
    (Restart.TEMPORARY, "stop"): False,
}
GROUP = {
    Strategy.ONE_FOR_ONE: ["b"],
    Strategy.ONE_FOR_ALL: ["a", "b", "c"],
    Strategy.REST_FOR_ONE: ["b", "c"],
}


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("restart", list(Restart))
@pytest.mark.parametrize("how", ["crash", "exit", "stop"])
async def test_each_strategy_restart_type_and_exit(
    strategy: Strategy, restart: Restart, how: str
) -> None:
    log: list[str] = []
    children = [
        ChildSpec("a", Worker, (log, "a")),
        ChildSpec("b", Worker, (log, "b"), restart=restart),
        ChildSpec("c", Worker, (log, "c")),
    ]
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="s", strategy=strategy, children=children)
        assert log == ["start a", "start b", "start c"]
        log.clear()
        await exit_child(system, "/user/s/b", how)
        await settle(system)
        restarted = RESTARTED[(restart, how)]
        group = GROUP[strategy] if restarted else []
        stopped = list(reversed(group)) if restarted else ["b"]
        expected = [f"stop {t}" for t in stopped] + [f"start {t}" for t in group]
        assert log == expected
        alive = {n.name for n in system.tree().find("/user/s").children}  # type: ignore[union-attr]
        assert ("b" in alive) == restarted
        assert alive >= {"a", "c"}
        sup = system.lookup("/user/s")
        assert isinstance(sup, SupervisorRef)
        assert [c.id for c in sup.which_children()] == [t for t in "abc" if t in alive]


async def test_temporary_siblings_are_not_restarted_by_a_group_restart() -> None:
    log: list[str] = []
    children = [
        ChildSpec("a", Worker, (log, "a"), restart=Restart.TEMPORARY),
        ChildSpec("b", Worker, (log, "b")),
    ]
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="s", strategy=Strategy.ONE_FOR_ALL, children=children)
        log.clear()
        await exit_child(system, "/user/s/b", "crash")
        await settle(system)
        assert log == ["stop b", "stop a", "start b"]
        assert system.lookup("/user/s/a") is None


async def test_intensity_exceeded_stops_children_in_reverse_and_escalates() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        probe = await Probe.spawn(system)
        sup = await system.spawn(Supervisor, name="s", max_restarts=2, within=60,
                                 children=specs(log, "a", "b", "c"))
        probe.watch(sup)
        for _ in range(2):
            await exit_child(system, "/user/s/b", "crash")
            await settle(system)
        log.clear()
        await exit_child(system, "/user/s/b", "crash")  # the third restart is one too many
        # the top-level supervisor is then restarted by the system, which starts all again
        await wait_until(lambda: sup._cell.restarts == 1)
        await settle(system)
        assert log == ["stop c", "stop b", "stop a", "start a", "start b", "start c"]
        assert sup._cell.restarts == 1
        await probe.sync()
        assert probe.pending() == 0  # restarted, not terminated


async def test_escalation_climbs_a_tree_three_levels_deep() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="top", max_restarts=5, within=60, children=[
            ChildSpec("keep", Worker, (log, "keep")),
            ChildSpec("mid", Supervisor, kwargs={"max_restarts": 0, "within": 60, "children": [
                ChildSpec("low", Supervisor, kwargs={"max_restarts": 0, "within": 60,
                                               "children": specs(log, "w1", "w2")}),
                ChildSpec("m", Worker, (log, "m")),
            ]}),
        ])
        assert log == ["start keep", "start w1", "start w2", "start m"]
        log.clear()
        probe = await Probe.spawn(system)
        mid = system.lookup("/user/top/mid")
        assert mid is not None
        probe.watch(mid)
        await exit_child(system, "/user/top/mid/low/w1", "crash")
        # low gives up (0 restarts allowed): stops w2, then the crashed w1; mid gives up:
        # stops m; top restarts mid, which starts its whole subtree again, in order
        await settle(system)
        assert log == ["stop w2", "stop w1", "stop m", "start w1", "start w2", "start m"]
        assert "stop keep" not in log
        tree = system.tree()
        assert tree.find("/user/top/mid").restarts == 1  # type: ignore[union-attr]
        assert tree.find("/user/top/keep").restarts == 0  # type: ignore[union-attr]
        await probe.sync()
        assert probe.pending() == 0  # a restarted supervisor is not terminated


async def test_a_failing_child_fails_the_supervisors_start() -> None:
    log: list[str] = []
    control = {"fail_start": 1}
    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError, match="b cannot start"):
            await system.spawn(Supervisor, name="s", children=[
                ChildSpec("a", Worker, (log, "a")),
                ChildSpec("b", Worker, (log, "b", control)),
                ChildSpec("c", Worker, (log, "c")),
            ])
        assert log == ["start a", "stop a"]
        assert system.lookup("/user/s") is None


async def test_a_child_failing_to_restart_counts_toward_intensity() -> None:
    log: list[str] = []
    control: dict[str, Any] = {}
    async with ActorSystem() as system:
        probe = await Probe.spawn(system)
        sup = await system.spawn(Supervisor, name="s", max_restarts=3, within=60,
                                 strategy=Strategy.ONE_FOR_ALL, children=[
                                     ChildSpec("a", Worker, (log, "a")),
                                     ChildSpec("b", Worker, (log, "b", control)),
                                 ])
        log.clear()
        control["fail_start"] = 2  # b fails to start twice, then starts
        await exit_child(system, "/user/s/a", "crash")
        await settle(system)
        assert log == ["stop b", "stop a", "start a", "stop a", "start a", "stop a",
                       "start a", "start b"]
        assert sup._cell.restarts == 0  # three restarts: still within the intensity
        control["fail_start"] = 99  # now b never starts: the supervisor must give up
        probe.watch(sup)
        await exit_child(system, "/user/s/a", "crash")
        # b's failed starts exhaust s, which escalates; the system restarts s, whose start
        # fails on b again, until the system's own limit stops s for good
        note = await probe.expect_terminated(sup)
        assert note.reason is ExitReason.CRASHED
        assert note.error is not None and "b cannot start" in note.error.error_message
        assert system.lookup("/user/s") is None


async def test_shutdown_timeout_then_cancellation_and_brutal_kill() -> None:
    started = asyncio.Event()
    stopped: list[str] = []

    class Hang(Actor):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        async def on_stop(self) -> None:
            stopped.append(self.tag)

        async def receive(self, message: Any) -> Any:
            started.set()
            await asyncio.Event().wait()

    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", children=[
            ChildSpec("graceful", Hang, ("graceful",), shutdown=0.1),
            ChildSpec("brutal", Hang, ("brutal",), shutdown=None),
        ])
        for child_id in ("graceful", "brutal"):
            started.clear()
            ref = system.lookup(f"/user/s/{child_id}")
            assert ref is not None
            pending = asyncio.ensure_future(ref.ask("hang"))
            await started.wait()
            begun = time.monotonic()
            await sup.terminate_child(child_id)
            took = time.monotonic() - begun
            with pytest.raises(ActorDeadError, match="stopped while handling"):
                await pending
            if child_id == "graceful":
                assert took >= 0.09  # its shutdown timeout (uvloop's timers round to 1 ms)
            else:
                assert took < 2.5  # no grace at all (the default would be 5 s)
        assert stopped == ["graceful"]  # brutal kill skips on_stop


async def test_dynamic_children() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", children=specs(log, "a"))
        ref = await sup.start_child(ChildSpec("d", Worker, (log, "d")))
        assert await ref.ask("hi") == ("d", "hi")
        assert [c.id for c in sup.which_children()] == ["a", "d"]
        count = sup.count_children()
        assert (count.specs, count.active, count.workers, count.supervisors) == (2, 2, 2, 0)
        with pytest.raises(InvalidDefinitionError, match="already has a child 'd'"):
            await sup.start_child(ChildSpec("d", Worker, (log, "d")))
        with pytest.raises(ActorCrashedError, match="x cannot start"):
            await sup.start_child(ChildSpec("x", Worker, (log, "x", {"fail_start": 1})))
        assert [c.id for c in sup.which_children()] == ["a", "d"]
        with pytest.raises(InvalidDefinitionError, match="takes a ChildSpec"):
            await sup.start_child("d")  # type: ignore[arg-type]
        await sup.terminate_child("d")
        with pytest.raises(ActorDeadError):
            await ref.ask("gone")
        with pytest.raises(UnknownChildError, match=r"has no child 'd'; its children are \['a'\]"):
            await sup.terminate_child("d")
        with pytest.raises(TypeError, match="is a supervisor and takes no user messages"):
            await sup.tell("hello")
        # a dynamic child is restarted like the others
        ref = await sup.start_child(ChildSpec("e", Worker, (log, "e")))
        with pytest.raises(ActorCrashedError):
            await ref.ask("crash")
        assert await ref.ask("back") == ("e", "back")


async def test_specs_are_validated_before_anything_starts() -> None:
    with pytest.raises(InvalidDefinitionError, match="actor must be an Actor subclass"):
        ChildSpec("a", int)  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinitionError, match="ChildSpec id: invalid actor name ''"):
        ChildSpec("", Worker)
    with pytest.raises(InvalidDefinitionError, match="shutdown must be a finite number > 0"):
        ChildSpec("a", Worker, shutdown=-1)
    with pytest.raises(InvalidDefinitionError, match=r"ChildSpec 'a': Worker\(log, tag, "
                       r"control=None\) cannot take these arguments: missing a required "
                       "argument: 'tag'"):
        ChildSpec("a", Worker, ([],))
    with pytest.raises(InvalidDefinitionError, match=r"Backoff\.jitter must be in"):
        Backoff(jitter=2)
    with pytest.raises(InvalidDefinitionError, match=r"maximum \(1\) is below initial \(2\)"):
        Backoff(initial=2, maximum=1)
    log: list[str] = []
    async with ActorSystem() as system:  # refused as definitions, not as crashes
        with pytest.raises(InvalidDefinitionError, match="two children have the id 'a'"):
            await system.spawn(Supervisor, children=specs(log, "a", "a"))
        with pytest.raises(InvalidDefinitionError, match="max_restarts must be an int >= 0"):
            await system.spawn(Supervisor, max_restarts=-1)
        with pytest.raises(InvalidDefinitionError, match="strategy must be a Strategy"):
            await system.spawn(Supervisor, strategy="one_for_one")
        assert system.tree().children == ()
    assert log == []


async def test_a_supervisor_hands_out_its_children_and_the_tree_renders_as_text() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="sup", children=specs(log, "a", "b"))
        alice = sup.child("a")
        assert await alice.ask("hi") == ("a", "hi")
        with pytest.raises(UnknownChildError, match=r"has no child 'c'; its children are "
                           r"\['a', 'b'\]"):
            sup.child("c")
        with pytest.raises(ActorCrashedError):
            await alice.ask("crash")
        await settle(system)
        assert str(system.tree()) == system.tree().render() == "\n".join([
            "/user",
            "└── sup  Supervisor  running",
            "    ├── a  Worker  running  restarts 1",
            "    └── b  Worker  running",
        ])
        assert system.tree().render(lambda node: "!" if node.name == "b" else "").endswith(
            "└── b  Worker  running  !")


async def test_backoff_spaces_restarts_in_real_time() -> None:
    log: list[str] = []
    backoff = Backoff(initial=0.05, maximum=0.2, multiplier=2, jitter=0)
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", max_restarts=10, within=60,
                                 backoff=backoff, children=specs(log, "a"))
        ref = system.lookup("/user/s/a")
        assert ref is not None
        for expected in (0.05, 0.1):
            crashed = time.monotonic()
            await exit_child(system, "/user/s/a", "crash")
            node = system.tree().find("/user/s/a")
            assert node is not None and node.status.value == "restarting"
            # messages sent during the backoff wait for the new incarnation
            assert await ref.ask("queued") == ("a", "queued")
            assert time.monotonic() - crashed >= expected
            assert not sup._cell.timers  # a fired backoff timer is not kept


async def test_a_stop_during_backoff_cancels_the_pending_restart() -> None:
    log: list[str] = []
    backoff = Backoff(initial=0.05, maximum=0.05, jitter=0)
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", backoff=backoff, children=specs(log, "a"))
        ref = system.lookup("/user/s/a")
        assert ref is not None
        pending = None
        with pytest.raises(ActorCrashedError):
            await ref.ask("crash")
        pending = asyncio.ensure_future(ref.ask("never"))
        await sup.terminate_child("a")
        with pytest.raises(ActorDeadError):
            await pending
        await asyncio.sleep(0.1)
        assert system.lookup("/user/s/a") is None
        assert log == ["start a", "stop a"]


async def test_restart_cancels_in_flight_work_of_restarted_siblings() -> None:
    log: list[str] = []
    started = asyncio.Event()

    class Slow(Worker):
        async def receive(self, message: Any) -> Any:
            if message == "slow":
                started.set()
                await asyncio.Event().wait()
            return await super().receive(message)

    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="s", strategy=Strategy.ONE_FOR_ALL, children=[
            ChildSpec("a", Slow, (log, "a"), shutdown=0.05),
            ChildSpec("b", Worker, (log, "b")),
        ])
        a = system.lookup("/user/s/a")
        assert a is not None
        slow = asyncio.ensure_future(a.ask("slow"))
        await started.wait()
        await exit_child(system, "/user/s/b", "crash")
        with pytest.raises(ActorDeadError, match="stopped while handling"):
            await slow
        await settle(system)
        assert await a.ask("again") == ("a", "again")


async def test_terminated_reports_an_escalated_supervisor_as_crashed() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        probe = await Probe.spawn(system)

        class Parent(Actor):
            async def on_start(self) -> None:
                child = await self.context.spawn(Supervisor, name="sup", max_restarts=0,
                                                 children=specs(log, "w"))
                self.context.watch(child)

            async def receive(self, message: Any) -> Any:
                await probe.ref.tell(message)

        await system.spawn(Parent, name="p")
        for _ in range(4):  # the plain parent restarts the supervisor 3 times, then stops it
            await settle(system)
            await exit_child(system, "/user/p/sup/w", "crash")
        note = await probe.expect(Terminated)
        assert note.reason is ExitReason.CRASHED
        assert note.error is not None
        assert note.error.type_name == "actorstage.exceptions.RestartIntensityError"
        assert "exceeded its restart intensity (more than 0 restarts" in str(note.error)
        assert system.lookup("/user/p/sup") is None
        assert system.lookup("/user/p") is not None


async def test_a_restart_loop_stays_stoppable() -> None:
    log: list[str] = []
    control = {"fail_start": 10**9}

    class Phoenix(Worker):
        async def on_start(self) -> None:
            if self.context.restarts:  # the first start works; every restart fails
                await super().on_start()
            else:
                self.log.append(f"start {self.tag}")

    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", max_restarts=10**6, within=1.0,
                                 backoff=Backoff(initial=0.001, maximum=0.002, jitter=0),
                                 children=[ChildSpec("p", Phoenix, (log, "p", control))])
        await exit_child(system, "/user/s/p", "crash")
        child = system.lookup("/user/s/p")
        assert child is not None
        await wait_until(lambda: child._cell.restarts >= 20)  # it is looping
        with anyio.fail_after(2):
            await system.stop(sup)
        assert system.lookup("/user/s") is None
        assert child._cell.state == 4  # stopped for good, no restart after the stop


async def test_stopping_a_supervisor_while_its_children_crash() -> None:
    log: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    class CrashOnRelease(Worker):
        async def receive(self, message: Any) -> Any:
            if message == "crash on release":
                started.set()
                await release.wait()
                raise RuntimeError("crashed during the shutdown")
            return await super().receive(message)

    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", children=[
            ChildSpec("a", Worker, (log, "a")),
            ChildSpec("b", CrashOnRelease, (log, "b"), shutdown=1.0),
            ChildSpec("c", Worker, (log, "c")),
        ])
        b = system.lookup("/user/s/b")
        assert b is not None
        pending = asyncio.ensure_future(b.ask("crash on release"))
        await started.wait()
        stopping = asyncio.ensure_future(system.stop(sup))
        await wait_until(lambda: "stop c" in log)  # the stop reached b, which is busy
        release.set()  # b crashes while being stopped: no restart may follow
        with anyio.fail_after(5):
            await stopping
        with pytest.raises(ActorCrashedError):
            await pending
        assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
        assert system.lookup("/user/s") is None


async def test_a_supervisor_ref_after_the_end_says_so() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", children=specs(log, "a"))
        await system.stop(sup)
        with pytest.raises(ActorDeadError, match=r"'/user/s' is not running \(stopped\)"):
            await sup.start_child(ChildSpec("b", Worker, (log, "b")))
        with pytest.raises(ActorDeadError):
            sup.which_children()
        other = await system.spawn(Supervisor, name="t", children=specs(log, "c"))
    with pytest.raises(ActorDeadError, match=r"'/user/t' is not running \(shutdown\)"):
        await other.terminate_child("c")


async def test_stopping_a_child_while_its_parent_stops_waits_for_that_stop() -> None:
    log: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    class Slow(Worker):
        async def on_stop(self) -> None:
            started.set()
            await release.wait()
            await super().on_stop()

    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", children=[
            ChildSpec("a", Worker, (log, "a")), ChildSpec("b", Slow, (log, "b"))])
        a = system.lookup("/user/s/a")
        assert a is not None
        stopping_sup = asyncio.ensure_future(system.stop(sup))
        await started.wait()  # the supervisor is stopping b; a is next
        stopping_a = asyncio.ensure_future(system.stop(a))
        await asyncio.sleep(0.01)
        assert not stopping_a.done()  # it waits for the stop under way
        release.set()
        with anyio.fail_after(5):
            await stopping_a
            await stopping_sup
        assert log == ["start a", "start b", "stop b", "stop a"]


async def test_a_stale_exit_after_a_group_restart_is_ignored() -> None:
    log: list[str] = []
    both_in_hand = asyncio.Barrier(3)
    release = asyncio.Event()

    class Doomed(Worker):
        async def receive(self, message: Any) -> Any:
            if message == "doom":
                await both_in_hand.wait()
                await release.wait()
                raise RuntimeError(f"{self.tag} doomed")
            return await super().receive(message)

    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", strategy=Strategy.ONE_FOR_ALL,
                                 max_restarts=1, within=60, children=[
                                     ChildSpec("a", Doomed, (log, "a")),
                                     ChildSpec("b", Doomed, (log, "b")),
                                     ChildSpec("c", Worker, (log, "c"))])
        a, b = system.lookup("/user/s/a"), system.lookup("/user/s/b")
        assert a is not None and b is not None
        doomed = [asyncio.ensure_future(ref.ask("doom")) for ref in (a, b)]
        await both_in_hand.wait()
        log.clear()
        release.set()  # both crash in the same turn of the loop
        for pending in doomed:
            with pytest.raises(ActorCrashedError):
                await pending
        await settle(system)
        # one group restart (b's exit belongs to the incarnation that restart replaced)
        assert log == ["stop c", "stop b", "stop a", "start a", "start b", "start c"]
        assert sup._cell.restarts == 0  # and max_restarts=1 was not exceeded
        assert [system.lookup(f"/user/s/{t}")._cell.restarts for t in "abc"] == [1, 1, 1]  # type: ignore[union-attr]
