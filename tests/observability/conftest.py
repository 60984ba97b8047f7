"""An OpenTelemetry SDK with an in-memory exporter, set for one test and taken away after
(the global provider reset as OpenTelemetry's own test utilities do), and an OTLP/gRPC
receiver for the spans of child processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from actorstage import _metrics, _telemetry
from tests.observability.otlp import TraceReceiver, otlp_receiver
from tests.transport.conftest import no_leftovers


def _reset_meter_provider() -> None:
    from opentelemetry.metrics import _internal

    _internal._METER_PROVIDER_SET_ONCE = Once()
    _internal._METER_PROVIDER = None


@pytest.fixture
def metric_reader() -> Iterator[Any]:
    """The SDK's in-memory metric reader, on a meter provider set for one test."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    _reset_meter_provider()
    metrics.set_meter_provider(provider)
    try:
        yield reader
    finally:
        _metrics.disable()
        _reset_meter_provider()
        provider.shutdown()


def _reset_provider() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        _telemetry.disable()
        _reset_provider()
        provider.shutdown()


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TraceReceiver]:
    """Child processes export their spans here (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    async with otlp_receiver() as (received, endpoint):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        yield received


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    with no_leftovers():
        yield
