"""A subscription to a stream of records that the system publishes (dead letters, tree
events): bounded, and never holding the publisher up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Generic, Self, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["Subscription"]

T = TypeVar("T")


class Subscription(Generic[T]):
    """An async iterator of what a stream publishes; use it as an async context manager.

    It buffers up to ``max_buffer`` records; past that it drops new ones and
    counts them in ``missed``, so a slow reader never holds the publisher up.
    """

    def __init__(self, subscribers: list[Subscription[T]], max_buffer: int) -> None:
        self._subscribers = subscribers
        self._max_buffer = max_buffer
        self.missed = 0
        self._send: MemoryObjectSendStream[T] | None = None
        self._receive: MemoryObjectReceiveStream[T] | None = None

    async def __aenter__(self) -> Self:
        self._send, self._receive = anyio.create_memory_object_stream[T](self._max_buffer)
        self._subscribers.append(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._subscribers.remove(self)
        assert self._send is not None and self._receive is not None
        self._send.close()
        self._receive.close()

    def _offer(self, record: T) -> None:
        assert self._send is not None
        try:
            self._send.send_nowait(record)
        except anyio.WouldBlock:
            self.missed += 1
        except anyio.ClosedResourceError:  # the stream ended: nothing more is published
            pass

    def _end(self) -> None:
        """The stream is over: the reader gets what is buffered, then the iteration ends."""
        if self._send is not None:
            self._send.close()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._receive is None:
            raise RuntimeError("use the subscription as `async with ... as records`")
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
