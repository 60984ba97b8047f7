"""What the service knows of each execution: its events, status and outcome, and the registry.

Plain bookkeeping: the RPC handlers and the broker handler feed it; the
streams read from it. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from actorstage._proto.actorstage.v1 import (
    ErrorInfo,
    ExecutionInfo,
    ExecutionStatus,
    Isolation,
    ProgressEvent,
    WorkflowMetadata,
)
from actorstage.workflows._events import BrokerMessage, MessageType, Status, WorkflowResult
from actorstage.workflows._events import ErrorInfo as WorkflowError
from actorstage.workflows._events import ProgressEvent as WorkflowEvent
from actorstage.workflows._runner import Execution

__all__ = ["ExecutionRecord", "Executions", "HistoryLost", "status_of"]

TERMINAL = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED,
                      ExecutionStatus.CANCELLED})

_json = msgspec.json.Encoder()


def status_of(status: Status | str) -> ExecutionStatus:
    """The protobuf status of a workflow status (``""``: unspecified)."""
    return ExecutionStatus[str(status).upper()] if status else ExecutionStatus.UNSPECIFIED


def error_of(error: WorkflowError | None) -> ErrorInfo | None:
    if error is None:
        return None
    return ErrorInfo(type_name=error.type_name, message=error.message,
                     traceback=error.traceback, stage_id=error.stage_id,
                     action_id=error.action_id)


def store_json(store: dict[str, Any]) -> str:
    return _json.encode(store).decode()


class HistoryLost(Exception):
    """The events a watcher asked for were discarded (only the latest are kept)."""

    def __init__(self, execution_id: str, after_seq: int, kept_from: int) -> None:
        super().__init__(
            f"execution {execution_id!r} keeps its events from seq {kept_from} on; the events "
            f"after seq {after_seq} up to it were discarded (history is bounded per execution)")


class ExecutionRecord:
    """One execution as the service sees it: request, status, events, outcome."""

    def __init__(self, execution_id: str, *, key: Any, workflow_id: str,
                 metadata: WorkflowMetadata, isolation: Isolation, store: dict[str, Any],
                 max_events: int, number: int) -> None:
        self.id = execution_id
        self.key = key  # what identifies the request, for idempotent re-execution
        self.workflow_id = workflow_id
        self.metadata = metadata
        self.isolation = isolation
        self.number = number  # creation order, for stable pagination
        self.created_at = time.time()
        self.clock = time.monotonic()
        self.ended_clock: float | None = None
        self.status = ExecutionStatus.PENDING
        self.store = dict(store)
        self.error: ErrorInfo | None = None
        self.reason = ""
        self.pid = 0
        self.last_seq = 0
        self.execution: Execution | None = None
        self.pending: list[str] = []  # signals that came before the execution started
        self.disowned = False  # another runner took it over: what ends here is not its end
        self._events: list[ProgressEvent] = []
        self._max_events = max_events
        self._discarded_through = 0  # the seq of the latest discarded event
        self._changed = asyncio.Event()
        self.ended_event = asyncio.Event()
        self.on_end: Callable[[ExecutionRecord], None] | None = None
        self.on_event: Callable[[ProgressEvent], None] | None = None

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration(self) -> float:
        end = self.ended_clock if self.ended_clock is not None else time.monotonic()
        return end - self.clock

    def info(self) -> ExecutionInfo:
        return ExecutionInfo(
            execution_id=self.id, workflow_id=self.workflow_id, metadata=self.metadata,
            status=self.status, isolation=self.isolation, pid=self.pid,
            created_at=self.created_at, duration=self.duration, last_seq=self.last_seq,
            store_json=store_json(self.store), error=self.error, reason=self.reason)

    # -- feeding it ------------------------------------------------------------------------

    def attach(self, execution: Execution) -> list[str]:
        """The execution started; returns the signals that waited for it."""
        self.execution = execution
        self.pid = execution.pid or 0
        if not self.ended and execution.status != Status.PENDING:
            self.status = status_of(execution.status)
        pending, self.pending = self.pending, []
        execution.add_done_callback(self._finished)
        return pending

    def observe(self, message: BrokerMessage) -> ProgressEvent | None:
        """Take in a broker message of this execution; the event it makes, if any."""
        self.last_seq = max(self.last_seq, message.seq)
        payload = message.payload
        kind = message.message_type
        if kind == MessageType.STORE_PUT:
            self.store[payload["key"]] = payload["value"]
        elif kind == MessageType.STORE_DELETE:
            self.store.pop(payload["key"], None)
        elif kind == MessageType.FINAL_STORE:
            self.store = dict(payload)
        elif kind == MessageType.LOG:
            return self._add(ProgressEvent(
                seq=message.seq, kind="log", execution_id=self.id, workflow_id=self.workflow_id,
                stage_id=message.stage_id, action_id=message.action_id, time=message.time,
                message=f"{payload.get('level', 'INFO')}: {payload.get('message', '')}"))
        elif kind == MessageType.PROGRESS and isinstance(payload, WorkflowEvent):
            return self._progress(payload)
        return None

    def _progress(self, event: WorkflowEvent) -> ProgressEvent:
        status = status_of(event.status)
        if event.kind == "workflow_finished":
            self._end(status, error_of(event.error))
        elif event.kind in ("workflow_started", "workflow_resumed", "workflow_recovered") \
                and not self.ended:
            self.status = status if event.kind == "workflow_recovered" and status == \
                ExecutionStatus.PAUSED else ExecutionStatus.RUNNING
        elif event.kind == "workflow_paused" and not self.ended:
            self.status = ExecutionStatus.PAUSED
        return self._add(ProgressEvent(
            seq=event.seq, kind=event.kind, execution_id=self.id, workflow_id=self.workflow_id,
            stage_id=event.stage_id, action_id=event.action_id, status=status,
            attempt=event.attempt, time=event.time, error=error_of(event.error),
            store_json=store_json(self.store) if event.kind == "workflow_finished" else "",
            task=event.task,
            data_json="" if event.data is None else _json.encode(event.data).decode()))

    def disown(self) -> None:
        """Another runner runs it now (a shared state): nothing here ends it any more."""
        self.disowned = True
        self.execution = None

    def _finished(self, result: WorkflowResult) -> None:
        """The execution's result is in: end it, with a terminal event if none came."""
        if self.disowned:
            return
        if result.store:  # empty when a child crashed: the copy here is all there is
            self.store = dict(result.store)
        if not self.ended:  # it ended without its workflow reporting (a crash, a stop)
            self.fail(result.status, error_of(result.error))
        elif self.error is None:
            self.error = error_of(result.error)

    def fail(self, status: Status | ExecutionStatus, error: ErrorInfo | None) -> None:
        """End it from outside its workflow (it could not start, or was lost)."""
        proto_status = status if isinstance(status, ExecutionStatus) else status_of(status)
        self._end(proto_status, error)
        self.last_seq += 1
        self._add(ProgressEvent(
            seq=self.last_seq, kind="workflow_finished", execution_id=self.id,
            workflow_id=self.workflow_id, status=proto_status, time=time.time(), error=error,
            store_json=store_json(self.store)))

    def _end(self, status: ExecutionStatus, error: ErrorInfo | None) -> None:
        if self.ended:
            return
        self.status, self.error = status, error
        self.ended_clock = time.monotonic()
        self.ended_event.set()
        if self.on_end is not None:
            self.on_end(self)

    def _add(self, event: ProgressEvent) -> ProgressEvent:
        events = self._events
        events.append(event)
        if len(events) > self._max_events:
            dropped = len(events) - self._max_events
            self._discarded_through = events[dropped - 1].seq
            del events[:dropped]
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.on_event is not None:
            self.on_event(event)
        return event

    # -- reading it ------------------------------------------------------------------------

    def events_after(self, after_seq: int) -> list[ProgressEvent]:
        """The kept events with a greater seq; ``HistoryLost`` if some were discarded."""
        if after_seq < self._discarded_through:
            raise HistoryLost(self.id, after_seq, self._discarded_through + 1)
        return [event for event in self._events if event.seq > after_seq]

    async def follow(self, after_seq: int = 0) -> AsyncIterator[ProgressEvent]:
        """The events after ``after_seq``, then the new ones, up to the terminal event."""
        while True:
            changed = self._changed
            for event in self.events_after(after_seq):
                yield event
                after_seq = event.seq
                if event.kind == "workflow_finished":
                    return
            await changed.wait()


class Executions:
    """The executions by id, oldest first; keeps at most ``max_finished`` that have ended."""

    def __init__(self, max_finished: int = 1000) -> None:
        self._records: OrderedDict[str, ExecutionRecord] = OrderedDict()
        self._numbers = itertools.count(1)
        self._next = 1  # the least number not given out yet (after restored ones)
        self.max_finished = max_finished

    def __len__(self) -> int:
        return len(self._records)

    def get(self, execution_id: str) -> ExecutionRecord | None:
        return self._records.get(execution_id)

    def next_number(self) -> int:
        number = next(self._numbers)
        self._next = number + 1
        return number

    def restored(self, number: int) -> int:
        """``number``, a restored execution's; new ones are numbered after it."""
        if number >= self._next:
            self._numbers = itertools.count(number + 1)
            self._next = number + 1
        return number

    def add(self, record: ExecutionRecord) -> None:
        self._records[record.id] = record
        self.evict()

    def running(self) -> list[ExecutionRecord]:
        return [record for record in self._records.values() if not record.ended]

    def evict(self) -> None:
        """Forget the oldest ended executions beyond ``max_finished``."""
        ended = [record.id for record in self._records.values() if record.ended]
        for execution_id in ended[: max(0, len(ended) - self.max_finished)]:
            del self._records[execution_id]

    def page(self, *, status: ExecutionStatus, labels: dict[str, str], size: int,
             after: int) -> tuple[list[ExecutionRecord], int]:
        """Up to ``size`` matching records numbered above ``after``, and the next cursor.

        The cursor is 0 on the last page.
        """
        found: list[ExecutionRecord] = []
        for record in self._records.values():
            if record.number <= after:
                continue
            if status != ExecutionStatus.UNSPECIFIED and record.status != status:
                continue
            if any(record.metadata.labels.get(name) != value for name, value in labels.items()):
                continue
            if len(found) == size:
                return found, found[-1].number
            found.append(record)
        return found, 0
