"""The dead-letter stream: every message that could not be delivered, counted."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from actorstage.actors._message import DeadLetter

if TYPE_CHECKING:
    from actorstage.actors._ref import ActorRef

__all__ = ["DeadLetterSubscription", "DeadLetters"]

log = logging.getLogger("actorstage.deadletters")


class DeadLetters:
    """Counts undeliverable messages and streams them to subscribers.

    The count is exact. A subscriber that falls more than its buffer behind
    misses records, and its ``missed`` says how many.
    """

    def __init__(self) -> None:
        self._count = 0
        self._by_reason: Counter[str] = Counter()
        self._subscribers: list[DeadLetterSubscription] = []

    @property
    def count(self) -> int:
        """How many messages could not be delivered since the system started."""
        return self._count

    def by_reason(self) -> dict[str, int]:
        """The count split by reason (a snapshot)."""
        return dict(self._by_reason)

    def subscribe(self, max_buffer: int = 1000) -> DeadLetterSubscription:
        """Follow dead letters as they happen::

            async with system.dead_letters.subscribe() as letters:
                async for letter in letters:
                    ...
        """
        return DeadLetterSubscription(self, max_buffer)

    def _publish(self, recipient: ActorRef, message: Any, reason: str) -> None:
        self._count += 1
        self._by_reason[reason] += 1
        log.debug("dead letter to %s (%s): %r", recipient.path, reason, message)
        if self._subscribers:
            letter = DeadLetter(recipient, message, reason)
            for subscriber in self._subscribers:
                subscriber._offer(letter)


class DeadLetterSubscription:
    """An async iterator of ``DeadLetter`` records; use it as an async context manager."""

    def __init__(self, owner: DeadLetters, max_buffer: int) -> None:
        self._owner = owner
        self._max_buffer = max_buffer
        self.missed = 0
        self._send: MemoryObjectSendStream[DeadLetter] | None = None
        self._receive: MemoryObjectReceiveStream[DeadLetter] | None = None

    async def __aenter__(self) -> DeadLetterSubscription:
        self._send, self._receive = anyio.create_memory_object_stream[DeadLetter](
            self._max_buffer
        )
        self._owner._subscribers.append(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner._subscribers.remove(self)
        assert self._send is not None and self._receive is not None
        self._send.close()
        self._receive.close()

    def _offer(self, letter: DeadLetter) -> None:
        assert self._send is not None
        try:
            self._send.send_nowait(letter)
        except anyio.WouldBlock:
            self.missed += 1

    def __aiter__(self) -> AsyncIterator[DeadLetter]:
        return self

    async def __anext__(self) -> DeadLetter:
        if self._receive is None:
            raise RuntimeError("use the subscription as `async with ... as letters`")
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
