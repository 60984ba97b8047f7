"""Progress callbacks: every event goes to a ``ProgressControl`` endpoint, in order, retried.

One sender task delivers the queued events one by one, in the order they
were made, so each execution's events arrive in order. A failed call is
retried with exponential backoff and full jitter until it succeeds: the
endpoint may be down for a while. The queue is bounded: when it is full the
oldest waiting event is given up, counted in ``lost`` and logged.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections import deque

import anyio
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from actorstage._proto.actorstage.v1 import ProgressControlStub, ProgressEvent

__all__ = ["CallbackSender", "parse_endpoint"]

log = logging.getLogger("actorstage.service.callbacks")


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair; ``ValueError`` saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a callback endpoint is HOST:PORT with a port in 1-65535, got {text!r}")
    return host, int(port)


class CallbackSender:
    """Delivers progress events to ``ReportProgress`` on ``host:port``.

    Args:
        host, port: the endpoint.
        ssl: a client TLS context, or None for plain HTTP/2.
        token: sent as ``authorization: Bearer <token>`` when given.
        max_pending: events kept while the endpoint is unreachable.
        backoff, max_backoff: the first and the largest retry delay, in seconds.
        timeout: the deadline of one call.
    """

    def __init__(self, host: str, port: int, *, ssl: ssl.SSLContext | None = None,
                 token: str | None = None, max_pending: int = 10_000, backoff: float = 0.05,
                 max_backoff: float = 5.0, timeout: float = 5.0) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending!r}")
        self.endpoint = f"{host}:{port}"
        self._channel = Channel(host, port, ssl=ssl)
        self._stub = ProgressControlStub(self._channel)
        self._metadata = {"authorization": f"Bearer {token}"} if token else None
        self._queue: deque[ProgressEvent] = deque()
        self._wakeup = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._inflight: ProgressEvent | None = None
        self.max_pending = max_pending
        self.backoff, self.max_backoff, self.timeout = backoff, max_backoff, timeout
        self.delivered = 0
        self.failures = 0  # failed calls (each is retried)
        self.lost = 0  # events given up: the queue was full, or the service stopped
        self._failing = False

    @property
    def pending(self) -> int:
        """Events not delivered yet, the one being delivered included."""
        return len(self._queue) + (self._inflight is not None)

    def put(self, event: ProgressEvent) -> None:
        """Queue ``event`` for delivery (never blocks)."""
        queue = self._queue
        if len(queue) >= self.max_pending:
            oldest = queue.popleft()
            self.lost += 1
            if self.lost == 1 or self.lost % 1000 == 0:
                log.warning(
                    "callback endpoint %s: %d pending events, the limit; gave up event seq %d "
                    "of execution %s (%d lost so far)", self.endpoint, len(queue) + 1,
                    oldest.seq, oldest.execution_id, self.lost)
        queue.append(event)
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        queue = self._queue
        while True:
            if not queue:
                self._idle.set()
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            self._inflight = queue.popleft()
            await self._deliver(self._inflight)
            self._inflight = None
            self.delivered += 1

    async def _deliver(self, event: ProgressEvent) -> None:
        failures = 0
        while True:
            try:
                await self._stub.report_progress(event, timeout=self.timeout,
                                                 metadata=self._metadata)
            except (GRPCError, OSError, StreamTerminatedError, TimeoutError) as exc:
                failures += 1
                self.failures += 1
                if not self._failing:
                    self._failing = True
                    log.warning("callback endpoint %s failed (%s); retrying with backoff",
                                self.endpoint, _describe(exc))
                ceiling = min(self.max_backoff, self.backoff * 2 ** min(failures - 1, 30))
                await anyio.sleep(random.uniform(0, ceiling))  # full jitter
                continue
            if self._failing:
                self._failing = False
                log.warning("callback endpoint %s is back; delivering again", self.endpoint)
            return

    async def wait_flushed(self) -> None:
        """Wait until every queued event has been delivered (bound it with a deadline)."""
        await self._idle.wait()

    def close(self) -> None:
        """Give up what is still queued (counted and logged) and close the channel.

        Call it once the ``run`` task has ended.
        """
        left = self.pending
        if left:
            self.lost += left
            log.warning("callback endpoint %s: %d events were not delivered before the "
                        "service stopped (%d lost in all)", self.endpoint, left, self.lost)
            self._queue.clear()
            self._inflight = None
        self._channel.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GRPCError):
        return f"{exc.status.name}: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
