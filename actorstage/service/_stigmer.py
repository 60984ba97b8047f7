"""Stigmer's workflow runner contract, served beside actorstage's own.

``ai.stigmer.agentic.workflowrunner.v1.WorkflowRunnerServiceController``
starts, pauses, resumes and cancels Serverless Workflow executions; their
progress goes out as Stigmer's runner sends it: calls of
``ai.stigmer.agentic.workflowexecution.v1.WorkflowExecutionCommandController/updateStatus``,
each with the whole ``WorkflowExecutionStatus`` (phase, every task with its
status, input and output, the workflow's output, error, times).

The executions are the runner service's (``RunnerService``): the same
records, so ``actorstage.v1.Runner`` lists, watches and controls them too.
Where Stigmer's server answers a case its own way, this one does the same:
cancel is OK for an unknown or ended execution; pause and resume are
NOT_FOUND for one that is unknown or has ended and FAILED_PRECONDITION when
it is not running (pause) or not paused (resume). Unlike Stigmer's, pause and
resume take effect: at the next task boundary, or inside ``wait``.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from grpclib import GRPCError
from grpclib.const import Status as Code

from actorstage._proto.actorstage.v1 import ExecuteRequest, ExecutionStatus
from actorstage._proto.ai.stigmer.agentic.workflowexecution.v1 import (
    ExecutionPhase,
    WorkflowExecutionCommandControllerStub,
    WorkflowExecutionStatus,
    WorkflowExecutionUpdateStatusInput,
    WorkflowTask,
    WorkflowTaskStatus,
    WorkflowTaskType,
)
from actorstage._proto.ai.stigmer.agentic.workflowrunner.v1 import (
    CancelExecutionRequest,
    PauseExecutionRequest,
    ResumeExecutionRequest,
    WorkflowExecuteInput,
    WorkflowExecuteResponse,
    WorkflowRunnerServiceControllerBase,
)
from actorstage._proto.google.protobuf import Empty, Struct
from actorstage.serverless._definition import Task
from actorstage.serverless._execution import ServerlessWorkflow
from actorstage.service._callbacks import Sender
from actorstage.service._records import ExecutionRecord
from actorstage.service._runner_service import RunnerService
from actorstage.workflows._events import BrokerMessage, MessageType, ProgressEvent

__all__ = ["StatusSender", "StatusUpdate", "StigmerRunner"]

log = logging.getLogger("actorstage.service.stigmer")

# What Stigmer's task list calls each kind of task.
_TYPES = {"call": WorkflowTaskType.WORKFLOW_TASK_API_CALL,
          "switch": WorkflowTaskType.WORKFLOW_TASK_CONDITIONAL,
          "fork": WorkflowTaskType.WORKFLOW_TASK_PARALLEL,
          "set": WorkflowTaskType.WORKFLOW_TASK_TRANSFORM}
_ENDED = {"succeeded": WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED,
          "failed": WorkflowTaskStatus.WORKFLOW_TASK_FAILED,
          "cancelled": WorkflowTaskStatus.WORKFLOW_TASK_FAILED}
_PHASES = {"succeeded": ExecutionPhase.EXECUTION_COMPLETED,
           "failed": ExecutionPhase.EXECUTION_FAILED,
           "cancelled": ExecutionPhase.EXECUTION_CANCELLED}


def _time(seconds: float) -> str:
    """RFC 3339, in UTC, to the millisecond."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _struct(value: Any, key: str) -> Struct | None:
    """A JSON value as a Struct: a mapping as it is, anything else under ``key``."""
    if value is None:
        return None
    return Struct.from_dict(value if isinstance(value, dict) else {key: value})


def _every_task(tasks: list[Task]) -> list[Task]:
    """Every task of a definition, nested ones after the task that holds them."""
    found: list[Task] = []
    for task in tasks:
        found.append(task)
        for inner in task.lists.values():
            found.extend(_every_task(inner))
    return found


@dataclass
class _TaskState:
    name: str
    kind: str
    status: WorkflowTaskStatus = WorkflowTaskStatus.WORKFLOW_TASK_PENDING
    input: Any = None
    output: Any = None
    error: str = ""
    started_at: str = ""
    completed_at: str = ""

    def proto(self, pointer: str) -> WorkflowTask:
        return WorkflowTask(
            task_id=pointer, task_name=self.name,
            task_type=_TYPES.get(self.kind, WorkflowTaskType.WORKFLOW_TASK_CUSTOM),
            input=_struct(self.input, "input"), output=_struct(self.output, "output"),
            status=self.status, started_at=self.started_at, completed_at=self.completed_at,
            error=self.error, metadata=Struct.from_dict({"kind": self.kind}))


@dataclass
class _Snapshot:
    """One execution's status as Stigmer sees it, kept up to date from its events."""

    phase: ExecutionPhase = ExecutionPhase.EXECUTION_PENDING
    tasks: dict[str, _TaskState] = field(default_factory=dict)  # by pointer, in order
    output: Any = None
    error: str = ""
    started_at: str = ""
    completed_at: str = ""

    def status(self) -> WorkflowExecutionStatus:
        return WorkflowExecutionStatus(
            phase=self.phase, tasks=[state.proto(pointer) for pointer, state in
                                     self.tasks.items()],
            output=_struct(self.output, "output"), error=self.error,
            started_at=self.started_at, completed_at=self.completed_at)

    def take(self, message: BrokerMessage) -> bool:
        """Fold in one broker message; whether the status changed."""
        if message.message_type == MessageType.FINAL_STORE:
            self.output = message.payload
            return False
        event = message.payload
        if message.message_type != MessageType.PROGRESS or not isinstance(event, ProgressEvent):
            return False
        when = _time(event.time or message.time)
        kind = event.kind
        if kind == "workflow_started":
            self.phase, self.started_at = ExecutionPhase.EXECUTION_IN_PROGRESS, when
        elif kind == "workflow_finished":
            self.phase = _PHASES.get(str(event.status), ExecutionPhase.EXECUTION_FAILED)
            self.completed_at = when
            if event.error is not None:
                self.error = event.error.message
            elif self.phase == ExecutionPhase.EXECUTION_CANCELLED:
                self.error = "the execution was cancelled"
            if self.phase != ExecutionPhase.EXECUTION_COMPLETED:
                self.output = None
            for state in self.tasks.values():  # never reached: the flow went elsewhere
                if state.status == WorkflowTaskStatus.WORKFLOW_TASK_PENDING:
                    state.status = WorkflowTaskStatus.WORKFLOW_TASK_SKIPPED
        elif event.task and event.task in self.tasks:
            return self._task(self.tasks[event.task], event, when)
        else:
            return False  # paused, resumed: Stigmer's phases have no word for them
        return True

    @staticmethod
    def _task(state: _TaskState, event: ProgressEvent, when: str) -> bool:
        kind = event.kind
        if kind == "task_started":  # (again, in a loop: the latest run is shown)
            state.status = WorkflowTaskStatus.WORKFLOW_TASK_IN_PROGRESS
            state.input, state.output, state.error = event.data, None, ""
            state.started_at, state.completed_at = when, ""
        elif kind == "task_finished":
            state.status = _ENDED.get(str(event.status),
                                      WorkflowTaskStatus.WORKFLOW_TASK_FAILED)
            state.completed_at = when
            if str(event.status) == "succeeded":
                state.output = event.data
            elif event.error is not None:
                state.error = event.error.message
            else:
                state.error = "the execution was cancelled"
        elif kind == "task_skipped":
            state.status, state.completed_at = WorkflowTaskStatus.WORKFLOW_TASK_SKIPPED, when
        elif kind == "task_retry" and event.error is not None:
            state.error = f"retrying (attempt {event.attempt}): {event.error.message}"
        else:
            return False
        return True


@dataclass(frozen=True)
class StatusUpdate:
    """One ``updateStatus`` call: the status after the execution's message ``seq``."""

    seq: int
    call: WorkflowExecutionUpdateStatusInput


class StatusSender(Sender[StatusUpdate]):
    """Delivers status snapshots to Stigmer's ``updateStatus``, in order, retried."""

    def __init__(self, host: str, port: int, **options: Any) -> None:
        super().__init__(host, port, **options)
        self._stub = WorkflowExecutionCommandControllerStub(self._channel)

    async def _call(self, item: StatusUpdate, metadata: dict[str, str] | None) -> Any:
        return await self._stub.update_status(item.call, timeout=self.timeout,
                                              metadata=metadata)

    def _describe(self, item: StatusUpdate) -> str:
        return f"the status of execution {item.call.execution_id} after seq {item.seq}"

    def key(self, item: StatusUpdate) -> tuple[str, int]:
        return item.call.execution_id, item.seq

    def encode(self, item: StatusUpdate) -> bytes:
        return item.seq.to_bytes(8, "big") + bytes(item.call)

    def decode(self, body: bytes) -> StatusUpdate:
        return StatusUpdate(int.from_bytes(body[:8], "big"),
                            WorkflowExecutionUpdateStatusInput.parse(body[8:]))


class StigmerRunner(WorkflowRunnerServiceControllerBase):
    """Serves Stigmer's runner contract with the runner service's executions.

    Args:
        service: the runner service whose executions these are.
        status: where status snapshots go (Stigmer's ``updateStatus``), if anywhere.
    """

    def __init__(self, service: RunnerService, status: StatusSender | None = None) -> None:
        self.service = service
        self.status = status
        self._snapshots: dict[str, _Snapshot] = {}  # executions started here, until they end
        service.runner.broker.register_handler("*", self._observe)
        service.restorers.append(self._restore)

    async def execute_async(self, message: WorkflowExecuteInput) -> WorkflowExecuteResponse:
        execution_id = message.workflow_execution_id
        if not execution_id:
            raise GRPCError(Code.INVALID_ARGUMENT, "workflow_execution_id is required")
        if not message.workflow_yaml.strip():
            raise GRPCError(Code.INVALID_ARGUMENT, (
                "workflow_yaml is empty: give the Serverless Workflow (DSL 1.x) to run, as "
                "YAML"))
        request = ExecuteRequest(execution_id=execution_id, workflow=message.workflow_yaml)
        fresh = self.service.executions.get(execution_id) is None
        snapshot = _Snapshot()
        if fresh:
            self._snapshots[execution_id] = snapshot
        try:
            record, attached = await self.service.start(request, prepare=self._prepare,
                                                        origin="stigmer")
        except BaseException:
            if fresh:
                self._snapshots.pop(execution_id, None)
            raise
        log.info("stigmer execution %s %s", execution_id,
                 "attached (already started)" if attached else "started")
        return WorkflowExecuteResponse(
            workflow_execution_id=record.id, status="running",
            message="an execution with this id was already started; this is it" if attached
            else "workflow execution started")

    def _prepare(self, record: ExecutionRecord, workflow: Any) -> None:
        """Before the execution starts: list its tasks, all pending."""
        snapshot = self._snapshots.get(record.id)
        if snapshot is None:
            return
        if isinstance(workflow, ServerlessWorkflow):
            for task in _every_task(workflow.definition.tasks):
                snapshot.tasks[task.pointer] = _TaskState(task.name, task.kind)

    def _restore(self, saved: Any, record: ExecutionRecord, messages: list[BrokerMessage]
                 ) -> None:
        """An execution of ours from a durable state that had not ended: its status, rebuilt
        from its messages, so that its updates go on from there after it is recovered."""
        if (saved.request.get("annotations") or {}).get("origin") != "stigmer" or \
                record.ended:
            return
        from actorstage.workflows._runner import _from_saved

        snapshot = self._snapshots[record.id] = _Snapshot()
        try:
            self._prepare(record, _from_saved(saved))
        except Exception:  # (it cannot run here: its status comes from its messages alone)
            log.warning("execution %s: its definition cannot be read again", record.id)
        for message in messages:
            snapshot.take(message)

    def _observe(self, message: BrokerMessage) -> None:
        snapshot = self._snapshots.get(message.execution_id)
        if snapshot is None or not snapshot.take(message):
            return
        if self.status is not None:
            self.status.put(StatusUpdate(message.seq, WorkflowExecutionUpdateStatusInput(
                execution_id=message.execution_id, status=snapshot.status())))
        if snapshot.phase in (ExecutionPhase.EXECUTION_COMPLETED, ExecutionPhase.EXECUTION_FAILED,
                              ExecutionPhase.EXECUTION_CANCELLED):
            del self._snapshots[message.execution_id]

    def _live(self, execution_id: str) -> ExecutionRecord:
        """A running or paused execution; NOT_FOUND otherwise, as Stigmer's runner says."""
        record = self.service.executions.get(execution_id)
        if record is None or record.ended:
            raise GRPCError(Code.NOT_FOUND, f"execution not found: {execution_id}")
        return record

    async def cancel_execution(self, message: CancelExecutionRequest) -> Empty:
        record = self.service.executions.get(message.execution_id)
        if record is not None and not record.ended:
            await self.service.control(record, "cancel", message.reason, wait=False)
        return Empty()

    async def pause_execution(self, message: PauseExecutionRequest) -> Empty:
        record = self._live(message.execution_id)
        if record.status == ExecutionStatus.PAUSED:
            raise GRPCError(Code.FAILED_PRECONDITION,
                            "cannot pause execution in status: paused")
        await self.service.control(record, "pause", message.reason)
        return Empty()

    async def resume_execution(self, message: ResumeExecutionRequest) -> Empty:
        record = self._live(message.execution_id)
        if record.status != ExecutionStatus.PAUSED:
            raise GRPCError(Code.FAILED_PRECONDITION,
                            f"cannot resume execution in status: {_word(record.status)}")
        await self.service.control(record, "resume", message.reason)
        return Empty()


def _word(status: ExecutionStatus) -> str:
    return "running" if status in (ExecutionStatus.RUNNING, ExecutionStatus.PENDING) else \
        status.name.lower()
