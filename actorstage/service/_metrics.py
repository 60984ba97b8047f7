"""The service's metrics, and a tiny HTTP endpoint serving them in Prometheus text format.

Only what the services need: counters, gauges, one histogram and one
summary. Rendering follows the text exposition format 0.0.4.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["MetricsServer", "PipelineMetrics", "ServiceMetrics"]

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
        self.statuses: Any = None  # the StatusSender (Stigmer's updateStatus), likewise
        self.pipelines: PipelineMetrics | None = None

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
        yield from self._durations("actorstage_execution_duration_seconds",
                                   "How long executions ran.")
        # The same figures under the names Stigmer's workflow runner exports, which its
        # operators' dashboards and alerts already use.
        yield ("# HELP workflow_runner_active_executions Executions that have not ended "
               "(Stigmer's name).")
        yield "# TYPE workflow_runner_active_executions gauge"
        yield f"workflow_runner_active_executions {self.active}"
        yield from self._durations("workflow_runner_execution_duration_seconds",
                                   "How long executions ran (Stigmer's name).")
        for name, sender in (("callback", self.callbacks), ("status_callback", self.statuses)):
            yield (f"# HELP actorstage_{name}_failures_total Calls of the {name.replace('_', ' ')}"
                   " endpoint that failed (each is retried).")
            yield f"# TYPE actorstage_{name}_failures_total counter"
            yield f"actorstage_{name}_failures_total {sender.failures if sender else 0}"
            yield (f"# HELP actorstage_{name}_events_lost_total Calls of the "
                   f"{name.replace('_', ' ')} endpoint given up undelivered.")
            yield f"# TYPE actorstage_{name}_events_lost_total counter"
            yield f"actorstage_{name}_events_lost_total {sender.lost if sender else 0}"
        if self.pipelines is not None:
            yield from self.pipelines.lines()

    def _durations(self, name: str, help: str) -> Iterator[str]:
        yield f"# HELP {name} {help}"
        yield f"# TYPE {name} histogram"
        cumulative = 0
        for bound, count in zip(DURATION_BUCKETS, self.buckets, strict=True):
            cumulative += count
            yield f'{name}_bucket{{le="{_number(bound)}"}} {cumulative}'
        yield f'{name}_bucket{{le="+Inf"}} {self.duration_count}'
        yield f"{name}_sum {self.duration_sum!r}"
        yield f"{name}_count {self.duration_count}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class PipelineMetrics:
    """Pipeline sessions, and per node (by pipeline name and node id): items in, out and
    failed, processing time (a summary: mean latency is its sum over its count), restarts,
    and queue depth now.

    Ended sessions add to running totals; live sessions are read when rendering. At most
    ``max_series`` (pipeline, node) pairs are kept; later ones count under ``_other``.
    """

    def __init__(self, max_series: int = 1000) -> None:
        self.max_series = max_series
        self.live: dict[int, Any] = {}  # id(session) -> PipelineSession
        self.ended: dict[str, int] = {}
        self.outputs_total = 0
        # (pipeline, node) -> [items_in, items_out, failed, busy_seconds, restarts]
        self.totals: dict[tuple[str, str], list[float]] = {}

    def started(self, session: Any) -> None:
        self.live[id(session)] = session

    def finished(self, session: Any, status: str) -> None:
        if self.live.pop(id(session), None) is None:
            return
        self.ended[status] = self.ended.get(status, 0) + 1
        for key, figures in self._figures(session):
            total = self.totals.setdefault(self._key(key), [0.0] * 5)
            for index, value in enumerate(figures):
                total[index] += value

    def outputs(self, count: int) -> None:
        self.outputs_total += count

    def _key(self, key: tuple[str, str]) -> tuple[str, str]:
        if key in self.totals or len(self.totals) < self.max_series:
            return key
        return ("_other", "_other")

    @staticmethod
    def _figures(session: Any) -> Iterator[tuple[tuple[str, str], list[float]]]:
        for node_id, stats in session.stats().items():
            yield (session.plan.name, node_id), [
                stats.items_in, stats.items_out, stats.failed, stats.busy_seconds,
                stats.restarts]

    def lines(self) -> Iterator[str]:
        figures = {key: list(values) for key, values in self.totals.items()}
        depths: dict[tuple[str, str], int] = {}
        for session in self.live.values():
            for key, values in self._figures(session):
                key = self._key(key)
                total = figures.setdefault(key, [0.0] * 5)
                for index, value in enumerate(values):
                    total[index] += value
            for node_id, depth in session.queue_depths().items():
                key = self._key((session.plan.name, node_id))
                depths[key] = depths.get(key, 0) + depth
        yield "# HELP actorstage_pipeline_sessions_active Pipeline sessions running."
        yield "# TYPE actorstage_pipeline_sessions_active gauge"
        yield f"actorstage_pipeline_sessions_active {len(self.live)}"
        yield "# HELP actorstage_pipeline_sessions_total Pipeline sessions that ended, by status."
        yield "# TYPE actorstage_pipeline_sessions_total counter"
        for status in ("succeeded", "failed", "cancelled"):
            yield f'actorstage_pipeline_sessions_total{{status="{status}"}} ' \
                  f"{self.ended.get(status, 0)}"
        yield "# HELP actorstage_pipeline_outputs_total Items pipelines sent back to callers."
        yield "# TYPE actorstage_pipeline_outputs_total counter"
        yield f"actorstage_pipeline_outputs_total {self.outputs_total}"
        keys = sorted(figures)

        def labels(key: tuple[str, str]) -> str:
            return f'pipeline="{_label(key[0])}",node="{_label(key[1])}"'

        for name, index, help_text in (
                ("actorstage_pipeline_node_items_in_total", 0, "Items nodes took in."),
                ("actorstage_pipeline_node_items_out_total", 1, "Items nodes emitted."),
                ("actorstage_pipeline_node_items_failed_total", 2, "Items nodes failed on."),
                ("actorstage_pipeline_node_restarts_total", 4, "Node process restarts.")):
            yield f"# HELP {name} {help_text}"
            yield f"# TYPE {name} counter"
            for key in keys:
                yield f"{name}{{{labels(key)}}} {_number(figures[key][index])}"
        name = "actorstage_pipeline_node_latency_seconds"
        yield (f"# HELP {name} Time nodes spent processing items (mean latency: sum / "
               "count).")
        yield f"# TYPE {name} summary"
        for key in keys:
            yield f"{name}_sum{{{labels(key)}}} {figures[key][3]!r}"
            yield f"{name}_count{{{labels(key)}}} {_number(figures[key][0])}"
        name = "actorstage_pipeline_node_queue_depth"
        yield f"# HELP {name} Items waiting for a node now, over running sessions."
        yield f"# TYPE {name} gauge"
        for key in sorted(depths):
            yield f"{name}{{{labels(key)}}} {depths[key]}"


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
