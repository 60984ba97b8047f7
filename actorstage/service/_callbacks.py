"""Progress callbacks: every event goes to an endpoint, in order, retried.

actorstage's own (``ProgressControl.ReportProgress``, one call per event) and
Stigmer's (``updateStatus``, one call per status snapshot, see ``_stigmer``)
share the delivery: one sender task delivers the queued calls one by one, in
the order they were made, so each execution's arrive in order. A failed call
is retried with exponential backoff and full jitter until it succeeds: the
endpoint may be down for a while. The queue is bounded: when it is full the
oldest waiting call is given up, counted in ``lost`` and logged.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections import deque
from typing import Any, Generic, TypeVar

import anyio
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from actorstage._proto.actorstage.v1 import ProgressControlStub, ProgressEvent
from actorstage._telemetry import attached, current_carrier, span

__all__ = ["CallbackSender", "Sender", "parse_endpoint"]

T = TypeVar("T")

log = logging.getLogger("actorstage.service.callbacks")


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair; ``ValueError`` saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a callback endpoint is HOST:PORT with a port in 1-65535, got {text!r}")
    return host, int(port)


class Sender(Generic[T]):
    """Delivers calls to ``host:port`` in order, retried; ``_call`` makes one.

    Args:
        host, port: the endpoint.
        ssl: a client TLS context, or None for plain HTTP/2.
        token: sent as ``authorization: Bearer <token>`` when given.
        max_pending: calls kept while the endpoint is unreachable.
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
        self._metadata = {"authorization": f"Bearer {token}"} if token else None
        self._queue: deque[T] = deque()
        self._traces: dict[tuple[str, int], dict[str, str]] = {}  # (traced) by key()
        self._wakeup = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._inflight: T | None = None
        self.max_pending = max_pending
        self.backoff, self.max_backoff, self.timeout = backoff, max_backoff, timeout
        self.delivered = 0
        self.failures = 0  # failed calls (each is retried)
        self.lost = 0  # calls given up: the queue was full, or the service stopped
        self._failing = False
        self._outbox: Any = None  # a durable service's state: calls wait there until done
        self._sink = ""

    async def _call(self, item: T, metadata: dict[str, str] | None) -> Any:
        raise NotImplementedError

    def _describe(self, item: T) -> str:
        """What a lost call was, for the log."""
        return repr(item)

    def key(self, item: T) -> tuple[str, int]:
        """(execution id, seq): what the receiver sees once (``x-idempotency-key``)."""
        raise NotImplementedError

    def encode(self, item: T) -> bytes:
        return bytes(item)  # type: ignore[call-overload,no-any-return]

    def decode(self, body: bytes) -> T:
        raise NotImplementedError

    async def keep_in(self, state: Any, sink: str) -> None:
        """Keep every call in ``state``'s outbox under ``sink`` until it is delivered, so
        that none is lost to a crash; the ones a previous run left there are queued first.
        A call goes out only once it is written (with the event it reports)."""
        self._outbox, self._sink = state, sink
        for execution_id, seq, body in await state.outbox(sink):
            self._queue.append(self.decode(body))
            log.debug("callback %s of execution %s (seq %d) was left undelivered; sending it",
                      sink, execution_id, seq)
        if self._queue:
            self._idle = anyio.Event()
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Events not delivered yet, the one being delivered included."""
        return len(self._queue) + (self._inflight is not None)

    def put(self, item: T) -> None:
        """Queue ``item`` for delivery (never blocks)."""
        queue = self._queue
        if len(queue) >= self.max_pending:
            oldest = queue.popleft()
            self._traces.pop(self.key(oldest), None)
            self.lost += 1
            if self.lost == 1 or self.lost % 1000 == 0:
                log.warning(
                    "callback endpoint %s: %d pending calls, the limit; gave up %s (%d lost "
                    "so far)", self.endpoint, len(queue) + 1, self._describe(oldest), self.lost)
        queue.append(item)
        carrier = current_carrier()  # (the trace context the event was made in, if traced)
        if carrier is not None:
            self._traces[self.key(item)] = carrier
        if self._outbox is not None:
            execution_id, seq = self.key(item)
            self._outbox.outbox_add(self._sink, execution_id, seq, self.encode(item))
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
            if self._outbox is not None:
                await self._outbox.flush()  # written, with the event it reports, first
            await self._deliver(self._inflight)
            if self._outbox is not None:
                self._outbox.outbox_done(self._sink, *self.key(self._inflight))
            self._inflight = None
            self.delivered += 1

    async def _deliver(self, item: T) -> None:
        failures = 0
        execution_id, seq = self.key(item)
        metadata = {**(self._metadata or {}), "x-idempotency-key": f"{execution_id}:{seq}"}
        carrier = self._traces.pop((execution_id, seq), None)
        while True:
            try:
                with attached(carrier), span(f"callback {self.endpoint}", {
                        "rpc.system": "grpc", "server.address": self.endpoint,
                        "actorstage.execution.id": execution_id, "actorstage.seq": seq},
                        kind="CLIENT"):
                    await self._call(item, {**metadata, **(current_carrier() or {})})
            except (GRPCError, OSError, StreamTerminatedError, TimeoutError) as exc:
                failures += 1
                self.failures += 1
                if not self._failing:
                    self._failing = True
                    log.warning("callback endpoint %s failed (%s); retrying with backoff",
                                self.endpoint, _failure(exc))
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
            log.warning("callback endpoint %s: %d calls were not delivered before the "
                        "service stopped (%d lost in all)", self.endpoint, left, self.lost)
            self._queue.clear()
            self._inflight = None
        self._channel.close()


class CallbackSender(Sender[ProgressEvent]):
    """Delivers progress events to ``actorstage.v1.ProgressControl/ReportProgress``."""

    def __init__(self, host: str, port: int, **options: Any) -> None:
        super().__init__(host, port, **options)
        self._stub = ProgressControlStub(self._channel)

    async def _call(self, item: ProgressEvent, metadata: dict[str, str] | None) -> Any:
        return await self._stub.report_progress(item, timeout=self.timeout, metadata=metadata)

    def _describe(self, item: ProgressEvent) -> str:
        return f"event seq {item.seq} of execution {item.execution_id}"

    def key(self, item: ProgressEvent) -> tuple[str, int]:
        return item.execution_id, item.seq

    def decode(self, body: bytes) -> ProgressEvent:
        return ProgressEvent.parse(body)


def _failure(exc: BaseException) -> str:
    if isinstance(exc, GRPCError):
        return f"{exc.status.name}: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
