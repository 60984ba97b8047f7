"""Metrics through the OpenTelemetry metrics API: the runtime's side.

Switched on as tracing is (``_telemetry``): when an ``ActorSystem`` starts
in a process where a meter provider is set (an SDK is configured), or
``ACTORSTAGE_METRICS=1`` (``=0`` keeps them off). Off, nothing is imported
and nothing recorded. Most instruments are observed (read when the SDK
collects) from what the runtime counts anyway: each cell's handled messages
(added up per run of its drain, not per message), its mailbox, the live
systems' process actors and the live runners' executions. Asks are timed
(a wrapper around ``ask``, as tracing's), restarts, dead letters, executions
ending and pipeline node batches are counted where they happen.
"""

from __future__ import annotations

import sys
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

ENV = "ACTORSTAGE_METRICS"


class _State:
    on = False
    meter: Any = None
    ask_duration: Any = None
    restarts: Any = None
    executions_ended: Any = None
    node_items: Any = None
    node_duration: Any = None


STATE = _State()
SYSTEMS: weakref.WeakSet[Any] = weakref.WeakSet()  # the running actor systems
RUNNERS: weakref.WeakSet[Any] = weakref.WeakSet()  # the open workflow runners
SESSIONS: weakref.WeakSet[Any] = weakref.WeakSet()  # the pipeline sessions running
HANDLED_BY_GONE: Counter[str] = Counter()  # messages handled by actors that stopped, by class
DEAD_LETTERS_GONE: Counter[str] = Counter()  # dead letters of systems that closed, by reason


def sdk_configured() -> bool:
    metrics = sys.modules.get("opentelemetry.metrics")
    if metrics is None:
        return False
    return type(metrics.get_meter_provider()).__name__ not in (
        "_ProxyMeterProvider", "NoOpMeterProvider")


def auto() -> None:
    """At a system's start: switch metrics on when they are wanted and available."""
    from actorstage._telemetry import wanted

    if not STATE.on and wanted(ENV, sdk_configured):
        enable()


def enable() -> None:
    from opentelemetry import metrics

    from actorstage import __version__

    meter = STATE.meter = metrics.get_meter("actorstage", __version__)
    meter.create_observable_counter(
        "actorstage.messages.handled", [_handled], unit="{message}",
        description="Messages handled by actors of this process, by actor class")
    meter.create_observable_gauge(
        "actorstage.mailbox.depth", [_depths], unit="{message}",
        description="Messages waiting in mailboxes, by actor class")
    meter.create_observable_gauge(
        "actorstage.actors", [_actors], unit="{actor}",
        description="Actors of this process's systems, by status")
    meter.create_observable_gauge(
        "actorstage.processes", [_processes], unit="{process}",
        description="Child processes hosting process actors, alive")
    meter.create_observable_gauge(
        "actorstage.executions", [_executions], unit="{execution}",
        description="Workflow executions of the open runners, running or paused")
    STATE.ask_duration = meter.create_histogram(
        "actorstage.ask.duration", unit="s",
        description="Time from an ask to its answer, by the asked actor's class")
    STATE.restarts = meter.create_counter(
        "actorstage.restarts", unit="{restart}", description="Actor restarts, by class")
    meter.create_observable_counter(
        "actorstage.dead_letters", [_dead_letters], unit="{message}",
        description="Messages that reached no actor, by reason")
    STATE.executions_ended = meter.create_counter(
        "actorstage.executions.ended", unit="{execution}",
        description="Workflow executions that ended, by status")
    STATE.node_items = meter.create_counter(
        "actorstage.pipeline.node.items", unit="{item}",
        description="Items through a pipeline node, by pipeline and node")
    STATE.node_duration = meter.create_histogram(
        "actorstage.pipeline.node.duration", unit="s",
        description="Time a pipeline node took per item, one record per batch")
    if not STATE.on:
        from actorstage._sends import switch

        STATE.on = True
        switch("metrics", _timed)


def disable() -> None:
    from actorstage._sends import switch

    STATE.on = False
    switch("metrics", None)


def _timed(name: str, original: Any) -> Any:
    """An ``ask`` that records its duration (the other sends are left as they are)."""
    if name != "ask":
        return None

    async def ask(self: Any, message: Any) -> Any:
        began = time.perf_counter()
        try:
            return await original(self, message)
        finally:
            cell = getattr(self, "_cell", None)
            kind = cell.factory.__qualname__ if cell is not None else "remote"
            STATE.ask_duration.record(time.perf_counter() - began,
                                      {"actorstage.actor.class": kind})

    ask.__doc__ = original.__doc__
    return ask


# -- what is counted where it happens ---------------------------------------------------------

def restarted(cell: Any) -> None:
    if STATE.on:
        STATE.restarts.add(1, {"actorstage.actor.class": cell.factory.__qualname__})


def _reason(reason: str) -> str:
    """A dead letter's reason without what varies (paths): few values, as a metric needs."""
    return reason.split(" (", 1)[0].split(":", 1)[0][:40]


def execution_ended(status: str) -> None:
    if STATE.on:
        STATE.executions_ended.add(1, {"actorstage.workflow.status": status})


def node_batch(pipeline: str, node: str, items: int, seconds: float) -> None:
    if STATE.on and items:
        attributes = {"actorstage.pipeline.name": pipeline, "actorstage.node.id": node}
        STATE.node_items.add(items, attributes)
        STATE.node_duration.record(seconds / items, attributes)


# -- what is observed when the SDK collects ----------------------------------------------------

def cells(systems: Iterable[Any] | None = None) -> Iterator[Any]:
    """Every cell of ``systems`` (the running systems of this process), parents first."""
    for system in list(SYSTEMS if systems is None else systems):
        root = getattr(system, "_guardian_cell", None)
        if root is None:
            continue
        stack = [root]
        while stack:
            cell = stack.pop()
            yield cell
            stack.extend(cell.children.values())


def _observations(values: Counter[Any], key: str) -> list[Any]:
    from opentelemetry.metrics import Observation

    return [Observation(value, {key: name}) for name, value in values.items()]


def stopped(cell: Any) -> None:
    """A cell stopped for good: what it handled stays counted (the counter never falls)."""
    if cell.handled:
        HANDLED_BY_GONE[cell.factory.__qualname__] += cell.handled


def system_closed(system: Any) -> None:
    """A system closed: its dead letters stay counted (the counter never falls)."""
    SYSTEMS.discard(system)
    for reason, count in system.dead_letters._by_reason.items():
        DEAD_LETTERS_GONE[_reason(reason)] += count


def _handled(_options: Any) -> list[Any]:
    from actorstage.actors._cell import STOPPED

    totals = Counter(HANDLED_BY_GONE)
    for cell in cells():
        if cell.state != STOPPED:  # (a stopped one is in HANDLED_BY_GONE already)
            totals[cell.factory.__qualname__] += cell.handled
    return _observations(totals, "actorstage.actor.class")


def _depths(_options: Any) -> list[Any]:
    totals: Counter[str] = Counter()
    for cell in cells():
        queue = cell.queue
        totals[cell.factory.__qualname__] += len(queue) if queue else 0
    return _observations(totals, "actorstage.actor.class")


def _actors(_options: Any) -> list[Any]:
    from actorstage.actors._tree import _status as status_of

    totals: Counter[str] = Counter(str(status_of(cell)) for cell in cells())
    return _observations(totals, "actorstage.actor.status")


def _dead_letters(_options: Any) -> list[Any]:
    totals = Counter(DEAD_LETTERS_GONE)
    for system in list(SYSTEMS):
        for reason, count in system.dead_letters._by_reason.items():
            totals[_reason(reason)] += count
    return _observations(totals, "actorstage.dead_letter.reason")


def _processes(_options: Any) -> list[Any]:
    from opentelemetry.metrics import Observation

    alive = sum(1 for cell in cells() if cell.process is not None and cell.pump is not None)
    return [Observation(alive)]


def runners() -> list[Any]:
    """The open runners whose system runs (a runner nobody closed goes with its system)."""
    return [runner for runner in list(RUNNERS)
            if runner._system is not None and runner._system.running]


def _executions(_options: Any) -> list[Any]:
    totals: Counter[str] = Counter()
    for runner in runners():
        for execution in list(runner._running):
            totals[str(execution.status)] += 1
    return _observations(totals, "actorstage.workflow.status")
