"""Running workflows: the execution, workflow and stage actors, the broker and the Runner.

An execution is three layers of actors. The execution actor is the one
that stays free to receive pause, resume and cancel, and to hand every
report to the broker, in order, numbered. Its child, the workflow actor,
runs the stages in order, each as a stage actor of its own that runs its
actions (with retries) and reports. Pause and cancel act through a shared
``Control``: a pause lands between actions or at ``ctx.checkpoint()``, a
cancel cancels the action that runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from actorstage._metrics import RUNNERS, execution_ended
from actorstage._telemetry import attached, current_carrier, span
from actorstage.actors._actor import Actor
from actorstage.actors._message import Message, Terminated
from actorstage.actors._ref import ActorRef
from actorstage.actors._subscription import Subscription
from actorstage.actors._system import ActorSystem
from actorstage.exceptions import (
    ActorCrashedError,
    ActorDeadError,
    ActorstageError,
    InvalidDefinitionError,
)
from actorstage.supervisors._default import TEMPORARY_POLICY, TemporaryPolicy
from actorstage.transport._options import options_for
from actorstage.workflows._context import ActionContext, Control
from actorstage.workflows._defs import StageDef, WorkflowDef, valid_id
from actorstage.workflows._events import (
    GOSTAGE_PROGRESS,
    ActionResult,
    BrokerMessage,
    ErrorInfo,
    MessageType,
    ProgressEvent,
    StageResult,
    Status,
    WorkflowResult,
    canonical,
    typed,
)
from actorstage.workflows._middleware import Middleware
from actorstage.workflows._state import StateStore, open_state
from actorstage.workflows._workflow import Workflow

if TYPE_CHECKING:
    from typing import TypeAlias

    from actorstage.serverless._definition import Definition
    from actorstage.serverless._execution import ServerlessWorkflow
    from actorstage.transport._options import ProcessOptions
    from actorstage.workflows._state import Saved

    # What a Runner runs: stages and actions, or a Serverless Workflow.
    AnyWorkflow: TypeAlias = Workflow | WorkflowDef | Definition | ServerlessWorkflow

__all__ = ["Broker", "Execution", "Runner"]

log = logging.getLogger("actorstage.workflows")

Handler = Callable[[BrokerMessage], Awaitable[None] | None]
_HISTORY = 1000  # messages an execution keeps for a late events() subscriber



# -- what the actors tell each other ------------------------------------------------


class _Report(Message, frozen=True):
    """A broker message on its way to the execution actor (which numbers it)."""

    message_type: str
    payload: Any
    stage_id: str = ""
    action_id: str = ""
    time: float = 0.0  # when it was made, seconds since the epoch


DELIVERY_BOUND = 5.0  # seconds an action waits, at most, for its report to leave a child
# Reports a child's actions tell rather than ask (see _Reporter).
_TOLD = frozenset({MessageType.PROGRESS, MessageType.STORE_PUT, MessageType.STORE_DELETE,
                   MessageType.TIMER, MessageType.CHECKPOINT})


class _Deliver(Message, frozen=True):
    """An action's own report in a child process: answered once it is on its way out."""

    report: _Report


class _Run(Message, frozen=True):
    store: dict[str, Any]


class _Durable(Message, frozen=True):
    """A step boundary of a durable execution: answered once its checkpoint is written, so
    that no completed step runs again after a crash."""

    report: _Report


class Resume(Message, frozen=True):
    """Where an execution that a durable runner recovers goes on: its next action (in order
    over the stages) or, for a Serverless Workflow, where each of its task lists stood; the
    seq after which its messages are numbered; paused or not; its running sleeps' ends."""

    step: int = 0
    seq: int = 0
    paused: bool = False
    timers: dict[str, float] = {}
    context: Any = None  # a Serverless Workflow's $context
    cursors: dict[str, Any] = {}  # ... and where each of its task lists in progress stood


class _RunStage(Message, frozen=True):
    pass


class _Finished(Message, frozen=True):
    result: WorkflowResult


class _Signal(Message, frozen=True):
    kind: str  # pause, resume, cancel


def _error_info(exc: BaseException, stage_id: str = "", action_id: str = "") -> ErrorInfo:
    if isinstance(exc, ActorCrashedError):
        return ErrorInfo(type_name=exc.type_name, message=exc.error_message,
                         traceback=exc.traceback, stage_id=stage_id, action_id=action_id)
    return ErrorInfo(type_name=type(exc).__qualname__, message=str(exc),
                     traceback="".join(traceback.format_exception(exc)),
                     stage_id=stage_id, action_id=action_id)


# -- the broker -----------------------------------------------------------------------


class Broker:
    """Hands the messages of running workflows to the handlers registered for their type.

    Handlers run in the order they were registered, one message at a time and
    in the order the workflow sent them; a handler may be a function or a
    coroutine function. A handler that raises is logged and counted in
    ``handler_errors``; the workflow goes on.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._by_kind: dict[str, list[Handler]] = {}  # gostage's start and result handlers
        self.middleware: list[Middleware] = []
        self.handler_errors = 0
        self.dropped = 0  # messages a middleware dropped
        self._subscribers: list[Subscription[BrokerMessage]] = []

    def subscribe(self, max_buffer: int = 1000) -> Subscription[BrokerMessage]:
        """Follow every execution's messages from now on (what the handlers get)::

            async with runner.subscribe() as messages:
                async for message in messages:
                    ...

        A subscriber more than ``max_buffer`` messages behind misses the newest
        ones; its ``missed`` counts them. It never holds a workflow up.
        """
        return Subscription(self._subscribers, max_buffer)

    def use(self, middleware: Middleware) -> None:
        """Add ``middleware`` at the end of the chain (see ``Middleware``)."""
        if not isinstance(middleware, Middleware):
            raise InvalidDefinitionError(f"{middleware!r} is not a Middleware")
        middleware.check()  # e.g. EncryptPayloads: is there a key?
        self.middleware.append(middleware)

    def child_middleware(self) -> list[tuple[str, bytes]]:
        """The middlewares that also run in a child process, encoded to travel there."""
        from actorstage.transport._codec import CODEC

        return [CODEC.encode(middleware) for middleware in self.middleware
                if isinstance(middleware, msgspec.Struct)]

    async def through(
        self, message: BrokerMessage, *, outgoing: bool, spawned: bool
    ) -> BrokerMessage | None:
        """Run ``message`` through the chain; ``None`` when a middleware dropped it.

        ``outgoing`` steps run here unless the child ran them already (Struct
        middlewares of a spawned execution).
        """
        current: BrokerMessage | None = message
        if outgoing:
            for middleware in self.middleware:
                if current is not None and not (spawned and isinstance(middleware,
                                                                        msgspec.Struct)):
                    current = await middleware.outgoing(current)
        for middleware in self.middleware:
            if current is not None:
                current = await middleware.incoming(current)
        if current is None:
            self.dropped += 1
        return current

    async def hook(self, name: str, *args: Any) -> None:
        """Call a lifecycle hook on every middleware; one that raises is logged."""
        for middleware in self.middleware:
            try:
                await getattr(middleware, name)(*args)
            except Exception:
                log.exception("middleware %r failed in %s", middleware, name)

    def register_handler(self, message_type: MessageType | str, handler: Handler) -> None:
        """Call ``handler(message)`` for each message of ``message_type`` (``"*"``: every one)."""
        if not isinstance(message_type, str) or not message_type:
            raise InvalidDefinitionError(
                f"a message type is a MessageType or a non-empty str, got {message_type!r}")
        if not callable(handler):
            raise InvalidDefinitionError(f"a handler must be callable, got {handler!r}")
        # gostage's names are accepted too: store_put, store_delete, and workflow_start and
        # workflow_result (the progress messages of a workflow's start and end, kept by the
        # progress kind they stand for).
        name = canonical(str(message_type))
        if name in GOSTAGE_PROGRESS:
            self._by_kind.setdefault(GOSTAGE_PROGRESS[name], []).append(handler)
        else:
            self._handlers.setdefault(name, []).append(handler)

    async def dispatch(self, message: BrokerMessage) -> None:
        for subscriber in self._subscribers:
            subscriber._offer(message)
        handlers = self._handlers
        called = [*handlers.get(message.message_type, ()), *handlers.get("*", ())]
        if self._by_kind and isinstance(message.payload, ProgressEvent):
            called.extend(self._by_kind.get(message.payload.kind, ()))
        for handler in called:
            try:
                result = handler(message)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception:
                self.handler_errors += 1
                log.exception("broker handler %r failed on a %r message of execution %s",
                              handler, message.message_type, message.execution_id)


# -- the actors -----------------------------------------------------------------------------


class _Reporter:
    """Sends reports to the execution actor.

    In a child process (``delivered``), an action's log and its own sends are
    asked, not told: the child's execution actor answers once the report is
    written on the way to the parent, so what an action logged or sent before
    its process died (a crash in native code, ``os._exit``) still arrives, as it
    does with gostage's synchronous sends. Store changes are told (the store
    goes to the parent whole at the end; waiting for each would cost a put
    3-4 times as much), and so is the runtime's own progress.
    """

    def __init__(self, execution: ActorRef, *, delivered: bool = False,
                 durable: bool = False) -> None:
        self.execution = execution
        self.delivered = delivered
        self.durable = durable  # a durable runner's: step boundaries wait to be written

    async def report(self, message_type: str, payload: Any, stage_id: str = "",
                     action_id: str = "") -> None:
        report = _Report(message_type, payload, stage_id, action_id, time.time())
        with contextlib.suppress(ActorDeadError):  # the execution is closing: it reports
            if self.durable and _boundary(message_type, payload):
                await self.execution.ask(_Durable(report))
            elif self.delivered and message_type not in _TOLD:
                await self.execution.ask(_Deliver(report))
            else:
                await self.execution.tell(report)

    async def progress(self, kind: str, *, stage_id: str = "", action_id: str = "",
                       status: str = "", attempt: int = 0, error: ErrorInfo | None = None,
                       task: str = "", data: Any = None) -> None:
        event = {"kind": kind, "stage_id": stage_id, "action_id": action_id, "status": status,
                 "attempt": attempt, "time": time.time(), "error": error}
        if task:  # a Serverless Workflow's task
            event["task"], event["data"] = task, data
        await self.report(MessageType.PROGRESS, event, stage_id, action_id)


def _boundary(message_type: str, payload: Any) -> bool:
    """Whether a report ends a step (an action; a Serverless Workflow's task)."""
    return message_type == MessageType.CHECKPOINT or (
        message_type == MessageType.PROGRESS and isinstance(payload, dict)
        and payload.get("kind") == "action_finished")


class StageActor(Actor):
    """Runs one stage's actions in order, with retries; returns its ``StageResult``."""

    _traced = False  # (the runtime's own: see Actor._traced)
    _cancel_on_stop = True  # stopping it cancels the running action, as a cancel does

    def __init__(self, workflow: Workflow, stage: StageDef, execution_id: str,
                 values: dict[str, Any], control: Control, reporter: _Reporter,
                 first: int = 0, timers: dict[str, float] | None = None) -> None:
        self.first = first  # the action to start at (a recovered execution's next step)
        self.timers = timers or {}
        self.workflow = workflow
        self.stage = stage
        self.execution_id = execution_id
        self.values = values  # the workflow's store, shared by its stages
        self.control = control
        self.reporter = reporter

    async def receive(self, message: Any) -> Any:
        stage, reporter, control = self.stage, self.reporter, self.control
        started, clock = time.time(), time.monotonic()
        await reporter.progress("stage_started", stage_id=stage.id, status=Status.RUNNING)
        results: list[ActionResult] = []
        status = Status.SUCCEEDED
        for action_def in stage.actions[self.first:]:
            await self._wait_if_paused()
            if control.cancelled:
                status = Status.CANCELLED
                break
            result = await self._run_action(action_def.id)
            results.append(result)
            if result.status == Status.CANCELLED:
                status = Status.CANCELLED
                break
            if result.status == Status.FAILED and stage.on_error == "fail":
                status = Status.FAILED
                break
        await reporter.progress("stage_finished", stage_id=stage.id, status=status)
        self.context.stop()
        return StageResult(id=stage.id, status=status, started_at=started,
                           duration=time.monotonic() - clock, actions=results)

    async def _wait_if_paused(self, action_id: str = "") -> None:
        """Where a pause lands: between actions, and at an action's checkpoints."""
        control = self.control
        if control.paused and not control.cancelled:
            stage_id = self.stage.id
            await self.reporter.progress("workflow_paused", stage_id=stage_id,
                                         action_id=action_id, status=Status.PAUSED)
            await control.resumed.wait()
            await self.reporter.progress("workflow_resumed", stage_id=stage_id,
                                         action_id=action_id, status=Status.RUNNING)

    async def _run_action(self, action_id: str) -> ActionResult:
        stage = self.stage
        with span(f"action {stage.id}/{action_id}", {
                "actorstage.workflow.id": self.workflow.id,
                "actorstage.execution.id": self.execution_id,
                "actorstage.stage.id": stage.id, "actorstage.action.id": action_id,
                "process.pid": os.getpid()}) as traced:
            result = await self._attempts(action_id)
            traced.set("actorstage.action.attempts", result.attempts)
            traced.set("actorstage.action.status", str(result.status))
            if result.error is not None:
                traced.failed(result.error.message)
        return result

    async def _attempts(self, action_id: str) -> ActionResult:
        stage, reporter, control = self.stage, self.reporter, self.control
        step = self.workflow.step(stage.id, action_id)
        defn = step.defn
        started, clock = time.time(), time.monotonic()
        status, error, attempt = Status.FAILED, None, 0
        while attempt < defn.max_attempts:
            attempt += 1
            await reporter.progress("action_started", stage_id=stage.id, action_id=action_id,
                                    status=Status.RUNNING, attempt=attempt)
            prefix = f"{stage.id}/{action_id}/"
            ctx = ActionContext(
                execution_id=self.execution_id, workflow_id=self.workflow.id,
                stage_id=stage.id, action_id=action_id, attempt=attempt, values=self.values,
                pause_point=partial(self._wait_if_paused, action_id), emit=reporter.report,
                control=control, timers={key: end for key, end in self.timers.items()
                                         if key.startswith(prefix)},
            )
            outcome = await self._attempt(step, ctx)
            if outcome is None:
                status, error = Status.SUCCEEDED, None
                break
            if control.cancelled:
                status, error = Status.CANCELLED, None
                break
            error = _error_info(outcome, stage.id, action_id)
            if attempt < defn.max_attempts:
                await reporter.progress("action_retry", stage_id=stage.id, action_id=action_id,
                                        status=Status.FAILED, attempt=attempt, error=error)
                with anyio.move_on_after(defn.delay(attempt)):
                    await control.cancel_requested.wait()  # a cancel ends the backoff early
                if control.cancelled:
                    status, error = Status.CANCELLED, None
                    break
        await reporter.progress("action_finished", stage_id=stage.id, action_id=action_id,
                                status=status, attempt=attempt, error=error)
        return ActionResult(id=action_id, action=defn.action, status=status, attempts=attempt,
                            started_at=started, duration=time.monotonic() - clock, error=error)

    async def _attempt(self, step: Any, ctx: ActionContext) -> BaseException | None:
        """Run one attempt in a task of its own, so that a cancel reaches only the action.

        The task never outlives this call: it is awaited, or cancelled and awaited.
        """
        control = self.control
        task = asyncio.ensure_future(_execute(step, ctx))
        control.running = task
        try:
            await asyncio.wait({task})
        finally:
            control.running = None
            if not task.done():  # we are being stopped: the action goes with us
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled():
            return asyncio.CancelledError("cancelled")
        return task.exception()


async def _execute(step: Any, ctx: ActionContext) -> None:
    await step.build().execute(ctx)


class WorkflowActor(Actor):
    """Runs the stages of one execution in order; tells the execution actor how it ended."""

    _traced = False  # (the runtime's own: see Actor._traced)
    _cancel_on_stop = True  # stopping it (its runner or system closing) cancels the run

    def __init__(self, workflow: Workflow, execution_id: str, control: Control,
                 execution: ActorRef, delivered: bool = False,
                 resume: Resume | None = None, durable: bool = False) -> None:
        self.workflow = workflow
        self.execution_id = execution_id
        self.control = control
        self.reporter = _Reporter(execution, delivered=delivered, durable=durable)
        self.resume = resume

    async def receive(self, message: Any) -> Any:
        assert isinstance(message, _Run)
        with span(f"workflow {self.workflow.id}", {
                "actorstage.workflow.id": self.workflow.id,
                "actorstage.execution.id": self.execution_id,
                "actorstage.workflow.recovered": self.resume is not None,
                "process.pid": os.getpid()}) as traced:
            outcome = await self._execute(message)
            traced.set("actorstage.workflow.status", str(outcome.status))
            if outcome.error is not None:
                traced.failed(outcome.error.message)

    async def _execute(self, message: _Run) -> WorkflowResult:
        workflow, reporter, resume = self.workflow, self.reporter, self.resume
        started, clock = time.time(), time.monotonic()
        values = dict(message.store)
        await reporter.progress("workflow_recovered" if resume else "workflow_started",
                                status=_starting(resume))
        stages: list[StageResult] = []
        status, error = Status.SUCCEEDED, None
        skip = resume.step if resume else 0  # actions done before a crash
        for stage in workflow.defn.stages:
            if skip >= len(stage.actions):
                skip -= len(stage.actions)
                continue
            if self.control.cancelled:
                status = Status.CANCELLED
                break
            ref = await self.context.spawn(
                StageActor, workflow, stage, self.execution_id, values, self.control, reporter,
                skip, resume.timers if resume else None, name=f"stage-{stage.id}")
            skip = 0
            try:
                result: StageResult = await ref.ask(_RunStage())
            except ActorCrashedError as exc:  # a bug of ours: the stage actor itself crashed
                status, error = Status.FAILED, _error_info(exc, stage.id)
                break
            except ActorDeadError:  # stopped under us: the runner or its system is closing
                status = Status.CANCELLED
                break
            stages.append(result)
            if result.status != Status.SUCCEEDED:
                status = result.status
                failed = [action for action in result.actions if action.error is not None]
                if result.status == Status.FAILED and failed:
                    error = failed[-1].error
                break
        await reporter.report(MessageType.FINAL_STORE, dict(values))
        await reporter.progress("workflow_finished", status=status, error=error)
        outcome = WorkflowResult(
            execution_id=self.execution_id, workflow_id=workflow.id, status=status,
            store=dict(values), stages=stages, started_at=started,
            duration=time.monotonic() - clock, error=error,
        )
        with contextlib.suppress(ActorDeadError):  # (closing: its on_stop says how it ended)
            await self.reporter.execution.tell(_Finished(outcome))
        return outcome


def _starting(resume: Resume | None) -> Status:
    """The status a workflow starts in: paused if it was recovered paused (it stays so until
    resumed), else running."""
    return Status.PAUSED if resume is not None and resume.paused else Status.RUNNING


async def _start_workflow(
    owner: Actor, workflow: Workflow | ServerlessWorkflow, execution_id: str,
    store: dict[str, Any], *, delivered: bool = False, resume: Resume | None = None,
    durable: bool = False,
) -> tuple[Control, ActorRef]:
    """Start the workflow actor under ``owner`` (which it reports to) and set it running:
    the stages' ``WorkflowActor``, or a Serverless Workflow's ``ServerlessActor``; a
    recovered one (``resume``) from its next step, paused if it was."""
    control = Control()
    if resume is not None and resume.paused:
        control.pause()
    context = owner.context
    actor: type[Actor] = WorkflowActor
    if not isinstance(workflow, Workflow):
        from actorstage.serverless._execution import ServerlessActor

        actor = ServerlessActor
    ref = await context.spawn(actor, workflow, execution_id, control, context.self_ref,
                              delivered, resume, durable, name="workflow")
    context.watch(ref)
    await ref.tell(_Run(store))
    return control, ref


class ExecutionActor(Actor):
    """One execution, in the process that started it.

    It runs the workflow actor here, or (with ``process``) a ``ChildExecution``
    in a child process that runs it there; it takes signals, and numbers and
    hands on every report to the broker, in order.
    """

    _traced = False  # (the runtime's own: see Actor._traced)

    def __init__(self, workflow: Workflow | ServerlessWorkflow, execution: Execution,
                 broker: Broker, store: dict[str, Any], process: ProcessOptions | None,
                 resume: Resume | None = None, state: StateStore | None = None) -> None:
        self.state = state  # a durable runner's: step boundaries are written before going on
        self.workflow = workflow
        self.execution = execution
        self.broker = broker
        self.store = store
        self.process = process
        self.control: Control | None = None
        self.child: ActorRef | None = None
        self.resume = resume
        self.seq = resume.seq if resume is not None else 0  # numbered on after a recovery

    def _policy(self) -> TemporaryPolicy:
        return TEMPORARY_POLICY

    async def on_start(self) -> None:
        if self.process is None:
            self.control, self.child = await _start_workflow(
                self, self.workflow, self.execution.id, self.store, resume=self.resume,
                durable=self.state is not None)
            return
        from actorstage.transport._host import main_location

        modules = self.workflow.modules()
        main = main_location() if "__main__" in modules else ("", "")
        self.child = await self.context.spawn(
            ChildExecution, self.workflow.defn, self.execution.id, self.store,
            [module for module in modules if module != "__main__"], main,
            self.broker.child_middleware(), self.resume, self.state is not None,
            current_carrier(), name="workflow", process=self.process)
        self.context.watch(self.child)

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _Report):
            await self._report(message)
        elif isinstance(message, _Durable):
            await self._report(message.report)
            if self.state is not None:
                await self.state.flush()
            if self.execution.lost:  # taken over elsewhere: no next step here
                if self.control is not None:
                    self.control.cancel()
                elif self.child is not None:
                    await self.child.tell(_Signal("cancel"))
        elif isinstance(message, _Signal):
            if self.control is not None:
                getattr(self.control, message.kind)()
            elif self.child is not None:
                await self.child.tell(message)
        elif isinstance(message, _Finished):
            await self._finish(message.result)
        elif isinstance(message, Terminated) and not self.execution.done:
            await self._finish(self._lost(message))
        return None

    async def on_stop(self) -> None:
        """Stopped before the end (the runner or its system closed): nobody waits forever."""
        if not self.execution.done:
            stopped = ErrorInfo(type_name="RunnerStopped",
                                message="the runner stopped before the workflow ended")
            self.execution._finish(self._ended_early(Status.CANCELLED, stopped))

    async def _finish(self, result: WorkflowResult) -> None:
        broker, execution = self.broker, self.execution
        if self.process is not None:
            await broker.hook("on_child_exit", execution, result)
        if result.error is not None and result.status == Status.FAILED:
            await broker.hook("on_error", execution, result.error)
        execution._finish(result)
        self.context.stop()

    def _lost(self, ended: Terminated) -> WorkflowResult:
        """The result of an execution whose workflow ended without reporting its end."""
        crash = ended.error
        if crash is not None:
            error = ErrorInfo(type_name=crash.type_name, message=crash.error_message,
                              traceback=crash.traceback)
        else:
            error = ErrorInfo(type_name="WorkflowLost",
                              message=f"the workflow ended ({ended.reason}) without a result")
        return self._ended_early(Status.FAILED, error)

    def _ended_early(self, status: Status, error: ErrorInfo) -> WorkflowResult:
        """A result from what the parent knows: its copy of the store, no stage timings."""
        execution = self.execution
        return WorkflowResult(
            execution_id=execution.id, workflow_id=self.workflow.id, status=status,
            store=dict(execution.store), stages=[], started_at=execution.started_at,
            duration=time.monotonic() - execution.clock, error=error,
        )

    async def _report(self, report: _Report) -> None:
        self.seq += 1
        execution = self.execution
        raw = BrokerMessage(
            message_type=report.message_type, payload=report.payload, execution_id=execution.id,
            workflow_id=self.workflow.id, stage_id=report.stage_id, action_id=report.action_id,
            seq=self.seq, time=report.time or time.time())
        passed = await self.broker.through(typed(raw), outgoing=True,
                                           spawned=self.process is not None)
        if passed is None:
            return
        passed = typed(passed)  # (a middleware may have handed back plain data)
        payload = passed.payload
        if isinstance(payload, ProgressEvent):
            execution._progress(payload)
        elif passed.message_type == MessageType.STORE_PUT:
            execution.store[payload["key"]] = payload["value"]
        elif passed.message_type == MessageType.STORE_DELETE:
            execution.store.pop(payload["key"], None)
        await self.broker.dispatch(passed)
        execution._publish(passed)


class ChildExecution(Actor):
    """One execution, in the child process that runs it: reports go to the parent.

    Its parent (the ``ExecutionActor`` over in the parent process) is reached
    through ``context.parent``; the end is sent with ``ask``, so it has
    arrived before this process exits.
    """

    _traced = False  # (the runtime's own: see Actor._traced)

    def __init__(self, defn: WorkflowDef | dict[str, Any], execution_id: str,
                 store: dict[str, Any], modules: list[str], main: tuple[str, str] = ("", ""),
                 middleware: list[tuple[str, bytes]] | None = None,
                 resume: Resume | None = None, durable: bool = False,
                 trace: dict[str, str] | None = None) -> None:
        self.resume = resume
        self.durable = durable
        self.trace = trace  # the trace context the execution was started in
        self.defn = defn  # a Serverless Workflow's travels as the mapping it was read as
        self.workflow_id = defn.id if isinstance(defn, WorkflowDef) else \
            str(defn["document"]["name"])
        self.main = main
        self.middleware_specs = middleware or []
        self.middleware: list[Middleware] = []
        self.execution_id = execution_id
        self.store = store
        self.modules = modules
        self.control: Control | None = None
        self.started_at = time.time()
        self.clock = time.monotonic()
        self.finished = False

    def _policy(self) -> TemporaryPolicy:
        return TEMPORARY_POLICY

    async def on_start(self) -> None:
        from actorstage.transport._child import load_main
        from actorstage.transport._codec import CODEC

        load_main(*self.main)  # actions registered in the parent's __main__ script
        for module in self.modules:  # they register the workflow's actions here
            importlib.import_module(module)
        self.middleware = [CODEC.decode(name, body) for name, body in self.middleware_specs]
        workflow: Workflow | ServerlessWorkflow
        if isinstance(self.defn, WorkflowDef):
            workflow = Workflow.from_def(self.defn)
        else:
            from actorstage.serverless._execution import ServerlessWorkflow

            workflow = ServerlessWorkflow.from_raw(self.defn)
        with attached(self.trace):
            self.control, _ref = await _start_workflow(
                self, workflow, self.execution_id, self.store, delivered=True,
                resume=self.resume, durable=self.durable)

    @property
    def _parent(self) -> ActorRef:
        parent = self.context.parent
        assert parent is not None, "a ChildExecution is spawned by an ExecutionActor"
        return parent

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _Deliver):  # an action's own: answered once it is written
            await self._forward(message.report)
            link = self.context.system._node().up
            if link is not None:
                await link.flush(DELIVERY_BOUND)
        elif isinstance(message, _Report):
            await self._forward(message)
        elif isinstance(message, _Durable):  # answered once the parent has written it
            report: _Report | None = message.report
            if self.middleware:
                report = await self._outgoing(message.report)
            if report is not None:
                await self._parent.ask(_Durable(report))
        elif isinstance(message, _Signal):
            if self.control is not None:
                getattr(self.control, message.kind)()
        elif isinstance(message, _Finished):
            await self._end(message.result)
        elif isinstance(message, Terminated) and not self.finished:
            crash = message.error
            error = ErrorInfo(type_name=crash.type_name, message=crash.error_message,
                              traceback=crash.traceback) if crash is not None else None
            await self._end(WorkflowResult(
                execution_id=self.execution_id, workflow_id=self.workflow_id, status=Status.FAILED,
                store={}, stages=[], started_at=self.started_at,
                duration=time.monotonic() - self.clock, error=error))
        return None

    async def _forward(self, report: _Report) -> None:
        if self.middleware:
            sent = await self._outgoing(report)
            if sent is None:
                return
            report = sent
        await self._parent.tell(report)

    async def _outgoing(self, report: _Report) -> _Report | None:
        """The middlewares' ``outgoing`` steps, here in the child."""
        current: BrokerMessage | None = typed(BrokerMessage(
            message_type=report.message_type, payload=report.payload,
            execution_id=self.execution_id, workflow_id=self.workflow_id, stage_id=report.stage_id,
            action_id=report.action_id, time=report.time))
        for middleware in self.middleware:
            if current is not None:
                current = await middleware.outgoing(current)
        if current is None:
            return None
        return _Report(current.message_type, current.payload, current.stage_id,
                       current.action_id, current.time)

    async def _end(self, result: WorkflowResult) -> None:
        self.finished = True
        await self._parent.ask(_Finished(result))  # answered once it has arrived
        self.context.stop()


# -- the handle and the runner --------------------------------------------------------------


class Execution:
    """A started workflow: its status, the parent's copy of its store, and its controls."""

    def __init__(self, execution_id: str, workflow_id: str, store: dict[str, Any]) -> None:
        self.id = execution_id
        self.workflow_id = workflow_id
        self.status = Status.PENDING
        self.current = ""  # the action or task that started last (what the observer shows)
        self.steps = 0  # actions or tasks finished so far (here: since it was recovered)
        self.store: dict[str, Any] = dict(store)  # follows the workflow's puts and deletes
        self.started_at = time.time()
        self.clock = time.monotonic()
        self.pid: int | None = None  # the child process's, for a spawned execution
        self.lost = False  # another runner took it over (a shared state)
        self._ref: ActorRef | None = None
        self._done: asyncio.Future[WorkflowResult] = asyncio.get_running_loop().create_future()
        self._history: deque[BrokerMessage] = deque(maxlen=_HISTORY)
        self._forgotten = 0  # messages older than the history keeps
        self._subscribers: list[Subscription[BrokerMessage]] = []

    def events(self, max_buffer: int = _HISTORY) -> Subscription[BrokerMessage]:
        """This execution's messages, from its start, ending when it ends::

            async with execution.events() as messages:
                async for message in messages:
                    ...

        The last 1,000 messages are kept for a subscriber that comes late (so
        ``start`` then ``events()`` misses nothing of a usual workflow);
        ``missed`` counts those it did not get, older or past ``max_buffer``.
        """
        return _ExecutionEvents(self, max_buffer)

    def _publish(self, message: BrokerMessage) -> None:
        if len(self._history) == self._history.maxlen:
            self._forgotten += 1
        self._history.append(message)
        for subscriber in self._subscribers:
            subscriber._offer(message)

    async def pause(self) -> None:
        """Pause: it takes effect between actions, or at the running action's checkpoint."""
        await self._signal("pause")

    async def resume(self) -> None:
        await self._signal("resume")

    async def cancel(self) -> None:
        """Cancel: the running action is cancelled and the execution ends ``cancelled``."""
        await self._signal("cancel")

    async def _signal(self, kind: str) -> None:
        if self._done.done() or self._ref is None:
            return
        if kind == "pause":
            self.status = Status.PAUSED if self.status == Status.RUNNING else self.status
        elif kind == "resume" and self.status == Status.PAUSED:
            self.status = Status.RUNNING
        await self._ref.tell(_Signal(kind))

    async def result(self) -> WorkflowResult:
        """Wait for the end; the result holds the status, final store, timings and error."""
        return await asyncio.shield(self._done)

    @property
    def done(self) -> bool:
        return self._done.done()

    def add_done_callback(self, callback: Callable[[WorkflowResult], None]) -> None:
        """Call ``callback(result)`` once the execution has ended (soon, if it has)."""
        self._done.add_done_callback(lambda done: callback(done.result()))

    def _progress(self, event: ProgressEvent) -> None:
        kind = event.kind
        if kind in ("action_started", "task_started"):
            self.current = event.task or f"{event.stage_id}/{event.action_id}"
        elif kind in ("action_finished", "task_finished"):
            self.steps += 1
        elif event.kind in ("workflow_started", "workflow_recovered"):
            # (recovered paused, it says so: paused until resumed)
            self.status = Status.PAUSED if event.status == Status.PAUSED else Status.RUNNING
        elif event.kind == "workflow_paused":
            self.status = Status.PAUSED
        elif event.kind == "workflow_resumed":
            self.status = Status.RUNNING

    def _finish(self, result: WorkflowResult) -> None:
        self.status = result.status
        if not self._done.done():
            self._done.set_result(result)
        for subscriber in self._subscribers:
            subscriber._end()


class _ExecutionEvents(Subscription[BrokerMessage]):
    """``execution.events()``: the history first, then what comes, until the end."""

    def __init__(self, execution: Execution, max_buffer: int) -> None:
        super().__init__(execution._subscribers, max_buffer)
        self.execution = execution

    async def __aenter__(self) -> _ExecutionEvents:
        await super().__aenter__()
        execution = self.execution
        self.missed += execution._forgotten
        for message in execution._history:
            self._offer(message)
        if execution.done:
            self._end()
        return self


def _from_saved(saved: Saved) -> Workflow | ServerlessWorkflow:
    """The workflow of an execution the state holds, checked again."""
    raw = msgspec.json.decode(saved.definition)
    if saved.dialect == "serverless":
        from actorstage.serverless._execution import ServerlessWorkflow

        return ServerlessWorkflow.from_raw(raw)
    return Workflow.from_def(msgspec.convert(raw, WorkflowDef))


def _runnable(workflow: Any) -> Workflow | ServerlessWorkflow:
    """What ``Runner.start`` runs: a ``Workflow``, or a Serverless Workflow's definition."""
    if isinstance(workflow, WorkflowDef):
        return Workflow.from_def(workflow)
    if isinstance(workflow, Workflow):
        return workflow
    from actorstage.serverless._definition import Definition
    from actorstage.serverless._execution import ServerlessWorkflow

    if isinstance(workflow, Definition):
        return ServerlessWorkflow(workflow)
    if isinstance(workflow, ServerlessWorkflow):
        return workflow
    raise InvalidDefinitionError(
        "Runner.start takes a Workflow, a WorkflowDef or a Serverless Workflow Definition, "
        f"got {workflow!r}")


class Runner:
    """Runs workflows as actors in an ``ActorSystem``.

    Give it a running system, or use it as ``async with Runner() as runner:``
    to have one of its own. ``runner.broker`` takes the handlers that receive
    what running workflows send.
    """

    def __init__(self, system: ActorSystem | None = None, *, broker: Broker | None = None,
                 state: str | StateStore | None = None) -> None:
        self._system = system
        self._owned: ActorSystem | None = None
        self.broker = broker if broker is not None else Broker()
        self._running: set[Execution] = set()
        self.state = open_state(state)  # None: in memory only
        self._state_open = False
        self._journaled: dict[str, tuple[Execution, Workflow | ServerlessWorkflow]] = {}
        self._lease_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Called with each execution recovered from the state (the service adopts it), and
        # with the id of each one another runner took over from this one.
        self.recovered: list[Callable[[Execution], Awaitable[None]]] = []
        self.lost: list[Callable[[str], None]] = []
        if self.state is not None:
            self.broker.register_handler("*", self._journal)
        RUNNERS.add(self)  # (its executions are observed: metrics, the observer)
        self.ended: deque[Execution] = deque(maxlen=50)  # the last ones to end, newest last

    def _done(self, execution: Execution, result: WorkflowResult) -> None:
        self._running.discard(execution)
        self.ended.append(execution)
        execution_ended(str(result.status))

    async def __aenter__(self) -> Runner:
        if self._system is None:
            self._owned = self._system = ActorSystem("workflows")
            await self._owned.__aenter__()
        try:
            await self.open()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.close()
        finally:
            if self._owned is not None:
                owned, self._owned, self._system = self._owned, None, None
                await owned.__aexit__(*exc_info)

    async def open(self, *, recover: bool = True) -> list[Execution]:
        """Open a durable runner's state and (``recover``) run again the executions it holds
        that had not ended (``async with Runner(state=...)`` does this); those executions."""
        if self.state is None or self._state_open:
            return []
        await self.state.open()
        self._state_open = True
        if self.state.shared:
            self._lease_task = asyncio.ensure_future(self._leases())
            self.state.on_lost = self._lost
            await self.state.listen(self._controlled)
        return await self.recover() if recover else []

    async def close(self) -> None:
        """Leave: a durable runner keeps its running executions in its state (the next runner
        on it resumes them) and stops them here; an in-memory one cancels them."""
        RUNNERS.discard(self)  # (no more observed)
        state = self.state
        if state is None or not self._state_open:
            await self.cancel_all()
            return
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
            self._lease_task = None
        await state.flush()
        self._state_open = False  # from here on, nothing more is written: a suspend
        try:
            await self.cancel_all()
        finally:
            self._journaled.clear()
            await state.close()

    def subscribe(self, max_buffer: int = 1000) -> Subscription[BrokerMessage]:
        """Every execution's messages from now on; see ``Broker.subscribe``."""
        return self.broker.subscribe(max_buffer)

    async def cancel_all(self, grace: float = 5.0) -> None:
        """Cancel every execution still running and wait (up to ``grace`` s) for their ends.

        Leaving ``async with Runner()`` does this first: the executions end
        ``cancelled``, as ``execution.cancel()`` ends them, in milliseconds.
        """
        running = [execution for execution in self._running if not execution.done]
        for execution in running:
            await execution.cancel()
        if running:
            await asyncio.wait([asyncio.ensure_future(execution.result())
                                for execution in running], timeout=grace)

    @property
    def system(self) -> ActorSystem:
        if self._system is None:
            raise ActorstageError("this Runner has no actor system: give it one, "
                                  "or use it as `async with Runner() as runner:`")
        return self._system

    async def start(
        self, workflow: AnyWorkflow, *, execution_id: str | None = None,
        store: dict[str, Any] | None = None, process: bool | ProcessOptions | None = None,
        annotations: dict[str, Any] | None = None,
    ) -> Execution:
        """Start ``workflow``; returns its ``Execution`` at once.

        It runs in this process, or with ``process=True`` (or a
        ``ProcessOptions``) in a child process of its own, whose reports reach
        the broker here as they happen. A Serverless Workflow ``Definition``
        runs too: ``store`` is then its input, and its output the final store.
        A durable runner writes the execution to its state before it starts (with
        ``annotations``, the caller's own notes, kept with it); an id its state already
        has is refused (``StateError``).
        """
        return await self._start(_runnable(workflow), execution_id, store, process,
                                 annotations=annotations)

    async def _start(self, runnable: Workflow | ServerlessWorkflow, execution_id: str | None,
                     store: dict[str, Any] | None, process: bool | ProcessOptions | None,
                     resume: Resume | None = None, *,
                     annotations: dict[str, Any] | None = None) -> Execution:
        options = options_for(process, self.system.process_defaults)
        broker = self.broker
        if options is not None and isinstance(runnable, Workflow):
            runnable = await self._spawn_definition(runnable)  # middlewares may rewrite it
        defaults = runnable.defn.store if isinstance(runnable, Workflow) else {}
        initial = {**defaults, **(store or {})}
        try:
            msgspec.msgpack.encode(initial)
        except (TypeError, ValueError) as exc:
            raise InvalidDefinitionError(f"the initial store cannot be encoded: {exc}") from None
        if execution_id is not None and not valid_id(execution_id):
            raise InvalidDefinitionError(
                f"execution id {execution_id!r} must be 1-128 letters, digits or _.:-")
        execution = Execution(execution_id or uuid.uuid4().hex, runnable.id, initial)
        if resume is not None and resume.paused:
            execution.status = Status.PAUSED
        if self.state is not None and self._state_open and resume is None:
            await self._save(execution, runnable, initial, options, annotations or {})
        if self.state is not None and self._state_open:
            self._journaled[execution.id] = (execution, runnable)
            execution.add_done_callback(partial(self._ended, execution.id))
        if options is not None:
            env = {name: value for middleware in broker.middleware
                   for name, value in middleware.child_env().items()}
            if env:
                options = msgspec.structs.replace(options, env={**(options.env or {}), **env})
            await broker.hook("before_spawn", execution)
        try:
            execution._ref = await self.system.spawn(
                ExecutionActor, runnable, execution, broker, initial, options, resume,
                self.state if self._state_open else None, name=f"execution-{execution.id}")
        except ActorCrashedError as exc:
            inner = exc.__cause__
            if isinstance(inner, ActorCrashedError):  # the workflow's own start failed: say so
                raise inner from None
            raise
        self._running.add(execution)
        execution.add_done_callback(partial(self._done, execution))
        if options is not None:
            node = self.system.tree().find(f"{execution._ref.path}/workflow")
            execution.pid = node.pid if node is not None else None
            await broker.hook("after_spawn", execution)
        return execution

    # -- durability ----------------------------------------------------------------------

    async def _save(self, execution: Execution, runnable: Workflow | ServerlessWorkflow,
                    store: dict[str, Any], options: ProcessOptions | None,
                    annotations: dict[str, Any]) -> None:
        from actorstage.workflows._state import Saved, StateError

        assert self.state is not None
        if isinstance(runnable, Workflow):
            dialect, definition = "stages", msgspec.json.encode(runnable.defn).decode()
        else:
            dialect = "serverless"
            definition = msgspec.json.encode(runnable.definition.raw).decode()
        saved = Saved(id=execution.id, workflow_id=runnable.id, dialect=dialect,
                      definition=definition, store=dict(store), request={
                          "store": store, "annotations": annotations,
                          "process": None if options is None else
                          msgspec.to_builtins(options)})
        known = await self.state.create(saved)
        if known is not None:
            raise StateError(f"execution {execution.id!r} exists in the state already "
                             f"({known.status}); an id runs once")

    def _journal(self, message: BrokerMessage) -> None:
        """The broker's handler of a durable runner: every message into the state, with a
        checkpoint at each step boundary."""
        entry = self._journaled.get(message.execution_id)
        state = self.state
        if entry is None or state is None or not self._state_open:
            return
        execution, runnable = entry
        payload = message.payload
        step: int | None = None
        store: dict[str, Any] | None = None  # (taken as JSON text at once: not copied)
        finished = isinstance(payload, ProgressEvent) and payload.kind == "workflow_finished"
        if isinstance(payload, ProgressEvent) and payload.kind == "action_finished" and \
                payload.status in (Status.SUCCEEDED, Status.FAILED) and \
                isinstance(runnable, Workflow):
            step = runnable.position(payload.stage_id, payload.action_id) + 1
            store = execution.store
        elif message.message_type == MessageType.CHECKPOINT and isinstance(payload, dict):
            step = int((payload.get("cursors") or {}).get("", {}).get("index", 0))
            store = payload  # a Serverless Workflow's position: its cursors, $context, waits
        state.note(message, store, step)  # (at the end, the store is final_store's)
        if finished:
            self._journaled.pop(message.execution_id, None)

    def _ended(self, execution_id: str, result: WorkflowResult) -> None:
        """An execution ended without its workflow saying so (its child process died, its
        start failed): the state records the end, so it is not run again."""
        entry = self._journaled.pop(execution_id, None)
        if entry is None or self.state is None or not self._state_open:
            return
        self.state.update(execution_id, status=str(result.status), ended_at=time.time(),
                          store=dict(result.store), error=None if result.error is None else
                          msgspec.to_builtins(result.error))

    async def recover(self) -> list[Execution]:
        """Run again every execution of the state that had not ended (of a shared state:
        those whose owner's lease ran out), from its next step (paused if it was); one that
        cannot run here (its actions are not registered) is ended ``failed`` in the state,
        saying why. ``recovered`` hooks are called with each."""
        from actorstage.transport._options import ProcessOptions

        assert self.state is not None
        recovered = []
        for saved in await self.state.claim():
            try:
                runnable = _from_saved(saved)
                process = saved.request.get("process")
                options = None if process is None else ProcessOptions(**process)
                store, context, cursors, timers = saved.store, None, {}, saved.timers
                if saved.dialect == "serverless":  # its position, if a checkpoint was made
                    store = saved.request.get("store") or {}
                    if "cursors" in saved.store:
                        cursors = saved.store["cursors"]
                        context, timers = saved.store.get("context"), saved.store.get(
                            "timers") or {}
                resume = Resume(step=saved.next_step, seq=saved.last_seq, paused=saved.paused,
                                timers=timers, context=context, cursors=cursors)
                execution = await self._start(runnable, saved.id, store,
                                              options or None, resume)
            except Exception as exc:  # it cannot run here: say so, in the state too
                log.exception("execution %s could not be recovered", saved.id)
                self.state.update(saved.id, status="failed", ended_at=time.time(), error={
                    "type_name": type(exc).__name__, "message": f"not recovered: {exc}"})
                continue
            recovered.append(execution)
        if recovered:
            log.info("recovered %d executions from the state", len(recovered))
        for execution in recovered:
            for hook in self.recovered:
                await hook(execution)
        return recovered

    def _lost(self, execution_id: str) -> None:
        """Another runner took this execution over (our lease ran out: we stalled): stop
        running it here, writing nothing more of it."""
        entry = self._journaled.pop(execution_id, None)
        if entry is None:
            return
        entry[0].lost = True
        log.warning("execution %s was taken over by another runner (this runner's lease ran "
                    "out); stopping it here", execution_id)
        for hook in self.lost:
            hook(execution_id)
        self._later(entry[0].cancel())

    def _controlled(self, execution_id: str, kind: str) -> None:
        """A control another runner sent through the shared state: applied if it is ours."""
        entry = self._journaled.get(execution_id)
        if entry is not None and kind in ("pause", "resume", "cancel"):
            self._later(getattr(entry[0], kind)())

    def _later(self, work: Awaitable[None]) -> None:
        """Run ``work`` on its own, kept until it ends (from a callback that cannot await)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def control(self, execution_id: str, kind: str) -> bool:
        """Pause, resume or cancel an execution by id: here if it runs here, else (a shared
        state) by the runner that owns it; whether it runs here."""
        if kind not in ("pause", "resume", "cancel"):
            raise ValueError(f"a control is pause, resume or cancel, got {kind!r}")
        entry = self._journaled.get(execution_id)
        if entry is not None:
            await getattr(entry[0], kind)()
            return True
        if self.state is not None and self.state.shared:
            await self.state.send_control(execution_id, kind)
        return False

    async def _leases(self) -> None:
        """A shared state: renew this runner's leases, and take over the executions of
        runners whose lease ran out (they died), every third of the lease."""
        state = self.state
        assert state is not None
        while True:
            await asyncio.sleep(state.lease / 3)
            try:
                await state.renew()
                await self.recover()
            except Exception:
                log.exception("renewing the leases of the state failed")

    async def _spawn_definition(self, workflow: Workflow) -> Workflow:
        """The definition a spawn runs, after the middlewares' ``spawn_definition``."""
        for middleware in self.broker.middleware:
            defn = workflow.defn
            try:
                changed = await middleware.spawn_definition(defn)
            except Exception as exc:
                raise InvalidDefinitionError(
                    f"spawn middleware {type(middleware).__name__} refused the spawn: "
                    f"{exc}") from exc
            if changed is not defn:
                if not isinstance(changed, WorkflowDef):
                    raise InvalidDefinitionError(
                        f"spawn middleware {type(middleware).__name__}.spawn_definition "
                        f"gave {changed!r}, not a WorkflowDef")
                workflow = Workflow.from_def(changed)  # checked again
        return workflow

    async def _outcome(self, execution: Execution) -> WorkflowResult:
        """Its result; cancelling the caller cancels the execution (structured concurrency)."""
        try:
            return await execution.result()
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await execution.cancel()
                with anyio.move_on_after(5.0):
                    await execution.result()
            raise

    async def execute(
        self, workflow: AnyWorkflow, *, execution_id: str | None = None,
        store: dict[str, Any] | None = None,
    ) -> WorkflowResult:
        """Run ``workflow`` in this process to its end and return the result.

        Cancelling the caller (a timeout, a cancelled task group) cancels the
        execution and waits for its end; ``start`` gives an execution that runs
        on by itself.
        """
        execution = await self.start(workflow, execution_id=execution_id, store=store)
        return await self._outcome(execution)

    async def spawn(
        self, workflow: AnyWorkflow, *, execution_id: str | None = None,
        store: dict[str, Any] | None = None, process: bool | ProcessOptions = True,
    ) -> WorkflowResult:
        """Run ``workflow`` in a child process to its end and return the result.

        ``process`` takes the same ``ProcessOptions`` as a process actor
        (transport, interpreter, ``start="forkserver"``...). The modules that
        register the workflow's actions are imported in the child.
        """
        execution = await self.start(workflow, execution_id=execution_id, store=store,
                                     process=process or True)
        return await self._outcome(execution)
