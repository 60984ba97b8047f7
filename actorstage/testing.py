"""Helpers for testing code that uses actorstage.

``Probe`` is an actor that records what it receives, so a test can wait
for a message instead of sleeping::

    probe = await Probe.spawn(system)
    await worker.tell(Job(reply_to=probe.ref))
    done = await probe.expect(JobDone)

``wait_until`` waits for a condition no event announces, and
``leftover_tasks`` helps a test assert that nothing kept running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from actorstage.actors._actor import Actor
from actorstage.actors._message import Terminated
from actorstage.actors._ref import ActorRef
from actorstage.actors._system import ActorSystem

__all__ = ["Probe", "leftover_tasks", "wait_until"]

T = TypeVar("T")


_SYNC = object()


class _ProbeActor(Actor):
    __slots__ = ("_inbox",)

    def __init__(self, inbox: asyncio.Queue[Any]) -> None:
        self._inbox = inbox

    async def receive(self, message: Any) -> Any:
        if message is not _SYNC:
            self._inbox.put_nowait(message)
        return None


class Probe:
    """An actor that records every message it receives, for tests to await.

    Attributes:
        ref: The probe's actor ref; give it to the code under test.
        received: Every message received so far, in order.
    """

    def __init__(self, ref: ActorRef, inbox: asyncio.Queue[Any]) -> None:
        self.ref = ref
        self.received: list[Any] = []
        self._inbox = inbox

    @classmethod
    async def spawn(cls, system: ActorSystem, name: str | None = None) -> Probe:
        """Spawn a probe actor in ``system``."""
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        ref = await system.spawn(_ProbeActor, inbox, name=name, mailbox_size=100_000)
        return cls(ref, inbox)

    async def receive(self) -> Any:
        """The next message (bound the wait with ``anyio.fail_after``)."""
        message = await self._inbox.get()
        self.received.append(message)
        return message

    async def expect(self, kind: type[T], where: Callable[[T], bool] | None = None) -> T:
        """Wait for the next message of type ``kind`` (and matching ``where``).

        Messages that do not match are kept in ``received`` and skipped.
        """
        while True:
            message = await self.receive()
            if isinstance(message, kind) and (where is None or where(message)):
                return message

    async def expect_terminated(self, ref: ActorRef) -> Terminated:
        """Wait for ``Terminated`` of ``ref`` (watch it first with ``watch``)."""
        return await self.expect(Terminated, lambda t: t.ref == ref)

    def watch(self, ref: ActorRef) -> None:
        """Have the probe watch ``ref``: it will receive ``Terminated`` once."""
        from actorstage.actors._watch import watch

        watch(self.ref._cell, ref._cell)

    async def sync(self) -> None:
        """Wait until every message sent to the probe before this call has been received.

        Messages are handled in order, so after ``sync`` returns, ``pending()``
        counts all of them.
        """
        await self.ref.ask(_SYNC)

    def pending(self) -> int:
        """Messages received but not yet taken by ``receive``/``expect`` (see ``sync``)."""
        return self._inbox.qsize()


async def wait_until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` is true, checking it after every turn of the event loop.

    For states no event announces; bound the wait with ``anyio.fail_after``.
    """
    while not condition():  # noqa: ASYNC110 - an arbitrary condition has no event to wait on
        await asyncio.sleep(0)


def leftover_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks that are running now and were not in ``before`` (other than the caller)."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()]
