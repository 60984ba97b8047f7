"""Refs that travel between the processes of a tree (routed hop by hop through it)."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import msgspec
import pytest

from actorstage import (
    Actor,
    ActorCrashedError,
    ActorDeadError,
    ActorRef,
    ActorSystem,
    InvalidDefinitionError,
    Terminated,
)
from actorstage.testing import wait_until
from actorstage.transport._routing import ROUTE_WINDOW
from tests.transport.actors import Add, Forward, Relay, TellTo, Total
from tests.transport.helpers import FAST

pytestmark = pytest.mark.anyio


class Collector(Actor):
    """A local actor of the test process that children reach through a ref."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "got":
            return self.got
        self.got.append(message)
        return f"thanks for {message!r}"


async def test_a_child_tells_and_asks_a_ref_of_the_parent_process_it_was_sent() -> None:
    """The testing guide's reply-to pattern, with the worker in a child process."""
    async with ActorSystem() as system:
        collector = await system.spawn(Collector, name="collector")
        child = await system.spawn(Relay, process=FAST)
        assert await child.ask(TellTo(collector, "told")) == "told"
        assert await child.ask(Forward(collector, "asked")) == "thanks for 'asked'"
        with anyio.fail_after(5):
            await wait_until(lambda: len(collector._cell.actor.got) == 2)  # type: ignore[union-attr]
        assert await collector.ask("got") == ["told", "asked"]


async def test_refs_come_back_from_children_and_grandchildren_and_work_here() -> None:
    async with ActorSystem() as system:
        child = await system.spawn(Relay, name="a", process=FAST)
        assert await child.ask("me") is child  # its own ref, back home: the same object
        inner = await child.ask(["spawn", "local", "inner"])
        deep = await child.ask(["spawn", "process", "deep"])
        assert (inner.path, deep.path) == ("/user/a/inner", "/user/a/deep")
        assert await inner.ask("pid") == await child.ask("pid")  # it lives in the child
        deep_pid = await deep.ask("pid")
        assert deep_pid not in (os.getpid(), await child.ask("pid"))  # ... in the grandchild
        again = await child.ask(["spawn", "local", "again"])
        assert await child.ask(Forward(again, "pid")) == await child.ask("pid")
        # The same actor's ref compares and hashes equal however it came.
        [_, inner_again] = await child.ask(["echo", inner])  # (Relay answers it as it came)
        assert inner_again == inner and hash(inner_again) == hash(inner)
        assert len({inner, inner_again, deep}) == 2
        both = await child.ask([inner, {"deep": deep}])  # refs inside values, both ways
        assert both == [inner, {"deep": deep}] and both[0] is inner


async def test_siblings_and_cousins_reach_each_other_through_refs() -> None:
    async with ActorSystem() as system:
        a = await system.spawn(Relay, name="a", process=FAST)
        b = await system.spawn(Relay, name="b", process=FAST)
        deep = await a.ask(["spawn", "process", "deep"])  # a's child: b's cousin
        assert await a.ask(Forward(b, "pid")) == await b.ask("pid")
        assert await b.ask(Forward(deep, "pid")) == await deep.ask("pid")
        assert await deep.ask(Add(5)) == Total(5, await deep.ask("pid"))
        # A ref given at spawn, as a constructor argument, works in the child too.
        c = await system.spawn(Relay, b, name="c", process=FAST)
        assert await c.ask("ask-peer") == await b.ask("pid")
        assert await c.ask("peer") is b


async def test_an_actor_that_is_gone_fails_asks_at_once_and_dead_letters_tells() -> None:
    async with ActorSystem() as system:
        child = await system.spawn(Relay, name="a", process=FAST)
        ghost = await child.ask(["spawn", "local", "ghost"])
        await ghost.ask("stop-self")  # it stops once this message is handled
        with anyio.fail_after(2), pytest.raises(ActorDeadError, match="/user/a/ghost"):
            await ghost.ask("pid")
        await system.stop(child)
        with anyio.fail_after(2), pytest.raises(ActorDeadError):  # its process is gone
            await ghost.ask("pid")


class Watcher(Actor):
    """Watches the refs it is sent, and keeps the Terminated notices it gets."""

    def __init__(self) -> None:
        self.ended: list[Terminated] = []

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Terminated):
            self.ended.append(message)
        elif isinstance(message, tuple) and message[0] == "watch":
            self.context.watch(message[1])
        elif message == "ended":
            return [(notice.ref.path, str(notice.reason)) for notice in self.ended]
        return None


async def _ended(watcher: Any, count: int) -> list[tuple[str, str]]:
    for _ in range(500):  # (10 s)
        ended: list[tuple[str, str]] = await watcher.ask("ended")
        if len(ended) >= count:
            return ended
        await anyio.sleep(0.02)
    raise AssertionError(f"only {ended} after 10 s")


async def test_watching_an_actor_of_another_process_tells_how_it_ended() -> None:
    async with ActorSystem() as system:
        watcher = await system.spawn(Watcher)
        a = await system.spawn(Relay, name="a", process=FAST)
        inner = await a.ask(["spawn", "local", "inner"])
        deep = await a.ask(["spawn", "process", "deep"])
        # Asked, not told: once answered, each watch has left on the link to a's process,
        # ahead of anything sent after it on that link (the stop below).
        await watcher.ask(("watch", inner))
        await watcher.ask(("watch", deep))
        await inner.ask("stop-self")  # a normal exit
        assert await _ended(watcher, 1) == [("/user/a/inner", "normal")]
        ghost = ref_at(system, "/user/a/never-was")
        await watcher.ask(("watch", ghost))
        assert (await _ended(watcher, 2))[1] == ("/user/a/never-was", "not_found")
        os.kill(await a.ask("pid"), signal.SIGKILL)  # deep's parent process dies
        ended = await _ended(watcher, 3)
        assert ended[2] == ("/user/a/deep", "unreachable")


def ref_at(system: ActorSystem, path: str) -> Any:
    """The ref of ``path`` as if it had been sent here (a RemoteRef)."""
    return system._node().ref(path)


async def test_lookup_find_and_the_registry_work_across_the_tree() -> None:
    async with ActorSystem() as system:
        a = await system.spawn(Relay, name="a", process=FAST)
        b = await system.spawn(Relay, name="b", process=FAST)
        deep = await a.ask(["spawn", "process", "deep"])
        inner: ActorRef = await a.ask(["spawn", "local", "inner"])
        # lookup gives the ref of an actor in another process without asking; find asks.
        assert system.lookup("/user/a/deep") is deep and system.lookup("/user/a") is a
        assert system.lookup("/user/nobody") is None
        assert await system.find("/user/a/inner") is inner
        assert await system.find("/user/a/nobody") is None
        assert await b.ask(["find", "/user/a/deep"]) == deep  # from a sibling process
        # A name registered anywhere is found everywhere; it goes with its actor.
        assert await a.ask(["register", "inner", inner]) == "registered"
        assert await b.ask(["register", "b"]) == "registered"
        assert await system.whereis("inner") == inner
        assert await a.ask(["whereis", "b"]) == b
        with pytest.raises(InvalidDefinitionError, match="the name 'b' is taken by /user/b"):
            await system.register("b", a)
        await inner.ask("stop-self")
        for _ in range(250):  # the root hears of the end through its watch (5 s at most)
            if await system.whereis("inner") is None:
                break
            await anyio.sleep(0.02)
        assert await system.whereis("inner") is None
        assert await b.ask(["whereis", "nobody"]) is None


async def test_siblings_talk_over_a_direct_link_in_order_and_it_closes_when_idle() -> None:
    async with ActorSystem() as system:
        quick = msgspec.structs.replace(FAST, link_idle_timeout=0.5)
        a = await system.spawn(Relay, name="a", process=quick)
        b = await system.spawn(Relay, name="b", process=quick)
        counter = await b.ask(["spawn", "local", "counter"])
        # The first messages from a to b's process wait for the direct link, then keep
        # their order: a thousand tells, and an ask after them, all from one sender.
        assert await a.ask(["flood", counter, 1000]) == list(range(1000))
        assert await a.ask("direct-links") == ["/user/b"]
        assert await a.ask(Forward(b, "pid")) == await b.ask("pid")
        for _ in range(100):  # idle for 0.5 s: a closes it
            if await a.ask("direct-links") == []:
                break
            await anyio.sleep(0.05)
        assert await a.ask("direct-links") == []
        assert await a.ask(Forward(counter, "seen")) == list(range(1000))  # and reopens it
        assert await a.ask("direct-links") == ["/user/b"]


class Starter(Actor):
    """Starts two process children and has one ask the other, all inside its on_start."""

    async def on_start(self) -> None:
        self.a = await self.context.spawn(Relay, name="a", process=FAST)
        self.b = await self.context.spawn(Relay, name="b", process=FAST)
        self.pids = await self.a.ask(Forward(self.b, "pid")), await self.b.ask("pid")

    async def receive(self, message: Any) -> Any:
        return self.pids if message == "pids" else await self.a.ask(message)


async def test_a_direct_link_opens_to_a_sibling_whose_parent_is_still_starting() -> None:
    # Until the parent's on_start returns, it is not among its own parent's children;
    # a door asked for its children then must still reach their process (as a pipeline's
    # nodes ask, from the session actor's start), not be answered with the tree.
    async with ActorSystem() as system:
        starter = await system.spawn(Starter, name="starter")
        there, its_pid = await starter.ask("pids")
        assert there == its_pid
        assert await starter.ask("direct-links") == ["/user/starter/b"]


@pytest.mark.parametrize("transport", ["unix", "stdio"])
async def test_tells_to_another_process_wait_for_credits_when_the_far_actor_is_stuck(
        transport: str) -> None:
    async with ActorSystem() as system:
        options = msgspec.structs.replace(FAST, transport=transport)
        a = await system.spawn(Relay, name="a", process=options)
        b = await system.spawn(Relay, name="b", process=options)
        counter = await b.ask(["spawn", "local", "counter"])
        assert await a.ask(Forward(counter, "pid")) == await b.ask("pid")  # the link is open
        await a.ask(TellTo(counter, ["sleep", 2, "/dev/null"]))  # stuck for 2 s
        # A flood from a: the tells return while credits last (a window of them, on their
        # way or in the mailbox behind the one in hand), then they wait.
        await a.ask(["flood-in-background", counter, 3000])
        # Over stdio they go through the parent, hop by hop: each link holds a window.
        window = ROUTE_WINDOW * (2 if transport == "stdio" else 1)
        with anyio.fail_after(1.5):  # (well inside the 2 s the counter is stuck)
            while await a.ask("told") < window:  # noqa: ASYNC110 - polls another process
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)  # and it stays there: no credit comes back while stuck
        assert await a.ask("told") == window
        assert await a.ask(["flood-nowait", counter, 10]) == [0, ROUTE_WINDOW]
        with anyio.fail_after(15):  # once unstuck, everything arrives, in order
            while len(seen := await counter.ask("seen")) < 3000:  # noqa: ASYNC110
                await anyio.sleep(0.1)
        assert seen == list(range(3000))


async def test_an_ask_over_a_direct_link_fails_at_once_when_its_process_dies() -> None:
    async with ActorSystem() as system:
        a = await system.spawn(Relay, name="a", process=FAST)
        b = await system.spawn(Relay, name="b", process=FAST)
        counter = await b.ask(["spawn", "local", "counter"])
        assert await a.ask(Forward(counter, "pid")) == await b.ask("pid")
        stuck = anyio.Event()

        async def ask_slowly() -> None:
            with pytest.raises(ActorCrashedError, match=r"ActorDeadError|lost"):
                await a.ask(Forward(counter, ["sleep", 60, "/dev/null"]))
            stuck.set()

        async with anyio.create_task_group() as group:
            group.start_soon(ask_slowly)
            await anyio.sleep(0.3)
            os.kill(await b.ask("pid"), signal.SIGKILL)
            with anyio.fail_after(3):
                await stuck.wait()


async def test_a_ref_s_prepare_returns_once_the_direct_link_to_its_process_is_open() -> None:
    async with ActorSystem() as system:
        a = await system.spawn(Relay, name="a", process=FAST)
        b = await system.spawn(Relay, name="b", process=FAST)
        c = await system.spawn(Relay, name="c", process=FAST)
        counter = await b.ask(["spawn", "local", "counter"])
        assert await a.ask(["prepare", counter]) == ["/user/b"]  # open, nothing sent yet
        assert await a.ask(["prepare", b]) == ["/user/b"]  # (the same process: no other)
        assert await a.ask(["prepare", c]) == ["/user/b", "/user/c"]
        assert await a.ask(Forward(counter, "seen")) == []
        assert await b.ask(["prepare", a]) == ["/user/a"]  # (b's own, the other way)


async def test_stdio_children_reach_each_other_through_the_tree() -> None:
    async with ActorSystem() as system:
        stdio = msgspec.structs.replace(FAST, transport="stdio")
        a = await system.spawn(Relay, name="a", process=stdio)
        b = await system.spawn(Relay, name="b", process=stdio)
        assert await a.ask(["prepare", b]) == []  # no direct link: the tree it is
        assert await a.ask(Forward(b, "pid")) == await b.ask("pid")
        assert await a.ask("direct-links") == []
