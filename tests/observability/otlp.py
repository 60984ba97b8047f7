"""A real OTLP/gRPC trace receiver for the tests: the collector's TraceService (``Export``),
served by grpclib on loopback, keeping every span it is sent with its resource."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class TraceReceiver:
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def export(self, stream: Stream[ExportTraceServiceRequest,
                                          ExportTraceServiceResponse]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.requests += 1
        for resource_spans in request.resource_spans:
            resource = {item.key: _value(item.value)
                        for item in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(ReceivedSpan(
                        name=span.name, trace_id=int.from_bytes(span.trace_id, "big"),
                        span_id=int.from_bytes(span.span_id, "big"),
                        parent_id=int.from_bytes(span.parent_span_id, "big")
                        if span.parent_span_id else None,
                        kind=span.kind,
                        attributes={item.key: _value(item.value) for item in span.attributes},
                        resource=resource))
        self.changed.set()
        await stream.send_message(ExportTraceServiceResponse())

    def __mapping__(self) -> dict[str, Handler]:
        return {"/opentelemetry.proto.collector.trace.v1.TraceService/Export": Handler(
            self.export, Cardinality.UNARY_UNARY, ExportTraceServiceRequest,
            ExportTraceServiceResponse)}

    async def wait_for(self, predicate: Any) -> None:
        """Wait until ``predicate(spans)`` holds (at most 20 s)."""
        async with asyncio.timeout(20.0):
            while not predicate(self.spans):
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[TraceReceiver, str]]:
    """A receiver and its endpoint (``http://127.0.0.1:PORT``), for
    ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    receiver = TraceReceiver()
    server = Server([receiver])
    await server.start("127.0.0.1", 0)
    try:
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield receiver, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
