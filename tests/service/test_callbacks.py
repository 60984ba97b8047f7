"""Progress callbacks: in order per execution, retried until the endpoint is back, never lost
silently."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from grpclib import GRPCError
from grpclib.const import Status as Code
from grpclib.server import Stream

from actorstage.service import (
    ExecuteRequest,
    ExecutionStatus,
    ProgressAck,
    ProgressControlBase,
    ProgressEvent,
    WatchExecutionRequest,
)
from actorstage.testing import wait_until
from actorstage.transport._grpc import GrpcServer
from tests.service.helpers import SHORT, long, run, serving

pytestmark = pytest.mark.anyio


class Receiver(ProgressControlBase):
    """A callback endpoint that records what it receives (and checks a token, if given)."""

    def __init__(self, token: str | None = None) -> None:
        self.events: list[ProgressEvent] = []
        self.token = token
        self.headers: list[str | None] = []
        self.keys: list[str | None] = []  # x-idempotency-key, as each call carried it
        self.changed = anyio.Event()

    async def __rpc_report_progress(self, stream: Stream[ProgressEvent, ProgressAck]) -> None:
        event = await stream.recv_message()
        assert event is not None
        given = stream.metadata.get("authorization") if stream.metadata else None
        self.headers.append(given if isinstance(given, str) else None)
        key = stream.metadata.get("x-idempotency-key") if stream.metadata else None
        self.keys.append(key if isinstance(key, str) else None)
        if self.token is not None and given != f"Bearer {self.token}":
            raise GRPCError(Code.UNAUTHENTICATED, "wrong token")
        self.events.append(event)
        self.changed.set()
        self.changed = anyio.Event()
        await stream.send_message(ProgressAck())

    def __mapping__(self) -> dict[str, Any]:
        mapping: dict[str, Any] = super().__mapping__()
        handler = mapping["/actorstage.v1.ProgressControl/ReportProgress"]
        mapping["/actorstage.v1.ProgressControl/ReportProgress"] = handler._replace(
            func=self.__rpc_report_progress)
        return mapping

    async def wait_for(self, condition: Callable[[list[ProgressEvent]], bool]) -> None:
        with anyio.fail_after(20):
            while not condition(self.events):
                await self.changed.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def endpoint(receiver: Receiver, port: int) -> AsyncIterator[None]:
    server = GrpcServer([receiver])
    await server.start("127.0.0.1", port)
    try:
        yield
    finally:
        with anyio.fail_after(5):
            await server.aclose()


def _finished(*ids: str) -> Callable[[list[ProgressEvent]], bool]:
    return lambda events: {event.execution_id for event in events
                           if event.kind == "workflow_finished"} >= set(ids)


async def test_an_endpoint_down_at_first_then_up_gets_every_event_in_order_once() -> None:
    port = _free_port()
    receiver = Receiver(token="cb-token")
    async with serving(callback=f"127.0.0.1:{port}", callback_token="cb-token") as (
            server, stub):
        callbacks = server.callbacks
        assert callbacks is not None
        callbacks.backoff = 0.01
        for name in ("one", "two"):
            await stub.execute_async(ExecuteRequest(execution_id=name, workflow=SHORT))
        await run(stub, ExecuteRequest(execution_id="three", workflow=SHORT))
        with anyio.fail_after(10):  # the endpoint is down: calls fail and are retried
            await wait_until(lambda: callbacks.failures >= 3)
        assert receiver.events == []
        async with endpoint(receiver, port):
            await receiver.wait_for(_finished("one", "two", "three"))
            with anyio.fail_after(5):
                await callbacks.wait_flushed()
        for name in ("one", "two", "three"):
            history = [event async for event in stub.watch_execution(
                WatchExecutionRequest(name))]
            received = [event for event in receiver.events if event.execution_id == name]
            assert [event.seq for event in received] == [event.seq for event in history]
            assert received == history
        assert set(receiver.headers) == {"Bearer cb-token"}
        assert callbacks.lost == 0 and callbacks.delivered == len(receiver.events)
        assert server.metrics.render().count("actorstage_callback_failures_total 0") == 0


async def test_a_full_queue_gives_up_the_oldest_events_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = _free_port()
    async with serving(callback=f"127.0.0.1:{port}", max_pending_callbacks=4) as (
            server, stub):
        callbacks = server.callbacks
        assert callbacks is not None
        with caplog.at_level(logging.WARNING, "actorstage.service.callbacks"):
            events = await run(stub, ExecuteRequest(execution_id="x", workflow=SHORT))
        # One in flight, four waiting: the rest were given up, and said so.
        assert callbacks.lost == len(events) - 5
        assert callbacks.pending == 5
        assert "gave up event seq" in caplog.text and "execution x" in caplog.text
        assert f"actorstage_callback_events_lost_total {len(events) - 5}" in \
            server.metrics.render()
        receiver = Receiver()
        callbacks.backoff = callbacks.max_backoff = 0.01
        async with endpoint(receiver, port):
            await receiver.wait_for(_finished("x"))
        assert [event.seq for event in receiver.events] == [
            event.seq for event in [events[0], *events[-4:]]]


async def test_stopping_flushes_the_callbacks_of_cancelled_executions() -> None:
    port = _free_port()
    receiver = Receiver()
    async with endpoint(receiver, port):
        async with serving(callback=f"127.0.0.1:{port}") as (server, stub):
            await stub.execute_async(ExecuteRequest(execution_id="slow", workflow=long(60)))
            await receiver.wait_for(lambda events: any(
                event.kind == "action_started" and event.action_id == "nap" for event in events))
        # Leaving the block stopped the service: the cancel's end was delivered first.
        last = receiver.events[-1]
        assert (last.kind, last.status) == ("workflow_finished", ExecutionStatus.CANCELLED)
        assert server.callbacks is not None and server.callbacks.lost == 0


async def test_callbacks_travel_over_tls_to_an_endpoint_the_ca_vouches_for(
    tmp_path: Path,
) -> None:
    from tests.service.test_operations import _certificate

    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    receiver = Receiver(token="tls-token")
    server = GrpcServer([receiver])
    port = _free_port()
    await server.start("127.0.0.1", port, ssl=context)
    try:
        async with serving(callback=f"127.0.0.1:{port}", callback_ca=cert,
                           callback_token="tls-token") as (_, stub):
            events = await run(stub, ExecuteRequest(execution_id="tls", workflow=SHORT))
            await receiver.wait_for(_finished("tls"))
    finally:
        with anyio.fail_after(5):
            await server.aclose()
    assert [event.seq for event in receiver.events] == [event.seq for event in events]
