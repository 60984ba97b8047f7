"""The service's metrics, and a tiny HTTP endpoint serving them in Prometheus text format.

Only what the runner service needs: counters and gauges with at most one
label, and one histogram. Rendering follows the text exposition format 0.0.4.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["MetricsServer", "ServiceMetrics"]

log = logging.getLogger("actorstage.service.metrics")

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    900.0, 3600.0)


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class ServiceMetrics:
    """Executions (active, ended by status, durations) and callback failures and losses."""

    def __init__(self) -> None:
        self.active = 0
        self.ended: dict[str, int] = {}
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.duration_sum = 0.0
        self.duration_count = 0
        self.callbacks: Any = None  # the CallbackSender, whose counts are read at render

    def started(self) -> None:
        self.active += 1

    def finished(self, status: str, duration: float) -> None:
        self.active -= 1
        self.ended[status] = self.ended.get(status, 0) + 1
        index = bisect.bisect_left(DURATION_BUCKETS, duration)
        if index < len(self.buckets):
            self.buckets[index] += 1
        self.duration_sum += duration
        self.duration_count += 1

    def render(self) -> str:
        return "".join(line + "\n" for line in self._lines())

    def _lines(self) -> Iterator[str]:
        yield "# HELP actorstage_executions_active Executions that have not ended."
        yield "# TYPE actorstage_executions_active gauge"
        yield f"actorstage_executions_active {self.active}"
        yield "# HELP actorstage_executions_total Executions that ended, by final status."
        yield "# TYPE actorstage_executions_total counter"
        for status in ("succeeded", "failed", "cancelled"):
            yield f'actorstage_executions_total{{status="{status}"}} {self.ended.get(status, 0)}'
        yield "# HELP actorstage_execution_duration_seconds How long executions ran."
        yield "# TYPE actorstage_execution_duration_seconds histogram"
        cumulative = 0
        for bound, count in zip(DURATION_BUCKETS, self.buckets, strict=True):
            cumulative += count
            yield (f'actorstage_execution_duration_seconds_bucket{{le="{_number(bound)}"}} '
                   f"{cumulative}")
        yield (f'actorstage_execution_duration_seconds_bucket{{le="+Inf"}} '
               f"{self.duration_count}")
        yield f"actorstage_execution_duration_seconds_sum {self.duration_sum!r}"
        yield f"actorstage_execution_duration_seconds_count {self.duration_count}"
        yield "# HELP actorstage_callback_failures_total Progress callback calls that failed."
        yield "# TYPE actorstage_callback_failures_total counter"
        callbacks = self.callbacks
        yield f"actorstage_callback_failures_total {callbacks.failures if callbacks else 0}"
        yield ("# HELP actorstage_callback_events_lost_total Progress events given up "
               "undelivered.")
        yield "# TYPE actorstage_callback_events_lost_total counter"
        yield f"actorstage_callback_events_lost_total {callbacks.lost if callbacks else 0}"


class MetricsServer:
    """Serves ``GET /metrics`` over HTTP/1.1 on ``host:port`` (0: an OS-assigned port)."""

    def __init__(self, metrics: ServiceMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host, self.port = host, port
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body = "405 Method Not Allowed", b"only GET\n"
            elif path != b"/metrics":
                status, body = "404 Not Found", b"metrics are at /metrics\n"
            else:
                status, body = "200 OK", self.metrics.render().encode()
            head = (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; "
                    f"charset=utf-8\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n")
            writer.write(head.encode() + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that went away or sent garbage gets nothing
        finally:
            writer.close()
