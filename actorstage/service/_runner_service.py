"""The ``actorstage.v1.Runner`` gRPC service: workflows executed, watched and controlled.

Executions run through a ``Runner`` (in this process, or each in a child
process of its own); its broker feeds the records that the RPCs read. Errors
map to gRPC status codes whose messages name the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import msgspec
from grpclib import GRPCError
from grpclib.const import Status as Code

from actorstage._documents import DocumentError, load, off_loop
from actorstage._proto.actorstage.v1 import (
    ActionInfo,
    ControlRequest,
    ExecuteAsyncResponse,
    ExecuteRequest,
    ExecutionInfo,
    ExecutionStatus,
    GetExecutionRequest,
    Isolation,
    ListActionsRequest,
    ListActionsResponse,
    ListExecutionsRequest,
    ListExecutionsResponse,
    ProgressEvent,
    RunnerBase,
    WatchExecutionRequest,
    WorkflowMetadata,
)
from actorstage._proto.actorstage.v1 import (
    ErrorInfo as ProtoError,
)
from actorstage.exceptions import ActorCrashedError, InvalidDefinitionError
from actorstage.serverless._execution import ServerlessWorkflow
from actorstage.service._callbacks import CallbackSender
from actorstage.service._metrics import ServiceMetrics
from actorstage.service._records import ExecutionRecord, Executions, HistoryLost, status_of
from actorstage.transport._options import ProcessOptions
from actorstage.workflows._defs import valid_id
from actorstage.workflows._events import BrokerMessage
from actorstage.workflows._registry import registered_actions
from actorstage.workflows._runner import Execution, Runner
from actorstage.workflows._workflow import Workflow, defaults_of, read_workflow

__all__ = ["RunnerService"]

log = logging.getLogger("actorstage.service")

MAX_PAGE = 1000
# CancelExecution answers once the execution has ended (milliseconds), or after this long
# with the state then (RUNNING: an action that takes its time to honour the cancel).
CANCEL_ANSWER_WAIT = 5.0
STATE_POLL = 0.2  # seconds between reads of a shared state, watching another runner's


def _invalid(message: str) -> GRPCError:
    return GRPCError(Code.INVALID_ARGUMENT, message)


def parse_definition(text: str) -> Workflow | ServerlessWorkflow:
    """The workflow of a request, checked: JSON when it starts with ``{``, YAML otherwise;
    a Serverless Workflow when it has ``document.dsl``, stages and actions otherwise."""
    if not text.strip():
        raise _invalid("ExecuteRequest.workflow is empty: give the definition as YAML or JSON")
    try:
        return read_workflow(text)
    except InvalidDefinitionError as exc:
        raise _invalid(str(exc)) from None


def parse_store(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        store = load(text, "json", "ExecuteRequest.store_json")
    except DocumentError as exc:
        raise _invalid(str(exc)) from None
    if not isinstance(store, dict):
        raise _invalid(f"ExecuteRequest.store_json must be a JSON object, got "
                       f"{type(store).__name__}")
    return store


class RunnerService(RunnerBase):
    """Serves ``actorstage.v1.Runner`` with ``runner``'s actor system.

    Args:
        runner: runs the executions; its broker is shared (a handler of
            ours records every execution's messages).
        isolate: where an execution runs when its request does not say.
        process: the options of isolated executions' child processes.
        callbacks: where progress events are also sent, if anywhere.
        metrics: counts executions and callback failures.
        max_finished: ended executions kept for Get, List and Watch.
        max_events: events kept per execution for Watch.
    """

    def __init__(self, runner: Runner, *, isolate: Literal["inline", "process"] = "inline",
                 process: ProcessOptions | None = None, callbacks: CallbackSender | None = None,
                 metrics: ServiceMetrics | None = None, max_finished: int = 1000,
                 max_events: int = 10_000) -> None:
        if isolate not in ("inline", "process"):
            raise ValueError(f"isolate is 'inline' or 'process', got {isolate!r}")
        self.runner = runner
        self.default_isolation = Isolation.PROCESS if isolate == "process" else Isolation.INLINE
        self.process = process or ProcessOptions()
        self.callbacks = callbacks
        self.metrics = metrics or ServiceMetrics()
        self.executions = Executions(max_finished)
        self.max_events = max_events
        self.accepting = True
        self.suspended = False  # a durable service stopping: its executions wait in the state
        # Called for each execution restored from a durable state, with its messages: the
        # services an execution came through (its origin) rebuild their own view of it.
        self.restorers: list[Callable[[Any, Any, list[BrokerMessage]], None]] = []
        self._streams = 0
        self._streams_done = asyncio.Event()
        self._streams_done.set()
        runner.broker.register_handler("*", self._observe)
        runner.recovered.append(self._adopt)
        runner.lost.append(self._disown)

    # -- executing ---------------------------------------------------------------------------

    async def execute(self, message: ExecuteRequest) -> AsyncIterator[ProgressEvent]:
        record, _attached = await self.start(message)
        async for event in self._follow(record, 0):
            yield event

    async def _follow(self, record: ExecutionRecord, after_seq: int) -> AsyncIterator[
            ProgressEvent]:
        """A stream's events; counted, so that stopping waits for streams to send their end."""
        self._streams += 1
        self._streams_done.clear()
        try:
            async for event in record.follow(after_seq):
                yield event
        except HistoryLost as exc:  # asked for, or fell behind, beyond the kept history
            raise GRPCError(Code.OUT_OF_RANGE, str(exc)) from None
        finally:
            self._streams -= 1
            if not self._streams:
                self._streams_done.set()

    async def wait_streams_done(self) -> None:
        await self._streams_done.wait()

    async def wait_ended(self) -> None:
        """Wait until every execution has ended."""
        for record in self.executions.running():
            await record.ended_event.wait()

    async def execute_async(self, message: ExecuteRequest) -> ExecuteAsyncResponse:
        record, attached = await self.start(message)
        status = record.status if record.ended else ExecutionStatus.RUNNING
        return ExecuteAsyncResponse(execution_id=record.id, status=status, attached=attached)

    async def start(self, request: ExecuteRequest, *,
                    prepare: Callable[[ExecutionRecord, Any], None] | None = None,
                    origin: str = "") -> tuple[ExecutionRecord, bool]:
        """Start the execution a request asks for: ``(record, attached)``, where
        ``attached`` says it existed (the same request again). ``prepare(record,
        workflow)`` runs before it starts; ``origin`` names the service it came through,
        kept with it in a durable state (see ``restorers``)."""
        workflow = await off_loop(len(request.workflow), parse_definition, request.workflow)
        store = await off_loop(len(request.store_json), parse_store, request.store_json)
        execution_id = request.execution_id or uuid.uuid4().hex
        if not valid_id(execution_id):
            raise _invalid(f"execution id {execution_id!r} must be 1-128 letters, digits or "
                           "_.:-")
        isolation = request.isolation or self.default_isolation
        metadata = request.metadata or WorkflowMetadata()
        key = (workflow.defn, msgspec.json.encode(store), isolation, metadata.name,
               metadata.version, sorted(metadata.labels.items()))
        known = self.executions.get(execution_id)
        state = self.runner.state
        if known is None and state is not None:
            saved = await state.get(execution_id)  # started through another runner, or
            if saved is not None:  # long enough ago to be gone from memory: kept there
                known = await self._restore_one(saved)
        if known is not None:
            if known.key != key:
                raise GRPCError(Code.ALREADY_EXISTS, (
                    f"execution {execution_id!r} exists with a different request (workflow, "
                    "store, metadata or isolation); executing an id again must repeat the "
                    "same request, or use a new id"))
            return known, True  # attaching stays possible while the service stops
        if not self.accepting:
            raise GRPCError(Code.UNAVAILABLE, "the service is shutting down: it takes no new "
                                              "executions")
        record = ExecutionRecord(
            execution_id, key=key, workflow_id=workflow.id, metadata=metadata,
            isolation=isolation, store={**defaults_of(workflow), **store},
            max_events=self.max_events, number=self.executions.next_number())
        record.on_end = self._ended
        record.on_event = self._event
        self.executions.add(record)
        self.metrics.started()
        if prepare is not None:
            prepare(record, workflow)
        await self._launch(record, workflow, store, origin)
        return record, False

    async def _launch(self, record: ExecutionRecord, workflow: Workflow | ServerlessWorkflow,
                      store: dict[str, Any], origin: str = "") -> None:
        process = self.process if record.isolation == Isolation.PROCESS else None
        try:
            execution = await self.runner.start(
                workflow, execution_id=record.id, store=store, process=process,
                annotations={"metadata": record.metadata.to_dict(), "given": store,
                             "isolation": int(record.isolation), "origin": origin})
        except InvalidDefinitionError as exc:  # e.g. a store value it cannot encode
            record.fail(ExecutionStatus.FAILED, ProtoError(
                type_name="InvalidDefinitionError", message=str(exc)))
            raise _invalid(str(exc)) from None
        except ActorCrashedError as exc:  # the child process could not start the workflow
            log.warning("execution %s could not start: %s", record.id, exc)
            record.fail(ExecutionStatus.FAILED, ProtoError(
                type_name=exc.type_name, message=exc.error_message, traceback=exc.traceback))
            return
        for kind in record.attach(execution):
            await getattr(execution, kind)()
        log.info("execution %s of workflow %r started (%s)", record.id, workflow.id,
                 "in a child process" if execution.pid else "inline")

    def _observe(self, message: BrokerMessage) -> None:
        """The broker's handler: every message of every execution, in order."""
        record = self.executions.get(message.execution_id)
        if record is None or self.suspended or record.disowned:
            return
        record.observe(message)

    async def restore(self) -> None:
        """A durable runner's executions back (their records rebuilt from its state, in their
        order, each from its messages), then the unfinished ones run again here (of a shared
        state: those nobody else runs)."""
        state = self.runner.state
        if state is None:
            return
        await self.runner.open(recover=False)
        for saved in await state.load():
            await self._restore_one(saved)
        await self.runner.recover()  # (each is attached by _adopt)
        log.info("restored %d executions from the state (%d running)", len(self.executions),
                 len(self.executions.running()))

    async def _restore_one(self, saved: Any) -> ExecutionRecord:
        from actorstage.workflows._runner import _from_saved

        state = self.runner.state
        assert state is not None
        annotations = saved.request.get("annotations") or {}
        metadata = WorkflowMetadata.from_dict(annotations.get("metadata") or {})
        isolation = Isolation(annotations.get("isolation") or Isolation.INLINE)
        try:
            defn: Any = _from_saved(saved).defn
        except Exception:  # (it cannot run here any more: kept as it ended)
            defn = saved.definition
        key = (defn, msgspec.json.encode(annotations.get("given") or {}), isolation,
               metadata.name, metadata.version, sorted(metadata.labels.items()))
        record = ExecutionRecord(
            saved.id, key=key, workflow_id=saved.workflow_id, metadata=metadata,
            isolation=isolation, store=saved.request.get("store") or {},
            max_events=self.max_events, number=self.executions.restored(saved.number))
        record.created_at = saved.created_at
        messages = await state.events(saved.id)
        for message in messages:
            record.observe(message)
        for restorer in self.restorers:
            restorer(saved, record, messages)
        if saved.ended and not record.ended:  # ended without its messages (not recovered)
            error = saved.error or {}
            record.fail(status_of(saved.status), ProtoError(
                type_name=str(error.get("type_name", "")),
                message=str(error.get("message", ""))))
        record.on_end = self._ended
        record.on_event = self._event
        self.executions.add(record)
        return record

    def _disown(self, execution_id: str) -> None:
        """Another runner took the execution over: this service's record no longer follows
        it here (reads go to the state)."""
        record = self.executions.get(execution_id)
        if record is not None:
            record.disown()

    async def _adopt(self, execution: Execution) -> None:
        """An execution the runner recovered (at start, or taken over from a runner that
        died): its record, made from the state if this service has none, follows it."""
        record = self.executions.get(execution.id)
        state = self.runner.state
        if record is not None and record.execution is None and state is not None and \
                state.shared:  # another runner ran it since: its history from the state
            record = None
        if record is None and state is not None:
            saved = await state.get(execution.id)
            if saved is None:
                return
            record = await self._restore_one(saved)
        if record is not None and record.execution is None:
            self.metrics.started()  # (it runs here now)
            for kind in record.attach(execution):
                await getattr(execution, kind)()

    def _event(self, event: ProgressEvent) -> None:
        if self.callbacks is not None:
            self.callbacks.put(event)

    def _ended(self, record: ExecutionRecord) -> None:
        self.metrics.finished(record.status.name.lower(), record.duration)
        self.executions.evict()

    # -- controlling ---------------------------------------------------------------------------

    def _record(self, execution_id: str) -> ExecutionRecord:
        record = self.executions.get(execution_id)
        if record is None:
            if not execution_id:
                raise _invalid("execution_id is empty")
            raise GRPCError(Code.NOT_FOUND, f"no execution {execution_id!r} (never started "
                                            "here, or ended long enough ago to be forgotten)")
        return record

    async def _lookup(self, execution_id: str) -> ExecutionRecord:
        """The record of an execution: this service's, or one read from the state (started
        through another runner, or ended long enough ago to be gone from memory)."""
        state = self.runner.state
        if self.executions.get(execution_id) is None and execution_id and \
                state is not None:  # (another runner's, or one gone from memory)
            saved = await state.get(execution_id)
            if saved is not None:
                return await self._restore_one(saved)
        return self._record(execution_id)

    def _elsewhere(self, record: ExecutionRecord) -> bool:
        """Whether another runner of a shared state runs it (this service's record of it is
        what the state said when it was read)."""
        state = self.runner.state
        return state is not None and state.shared and record.execution is None and \
            not record.ended

    async def _refreshed(self, record: ExecutionRecord) -> ExecutionRecord:
        """The record of an execution another runner runs, read again from the state."""
        state = self.runner.state
        if not self._elsewhere(record) or state is None:
            return record
        saved = await state.get(record.id)
        return record if saved is None else await self._restore_one(saved)

    async def _control(self, request: ControlRequest, kind: str) -> ExecutionInfo:
        record = await self._refreshed(await self._lookup(request.execution_id))
        if self._elsewhere(record):  # the runner that owns it does it
            await self.runner.control(record.id, kind)
            log.info("execution %s: %s sent to the runner that runs it", record.id, kind)
            def reached() -> bool:
                if kind == "cancel":
                    return record.ended
                return (record.status == ExecutionStatus.PAUSED) == (kind == "pause")

            with contextlib.suppress(TimeoutError):  # answer with what the state says then
                async with asyncio.timeout(CANCEL_ANSWER_WAIT):
                    while not reached():
                        await asyncio.sleep(STATE_POLL)
                        record = await self._refreshed(record)
            return record.info()
        if record.ended:
            raise GRPCError(Code.FAILED_PRECONDITION, (
                f"execution {record.id!r} already ended ({record.status.name.lower()}); "
                f"there is nothing to {kind}"))
        await self.control(record, kind, request.reason)
        return record.info()

    async def control(self, record: ExecutionRecord, kind: str, reason: str = "", *,
                      wait: bool = True) -> None:
        """Pause, resume or cancel a running execution; a cancel waits (``wait``) for the
        end, up to ``CANCEL_ANSWER_WAIT``."""
        record.reason = reason
        log.info("execution %s: %s requested%s", record.id, kind,
                 f" ({reason})" if reason else "")
        if record.execution is None:
            record.pending.append(kind)  # applied once it has started
        else:
            await getattr(record.execution, kind)()
            if kind == "pause" and not record.ended:
                record.status = ExecutionStatus.PAUSED
            elif kind == "resume" and record.status == ExecutionStatus.PAUSED:
                record.status = ExecutionStatus.RUNNING
        if kind == "cancel" and wait:  # answer with the state reached: CANCELLED, in ms
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_ANSWER_WAIT):
                    await record.ended_event.wait()

    async def cancel_execution(self, message: ControlRequest) -> ExecutionInfo:
        return await self._control(message, "cancel")

    async def pause_execution(self, message: ControlRequest) -> ExecutionInfo:
        return await self._control(message, "pause")

    async def resume_execution(self, message: ControlRequest) -> ExecutionInfo:
        return await self._control(message, "resume")

    async def cancel_all(self, reason: str) -> None:
        """Cancel every execution that has not ended."""
        for record in self.executions.running():
            record.reason = reason
            if record.execution is None:
                record.pending.append("cancel")
            else:
                await record.execution.cancel()

    # -- reading ---------------------------------------------------------------------------

    async def get_execution(self, message: GetExecutionRequest) -> ExecutionInfo:
        return (await self._refreshed(await self._lookup(message.execution_id))).info()

    async def list_executions(self, message: ListExecutionsRequest) -> ListExecutionsResponse:
        size = message.page_size or 100
        if size > MAX_PAGE:
            raise _invalid(f"page_size is at most {MAX_PAGE}, got {size}")
        after = 0
        if message.page_token:
            if not message.page_token.isdigit():
                raise _invalid(f"page_token {message.page_token!r} is not one this service "
                               "gave out")
            after = int(message.page_token)
        records, cursor = self.executions.page(
            status=message.status, labels=dict(message.labels), size=size, after=after)
        return ListExecutionsResponse(executions=[record.info() for record in records],
                                      next_page_token=str(cursor) if cursor else "")

    async def watch_execution(self, message: WatchExecutionRequest) -> AsyncIterator[
            ProgressEvent]:
        record = await self._lookup(message.execution_id)
        if self._elsewhere(record):  # its events, as the runner that runs it writes them
            async for event in self._follow_state(record, message.after_seq):
                yield event
            return
        async for event in self._follow(record, message.after_seq):
            yield event

    async def _follow_state(self, record: ExecutionRecord, after_seq: int) -> AsyncIterator[
            ProgressEvent]:
        """An execution's events read from a shared state, up to its end (polled)."""
        state = self.runner.state
        assert state is not None
        scratch = ExecutionRecord(record.id, key=None, workflow_id=record.workflow_id,
                                  metadata=record.metadata, isolation=record.isolation,
                                  store={}, max_events=1, number=0)
        seen = 0
        while True:
            for message in await state.events(record.id, seen):
                seen = message.seq
                event = scratch.observe(message)
                if event is not None and event.seq > after_seq:
                    yield event
                    if event.kind == "workflow_finished":
                        return
            await asyncio.sleep(STATE_POLL)

    async def list_actions(self, message: ListActionsRequest) -> ListActionsResponse:
        actions = []
        for action_id, entry in sorted(registered_actions().items()):
            schema = ""
            if entry.params_type is not None:
                schema = msgspec.json.encode(msgspec.json.schema(entry.params_type)).decode()
            actions.append(ActionInfo(id=action_id, module=entry.module,
                                      params_schema_json=schema))
        return ListActionsResponse(actions=actions)
