"""Bounded channels between nodes, and the inbox where a node's channels meet.

A connection is a ``Channel``: it counts the items its producer has put and
its consumer has not finished with yet (queued, or on their way to a node's
process), at most ``capacity`` of them when it blocks. The items themselves
wait in the consumer's ``Inbox``, one queue for all its connections in
arrival order: order holds along each connection, and a consumer never
waits on one connection while another holds items (no fan-in deadlock).

Everything here runs on one event loop; a waiter is a bare future.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Aborted", "Channel", "Inbox"]


class Aborted(Exception):
    """The session is over (failed or cancelled): node loops stop where they are."""


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Inbox:
    """A node's input: the items of all its connections, in arrival order.

    Kept as runs of items from one connection, ``(channel, items)``, and taken
    as runs: items waiting here make no object of their own (a pair per item
    made most of what the garbage collector saw on a busy session).
    """

    __slots__ = ("count", "error", "max_depth", "name", "open", "queue", "waiter")

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: deque[tuple[Channel, list[Any]]] = deque()
        self.count = 0  # items queued, in all runs
        self.open = 0  # connections not yet closed
        self.waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        self.max_depth = 0

    def push(self, channel: Channel, item: Any) -> None:
        queue = self.queue
        if queue and queue[-1][0] is channel:
            queue[-1][1].append(item)
        else:
            queue.append((channel, [item]))
        self.count += 1
        self._arrived()

    def push_all(self, channel: Channel, items: list[Any]) -> None:
        """Queue ``items`` (copied: the caller keeps its list)."""
        queue = self.queue
        if queue and queue[-1][0] is channel:
            queue[-1][1].extend(items)
        else:
            queue.append((channel, items.copy()))
        self.count += len(items)
        self._arrived()

    def _arrived(self) -> None:
        if self.count > self.max_depth:
            self.max_depth = self.count
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            _wake(waiter)

    async def take(self, limit: int) -> list[tuple[Channel, list[Any]]]:
        """Runs of up to ``limit`` queued items in all, oldest first (waiting for one);
        ``[]`` once every input has ended. The runs are the caller's."""
        queue = self.queue
        while not queue:
            if self.error is not None:
                raise self.error
            if self.open == 0:
                return []
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            await waiter
        if self.error is not None:
            raise self.error
        if self.count <= limit:
            return self.take_all()
        runs = []
        left = limit
        while left:
            channel, items = queue[0]
            if len(items) <= left:
                queue.popleft()
                runs.append((channel, items))
                left -= len(items)
            else:
                runs.append((channel, items[:left]))
                del items[:left]
                left = 0
        self.count -= limit
        return runs

    def take_all(self) -> list[tuple[Channel, list[Any]]]:
        """Every queued run, at once, without waiting."""
        runs = list(self.queue)
        self.queue.clear()
        self.count = 0
        return runs

    def input_ended(self) -> None:
        self.open -= 1
        if self.open == 0:
            waiter, self.waiter = self.waiter, None
            _wake(waiter)

    def abort(self, error: BaseException) -> None:
        self.error = error
        waiter, self.waiter = self.waiter, None
        _wake(waiter)


class Channel:
    """One connection: from a producer to a consumer's inbox, holding at most ``capacity``.

    With ``blocking`` (backpressure on), ``put`` waits while ``capacity``
    items are held; without it ``put`` never waits and ``on_grow`` is told
    the size of each item, so the session can enforce its memory limit.
    """

    __slots__ = ("blocking", "capacity", "closed", "count", "error", "inbox", "on_grow",
                 "sizer", "source", "target", "waiters")

    def __init__(self, source: str, target: str, inbox: Inbox, capacity: int, *,
                 blocking: bool = True,
                 sizer: Callable[[Any], int] | None = None,
                 on_grow: Callable[[Channel, int], None] | None = None) -> None:
        self.source = source
        self.target = target
        self.inbox = inbox
        self.capacity = capacity
        self.blocking = blocking
        self.sizer = sizer
        self.on_grow = on_grow
        self.count = 0
        self.closed = False
        self.error: BaseException | None = None
        self.waiters: deque[asyncio.Future[None]] = deque()
        inbox.open += 1

    @property
    def name(self) -> str:
        return f"{self.source} -> {self.target}"

    def has_room(self) -> bool:
        return self.count < self.capacity or not self.blocking

    def put_nowait(self, item: Any) -> None:
        """Put without waiting; the caller has checked ``has_room``."""
        self.count += 1
        if self.on_grow is not None:
            self.on_grow(self, self.sizer(item) if self.sizer is not None else 0)
        self.inbox.push(self, item)

    def put_all_nowait(self, items: list[Any]) -> bool:
        """Put every item of ``items`` at once if they all fit (and no item needs sizing);
        ``False``, putting none, otherwise."""
        if self.on_grow is not None or (self.blocking and
                                        self.count + len(items) > self.capacity):
            return False
        self.count += len(items)
        self.inbox.push_all(self, items)
        return True

    async def put(self, item: Any) -> None:
        """Put one item, waiting for room first when the channel blocks and is full."""
        if self.error is not None:
            raise self.error
        if self.blocking and self.count >= self.capacity:
            loop = asyncio.get_running_loop()
            while self.count >= self.capacity:
                waiter = loop.create_future()
                self.waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if not waiter.done() or waiter.cancelled():
                        self._forget(waiter)
                if self.error is not None:
                    raise self.error
        self.put_nowait(item)

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)

    def release(self, item: Any) -> None:
        """The consumer is done with ``item``: make room for one more."""
        self.count -= 1
        if self.on_grow is not None:
            self.on_grow(self, -self.sizer(item) if self.sizer is not None else 0)
        if self.waiters:
            _wake(self.waiters.popleft())

    def release_count(self, count: int) -> None:
        """``release`` for ``count`` items that need no sizing (no ``on_grow``)."""
        self.count -= count
        waiters = self.waiters
        while waiters and count:
            _wake(waiters.popleft())
            count -= 1

    def close(self) -> None:
        """The producer has no more items."""
        if not self.closed:
            self.closed = True
            self.inbox.input_ended()

    def abort(self, error: BaseException) -> None:
        self.error = error
        waiters, self.waiters = self.waiters, deque()
        for waiter in waiters:
            _wake(waiter)
