"""Serverless Workflow executions, each task run by an actor of the execution's tree.

An execution is a ``RunActor``; every task it runs is a ``TaskActor`` spawned
for it under the task that contains it (a ``do`` list's tasks under the
``do``, a ``for`` loop's under the ``for``, a ``fork``'s branches under the
``fork``, at once), asked to run on its input and stopped once it has answered.
Data flows as the DSL says: a task's raw input is filtered by ``input.from``,
its output by ``output.as``, and ``export.as`` sets the workflow's
``$context``; ``then`` says where the flow goes. Pause and cancel take effect
between tasks and inside ``wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actorstage._telemetry import span
from actorstage.actors._actor import Actor
from actorstage.actors._system import ActorSystem
from actorstage.serverless._bus import EventBus, default_bus, matches
from actorstage.serverless._definition import Definition, Task, duration_seconds
from actorstage.serverless._expressions import ExpressionError, evaluate, render
from actorstage.workflows._context import Control
from actorstage.workflows._events import ErrorInfo

__all__ = ["Cancelled", "Run", "WorkflowError", "execute"]

T = TypeVar("T")

ERRORS = "https://serverlessworkflow.io/spec/1.0.0/errors/"
CANCELLED = "@cancelled"  # an Outcome's flow when the execution was cancelled
RUNTIME = {"name": "actorstage", "version": "", "metadata": {}}


class WorkflowError(Exception):
    """The DSL's error: ``type`` (a URI), ``status``, and ``title``, ``detail`` and
    ``instance`` (the JSON pointer of the task it came from) when known."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = {key: value for key, value in error.items() if value is not None}
        title = self.error.get("title") or self.error.get("type", "error")
        detail = f": {self.error['detail']}" if self.error.get("detail") else ""
        super().__init__(f"{title}{detail} (status {self.error.get('status')}, at "
                         f"{self.error.get('instance', '?')})")

    def info(self) -> ErrorInfo:
        """The error as a Runner's progress events and results carry it: ``type_name`` is
        the DSL's error type, ``action_id`` the task's JSON pointer."""
        return ErrorInfo(type_name=str(self.error.get("type", "error")), message=str(self),
                         action_id=str(self.error.get("instance", "")))


def _expression_error(task: Task, exc: ExpressionError) -> WorkflowError:
    return WorkflowError({"type": ERRORS + "expression", "status": 400,
                          "title": "Expression Error",
                          "detail": f"task {task.name!r}: {exc}", "instance": task.pointer})


class Cancelled(Exception):
    """The execution was cancelled (its ``Control.cancel``)."""


Report = Callable[..., Awaitable[None]]


@dataclass
class Run:
    """What one execution's tasks share: the definition, ``$context``, the descriptors
    the expressions see, the control, and the tasks' progress (pointer, event)."""

    definition: Definition
    input: Any
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    context: Any = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    control: Control = field(default_factory=Control)
    report: Report | None = None  # the progress of a Runner's execution goes out here
    # A durable Runner's: called with the execution's position at each task boundary
    checkpoint: Report | None = None
    # Where each task list in progress stands ({key: {"index", "data"}}, loops' and forks'
    # own entries too), and the ends of the waits under way: what a checkpoint holds.
    cursors: dict[str, Any] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    resume: dict[str, Any] = field(default_factory=dict)  # a recovered one's, used once
    bus: EventBus = field(default_factory=default_bus)  # where emit and listen meet
    # (kind, task pointer) of the latest progress events, for a look from Python
    events: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=10_000))
    started_at: float = field(default_factory=time.time)
    _paused: bool = False  # a workflow_paused event went out and no resumed yet

    def __post_init__(self) -> None:
        if not self.secrets:  # the secrets the definition uses, from the environment
            names = (self.definition.raw.get("use") or {}).get("secrets") or []
            self.secrets = {str(name): os.environ[str(name)] for name in names
                            if str(name) in os.environ}

    @functools.cached_property
    def workflow(self) -> dict[str, Any]:
        """``$workflow``: the same for every task of the execution."""
        return {"id": self.id, "definition": self.definition.raw, "input": self.input,
                "startedAt": {"epoch": {"seconds": int(self.started_at)}}}

    def arguments(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        arguments = {"context": self.context, "secrets": self.secrets, "runtime": RUNTIME,
                     "workflow": self.workflow}
        if extra:
            arguments.update(extra)
        return arguments

    async def progress(self, kind: str, task: str = "", *, status: str = "",
                       error: WorkflowError | None = None, data: Any = None,
                       attempt: int = 0) -> None:
        """A progress event: ``task_started``, ``task_finished``, ``task_retry``,
        ``task_skipped``, ``workflow_paused``, ``workflow_resumed``."""
        self.events.append((kind, task))
        if self.report is not None:
            await self.report(kind, task=task, status=status, attempt=attempt, data=data,
                              error=None if error is None else error.info())

    async def save(self) -> None:
        """A durable execution's checkpoint: where every task list in progress stands."""
        if self.checkpoint is not None:
            await self.checkpoint({"cursors": {key: dict(value) if isinstance(value, dict)
                                               else value for key, value in
                                               self.cursors.items()},
                                   "context": self.context, "timers": dict(self.timers)})

    async def boundary(self, task: str = "") -> None:
        """Where a pause lands and a cancel is seen: before each task, and inside ``wait``.
        Concurrent branches share one paused/resumed pair of events."""
        control = self.control
        if control.paused and not control.cancelled:
            if not self._paused:
                self._paused = True
                await self.progress("workflow_paused", task, status="paused")
            await control.resumed.wait()
            if self._paused and not control.cancelled:
                self._paused = False
                await self.progress("workflow_resumed", task, status="running")
        if control.cancelled:
            raise Cancelled("the execution was cancelled")

    def used(self, kind: str, name: str, pointer: str) -> dict[str, Any]:
        """Definition ``name`` of ``use.<kind>`` (``errors``, ``retries``,
        ``authentications``); the DSL's configuration error when there is none."""
        known = (self.definition.raw.get("use") or {}).get(kind) or {}
        if name not in known:
            raise WorkflowError({
                "type": ERRORS + "configuration", "status": 400, "instance": pointer,
                "title": "Unknown Reference",
                "detail": f"{name!r} is not defined in use.{kind}"})
        return dict(known[name])


@dataclass(frozen=True)
class _Go:
    """Run the task on ``input``, with the variables of the loops around it."""

    input: Any
    variables: dict[str, Any]
    scope: str = ""  # the key of the task list it runs in (see Run.cursors)


@dataclass(frozen=True)
class Outcome:
    output: Any
    flow: str = "continue"  # continue, exit, end, or the name of a task of the same list
    error: WorkflowError | None = None


class TaskActor(Actor):
    """Runs one task (and, for ``do``, ``for``, ``try`` and ``fork``, the tasks inside it,
    as its children)."""

    _traced = False  # (the runtime's own: see Actor._traced)
    _cancel_on_stop = True  # a stopped task (a fork's losing branch) stops at once

    def __init__(self, run: Run, task: Task) -> None:
        self.run = run
        self.task = task
        self.scope = ""

    def _key(self, suffix: str) -> str:
        """The key of a task list (or loop, fork, wait) of this task, in this run of it."""
        return f"{self.scope}>{self.task.pointer}{suffix}"

    async def receive(self, message: Any) -> Any:
        assert isinstance(message, _Go)
        self.scope = message.scope
        try:
            return await self._run(message.input, message.variables)
        except WorkflowError as exc:
            return Outcome(None, error=exc)
        except Cancelled:
            return Outcome(None, flow=CANCELLED)

    async def _run(self, raw: Any, variables: dict[str, Any]) -> Outcome:
        run, task = self.run, self.task
        body = task.body
        descriptor = {"name": task.name, "reference": task.pointer, "definition": body,
                      "input": raw, "startedAt": {"epoch": {"seconds": int(time.time())}}}
        # $data: the loop variables in scope, as Zigflow (Stigmer's engine) names them
        arguments = run.arguments({"data": dict(variables), **variables, "task": descriptor,
                                   "input": raw})
        try:
            if "if" in body and not _truthy(evaluate(str(body["if"]), raw, arguments)):
                await run.progress("task_skipped", task.pointer)
                return Outcome(raw)
            data = raw
            spec = body.get("input")
            if isinstance(spec, dict):
                self._validated(spec, raw, "input")
                if "from" in spec:
                    data = self._transform(spec["from"], raw, arguments)
            arguments["input"] = data
            await run.progress("task_started", task.pointer, status="running", data=data)
            try:
                with span(f"task {task.name}", {
                        "actorstage.execution.id": run.id, "actorstage.task.name": task.name,
                        "actorstage.task.reference": task.pointer,
                        "process.pid": os.getpid()}) as traced:
                    try:
                        output, flow = await self._timed(self._kind(data, arguments,
                                                                    variables))
                    except WorkflowError as exc:
                        traced.failed(str(exc))
                        raise
            except WorkflowError as exc:
                await run.progress("task_finished", task.pointer, status="failed", error=exc)
                raise
            except Cancelled:
                await run.progress("task_finished", task.pointer, status="cancelled")
                raise
            spec = body.get("output")
            if isinstance(spec, dict):
                if "as" in spec:
                    output = self._transform(spec["as"], output,
                                             {**arguments, "output": output})
                self._validated(spec, output, "output")
            spec = body.get("export")
            if isinstance(spec, dict) and "as" in spec:
                run.context = self._transform(spec["as"], output,
                                              {**arguments, "output": output,
                                               "context": run.context})
                self._validated(spec, run.context, "exported context")
        except ExpressionError as exc:
            error = _expression_error(task, exc)
            await run.progress("task_finished", task.pointer, status="failed", error=error)
            raise error from None
        await run.progress("task_finished", task.pointer, status="succeeded", data=output)
        if flow is None:  # a task's own `then` (a switch or a list may have chosen)
            flow = body.get("then", "continue")
        return Outcome(output, flow)

    def _validated(self, spec: dict[str, Any], value: Any, what: str) -> None:
        """``value`` checked against ``spec.schema`` (a JSON Schema document), if any: the
        DSL's validation error names every problem."""
        schema = spec.get("schema")
        if schema is None:
            return
        from jsonschema import Draft202012Validator

        document = schema.get("document", {}) if isinstance(schema, dict) else {}
        problems = sorted(Draft202012Validator(document).iter_errors(value),
                          key=lambda error: list(error.absolute_path))
        if problems:
            listed = "; ".join(f"{'/' + '/'.join(map(str, error.absolute_path))}: "
                               f"{error.message}" for error in problems[:10])
            raise WorkflowError({"type": ERRORS + "validation", "status": 400,
                                 "title": "Validation Error",
                                 "detail": f"the {what} of {self.task.name!r} does not match "
                                           f"its schema: {listed}",
                                 "instance": self.task.pointer or "/"})

    @staticmethod
    def _transform(spec: Any, data: Any, arguments: dict[str, Any]) -> Any:
        return evaluate(spec, data, arguments) if isinstance(spec, str) else \
            render(spec, data, arguments)

    async def _kind(self, data: Any, arguments: dict[str, Any],
                    variables: dict[str, Any]) -> tuple[Any, str | None]:
        task = self.task
        kind, value = task.kind, task.body[task.kind]
        if kind == "set":
            return self._transform(value, data, arguments), None
        if kind == "do":
            output, ended = await self.tasks(task.lists["do"], data, variables,
                                             self._key("/do"))
            return output, "end" if ended else None
        if kind == "try":
            return await self._try(data, arguments, variables)
        if kind == "call":
            return await self._call(data, arguments), None
        if kind == "fork":
            return await self._fork(value, data, variables), None
        if kind == "switch":
            for case in value:
                [(_name, spec)] = case.items()
                when = spec.get("when")
                if when is None or _truthy(evaluate(when, data, arguments)):
                    return data, spec["then"]
            return data, None
        if kind == "for":
            return await self._for(value, data, arguments, variables)
        if kind == "raise":
            raise self._raised(value["error"], data, arguments)
        if kind == "emit":
            try:
                return self.run.bus.publish(render(value["event"]["with"], data, arguments)), None
            except ValueError as exc:
                raise WorkflowError({"type": ERRORS + "validation", "status": 400,
                                     "title": "Bad Event", "detail": str(exc),
                                     "instance": task.pointer}) from None
        if kind == "listen":
            return await self._listen(value, data, arguments, variables), None
        if kind == "run":
            return await self._process(value, data, arguments), None
        assert kind == "wait", kind  # (the definition's check refuses any other kind)
        await self._wait(duration_seconds(value))
        return data, None

    async def _for(self, spec: dict[str, Any], data: Any, arguments: dict[str, Any],
                   variables: dict[str, Any]) -> tuple[Any, str | None]:
        each, at = spec.get("each", "item"), spec.get("at", "index")
        collection = evaluate(spec["in"], data, arguments)
        if collection is None:
            collection = []
        if not isinstance(collection, list):
            raise ExpressionError(spec["in"], f"gave a {type(collection).__name__}, not a "
                                              "list to iterate over")
        condition = self.task.body.get("while")
        current = data
        tasks = self.task.lists["do"]
        loop = self._key("#for")
        first = 0
        resumed = self.run.resume.pop(loop, None)
        if resumed is not None:  # recovered: the iterations done are done
            first, current = resumed["iteration"], resumed["data"]
        try:
            for index, item in enumerate(collection):
                if index < first:
                    continue
                scope = {**variables, each: item, at: index}
                if condition is not None and not _truthy(evaluate(
                        condition, current, {**arguments, **scope})):
                    break
                current, ended = await self.tasks(tasks, current, scope,
                                                  self._key(f"/do#{index}"))
                if ended:
                    return current, "end"
                self.run.cursors[loop] = {"iteration": index + 1, "data": current}
                await self.run.save()
            return current, None
        finally:
            self.run.cursors.pop(loop, None)

    async def _process(self, value: dict[str, Any], data: Any, arguments: dict[str, Any]
                       ) -> Any:
        """``run: shell`` or ``run: script``, where this runner allows it."""
        from actorstage.serverless._process import ProcessError, run_process

        which = next(key for key in ("shell", "script") if key in value)
        wait = value.get("await", True) is not False
        try:
            output = await self._cancellable(run_process(
                which, render(value[which], data, arguments), wait=wait,
                returns=value.get("return", "stdout")))
        except ProcessError as exc:
            kind = "authorization" if exc.status == 403 else "runtime"
            raise WorkflowError({"type": ERRORS + kind, "status": exc.status,
                                 "title": exc.title, "detail": exc.detail,
                                 "instance": self.task.pointer}) from None
        return output if wait else data

    async def _listen(self, spec: dict[str, Any], data: Any, arguments: dict[str, Any],
                      variables: dict[str, Any]) -> Any:
        """Wait on the bus for the events ``to`` asks for; their data (``read``), or each
        one's ``foreach`` output."""
        read = spec.get("read", "data")

        def shaped(event: dict[str, Any]) -> Any:
            return event if read == "envelope" else event.get("data")

        def check(expression: str, value: Any) -> Any:
            return evaluate(expression, value, arguments)

        with self.run.bus.listen() as queue:
            events = await self._cancellable(_consume(queue, spec["to"], check, shaped,
                                                      arguments))
        items = [shaped(event) for event in events]
        foreach = self.task.body.get("foreach")
        if not isinstance(foreach, dict):
            return items
        name, at = foreach.get("item", "item"), foreach.get("at", "index")
        outputs = []
        for index, item in enumerate(items):
            scope = {**variables, name: item, at: index}
            output: Any = item
            if "foreach" in self.task.lists:
                output, _ended = await self.tasks(self.task.lists["foreach"], item, scope,
                                                  self._key(f"/foreach#{index}"))
            shape = foreach.get("output")
            if isinstance(shape, dict) and "as" in shape:
                output = self._transform(shape["as"], output, {**arguments, **scope,
                                                                "output": output})
            shape = foreach.get("export")
            if isinstance(shape, dict) and "as" in shape:
                self.run.context = self._transform(shape["as"], output, {
                    **arguments, **scope, "output": output, "context": self.run.context})
            outputs.append(output)
        return outputs

    async def _call(self, data: Any, arguments: dict[str, Any]) -> Any:
        """``call: http``, ``openapi`` or ``grpc``, with its evaluated ``with``; a failure
        is the DSL's communication error, at this task."""
        from actorstage.serverless._http import CallError, call_http

        spec = render(self.task.body.get("with") or {}, data, arguments)
        for holder in (spec, spec.get("endpoint"), spec.get("document"), spec.get("service")):
            if isinstance(holder, dict):  # a name in use.authentications, or {use: name}
                self._authentication(holder)
        kind = self.task.body["call"]
        try:
            if kind == "openapi":
                from actorstage.serverless._openapi import call_openapi

                return await self._cancellable(call_openapi(spec))
            if kind == "grpc":
                from actorstage.serverless._grpc import call_grpc

                return await self._cancellable(call_grpc(spec))
            return await self._cancellable(call_http(spec, data))
        except CallError as exc:
            raise WorkflowError({**exc.error, "instance": self.task.pointer}) from None

    def _authentication(self, holder: dict[str, Any]) -> None:
        named = holder.get("authentication")
        if isinstance(named, dict) and set(named) == {"use"}:
            named = named["use"]
        if isinstance(named, str):
            holder["authentication"] = self.run.used("authentications", named,
                                                     self.task.pointer)

    async def _try(self, data: Any, arguments: dict[str, Any], variables: dict[str, Any]
                   ) -> tuple[Any, str | None]:
        """Run ``try``; an error ``catch`` takes is retried as its policy says, then handed
        to ``catch.do`` (whose output is the task's), or swallowed (the input is)."""
        task = self.task
        catch = task.body["catch"]
        tasks = task.lists["try"]
        name = catch.get("as", "error")
        policy = catch.get("retry")
        if isinstance(policy, str):
            policy = self.run.used("retries", policy, task.pointer)
        attempts = 0
        began = time.monotonic()
        while True:
            try:
                output, ended = await self.tasks(tasks, data, variables, self._key("/try"))
                return output, "end" if ended else None
            except WorkflowError as exc:
                scope = {**arguments, name: exc.error}
                wanted = (catch.get("errors") or {}).get("with") or {}
                if any(exc.error.get(key) != value for key, value in wanted.items()) or \
                        not _allowed(catch, data, scope):
                    raise
                if isinstance(policy, dict) and _retries(policy, attempts, began) and \
                        _allowed(policy, data, scope):
                    attempts += 1
                    await self.run.progress("task_retry", task.pointer, status="failed",
                                            error=exc, attempt=attempts + 1)
                    await self._wait(_delay(policy, attempts))
                    continue
                if "catch" not in task.lists:
                    return data, None
                output, ended = await self.tasks(task.lists["catch"], data,
                                                 {**variables, name: exc.error},
                                                 self._key("/catch"))
                return output, "end" if ended else None

    async def _fork(self, spec: dict[str, Any], data: Any, variables: dict[str, Any]) -> Any:
        """Run the branches at once, each an actor: every output in order, or (``compete``)
        the first to finish, the others stopped."""
        key = self._key("#fork")
        branches = self.task.lists["branches"]
        done: dict[str, Any] = dict((self.run.resume.pop(key, None) or {}).get("done", {}))
        compete = bool(spec.get("compete"))
        if compete and done:  # recovered: the race was won before the crash
            return next(iter(done.values()))
        children = {index: await self.context.spawn(TaskActor, self.run, branch)
                    for index, branch in enumerate(branches) if str(index) not in done}
        asks = {asyncio.ensure_future(child.ask(_Go(data, variables,
                                                    self._key(f"/branches/{index}")))): index
                for index, child in children.items()}
        try:
            waiting = set(asks)
            while waiting:  # as each branch ends: its output kept, the fork's checkpoint
                finished, waiting = await asyncio.wait(waiting,
                                                       return_when=asyncio.FIRST_COMPLETED)
                for ask in finished:
                    done[str(asks[ask])] = _unwrapped(ask.result())
                    if compete:
                        return done[str(asks[ask])]
                self.run.cursors[key] = {"done": dict(done)}
                await self.run.save()
            return [done[str(index)] for index in range(len(branches))]
        finally:
            self.run.cursors.pop(key, None)
            for pending in asks:
                pending.cancel()
            for child in children.values():
                await self.context.system.stop(child)

    def _raised(self, error: Any, data: Any, arguments: dict[str, Any]) -> WorkflowError:
        if isinstance(error, str):  # a reference to use.errors
            error = self.run.used("errors", error, self.task.pointer)
        rendered = render(dict(error), data, arguments)
        rendered.setdefault("instance", self.task.pointer)
        return WorkflowError(rendered)

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` of running time: a pause holds the rest of it, a cancel ends it;
        under a durable runner, one a crash interrupted waits what was left of it."""
        run, control = self.run, self.run.control
        key = self._key("#wait")
        left = seconds
        if key in run.resume:
            left = max(0.0, float(run.resume.pop(key)) - time.time())
        while left > 0:
            await run.boundary(self.task.pointer)
            if run.checkpoint is not None:
                run.timers[key] = time.time() + left
                await run.save()
            began = time.monotonic()
            watches = [asyncio.ensure_future(control.pause_requested.wait()),
                       asyncio.ensure_future(control.cancel_requested.wait())]
            try:
                await asyncio.wait(watches, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for watch in watches:
                    watch.cancel()
            left -= time.monotonic() - began
        run.timers.pop(key, None)
        await run.boundary(self.task.pointer)

    async def _timed(self, work: Coroutine[Any, Any, T]) -> T:
        """``work``, bounded by the task's ``timeout`` (inline, or a name in use.timeouts):
        past it, the DSL's timeout error."""
        spec = self.task.body.get("timeout")
        if spec is None:
            return await work
        if isinstance(spec, str):
            spec = self.run.used("timeouts", spec, self.task.pointer)
        seconds = duration_seconds(spec["after"])
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await work
        except TimeoutError:
            if not deadline.expired():
                raise
            raise WorkflowError({
                "type": ERRORS + "timeout", "status": 408, "title": "Timeout",
                "detail": f"task {self.task.name!r} ran longer than its timeout ({seconds:g} s)",
                "instance": self.task.pointer}) from None

    async def _cancellable(self, work: Coroutine[Any, Any, T]) -> T:
        """``work`` (a call, a process, a listen), ended at once by the execution's cancel."""
        control = self.run.control
        if control.cancelled:
            work.close()
            raise Cancelled("the execution was cancelled")
        running = asyncio.ensure_future(work)
        cancel = asyncio.ensure_future(control.cancel_requested.wait())
        try:
            await asyncio.wait([running, cancel], return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
            if not running.done():
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        if running.cancelled():
            raise Cancelled("the execution was cancelled")
        return running.result()

    async def tasks(self, tasks: list[Task], data: Any, variables: dict[str, Any],
                    key: str = "") -> tuple[Any, bool]:
        """Run a list of tasks in order (as ``then`` directs); ``(output, ended)``."""
        names = {task.name: index for index, task in enumerate(tasks)}
        run = self.run
        index, current = 0, data
        resumed = run.resume.pop(key, None)
        if resumed is not None:  # recovered: its tasks done before the crash are done
            index, current = resumed["index"], resumed["data"]
        try:
            return await self._tasks(tasks, names, index, current, variables, key)
        finally:
            run.cursors.pop(key, None)

    async def _tasks(self, tasks: list[Task], names: dict[str, int], index: int, current: Any,
                     variables: dict[str, Any], key: str) -> tuple[Any, bool]:
        while index < len(tasks):
            await self.run.boundary(tasks[index].pointer)
            child = await self.context.spawn(TaskActor, self.run, tasks[index])
            try:
                outcome: Outcome = await child.ask(_Go(current, variables, key))
            finally:
                await self.context.system.stop(child)
            current = _unwrapped(outcome)
            flow = outcome.flow
            if flow == "end":
                return current, True
            if flow == "exit":
                break
            index = index + 1 if flow == "continue" else names[flow]
            if self.run.checkpoint is not None:  # a durable runner's: the next task's place
                self.run.cursors[key] = {"index": index, "data": current}
                await self.run.save()
        return current, False


class _Strategy:
    """One event consumption strategy (``one``, ``any`` or ``all`` of event filters)."""

    def __init__(self, spec: dict[str, Any], check: Any) -> None:
        self.check = check
        if "all" in spec:
            self.kind, self.filters = "all", list(spec["all"] or [])
        elif "one" in spec:
            self.kind, self.filters = "one", [spec["one"]]
        else:
            self.kind, self.filters = "any", list(spec.get("any") or [])
        self.pending = list(range(len(self.filters)))

    def _passes(self, spec: Any, event: dict[str, Any]) -> bool:
        wanted = spec.get("with") if isinstance(spec, dict) else None
        return all(key in event and matches(value, event[key], self.check)
                   for key, value in (wanted or {}).items())

    def offer(self, event: dict[str, Any]) -> tuple[bool, bool]:
        """(the event is one this strategy takes, the strategy is satisfied)"""
        if self.kind == "all":
            for index in self.pending:
                if self._passes(self.filters[index], event):
                    self.pending.remove(index)
                    return True, not self.pending
            return False, False
        taken = not self.filters or any(self._passes(spec, event) for spec in self.filters)
        return taken, taken


async def _consume(queue: asyncio.Queue[dict[str, Any]], to: dict[str, Any], check: Any,
                   shaped: Any, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """The events a ``listen`` consumes, in order; those that satisfy a strategy ``until``
    end it and are not among them."""
    main = _Strategy(to, check)
    until = to.get("until") if main.kind == "any" else None
    stop = _Strategy(until, check) if isinstance(until, dict) else None
    consumed: list[dict[str, Any]] = []
    while True:
        event = await queue.get()
        if stop is not None:
            taken, done = stop.offer(event)
            if taken:
                if done:
                    return consumed
                continue
        taken, done = main.offer(event)
        if not taken:
            continue
        consumed.append(event)
        if isinstance(until, str):
            if _truthy(evaluate(until, [shaped(one) for one in consumed], arguments)):
                return consumed
        elif until is None and done:
            return consumed


def _unwrapped(outcome: Outcome) -> Any:
    """A task's output; its fault, or the execution's cancel, raised."""
    if outcome.error is not None:
        raise outcome.error
    if outcome.flow == CANCELLED:
        raise Cancelled("the execution was cancelled")
    return outcome.output


def _allowed(spec: dict[str, Any], data: Any, arguments: dict[str, Any]) -> bool:
    """A catch's or a retry policy's ``when`` holds and its ``exceptWhen`` does not."""
    if "when" in spec and not _truthy(evaluate(spec["when"], data, arguments)):
        return False
    return not ("exceptWhen" in spec and _truthy(evaluate(spec["exceptWhen"], data,
                                                              arguments)))


def _retries(policy: dict[str, Any], attempts: int, began: float) -> bool:
    """Whether the policy's limits allow another attempt after ``attempts`` retries."""
    limit = policy.get("limit") or {}
    count = (limit.get("attempt") or {}).get("count")
    if count is not None and attempts >= int(count):
        return False
    return all(spent is None or time.monotonic() - began < duration_seconds(spent)
               for spent in ((limit.get("attempt") or {}).get("duration"),
                             limit.get("duration")))


def _delay(policy: dict[str, Any], attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1-based), after the policy's backoff and
    jitter."""
    base = duration_seconds(policy["delay"]) if "delay" in policy else 0.0
    backoff = policy.get("backoff") or {}
    if "exponential" in backoff:
        base *= 2 ** (attempt - 1)
    elif "linear" in backoff:
        base *= attempt
    jitter = policy.get("jitter")
    if isinstance(jitter, dict) and "from" in jitter and "to" in jitter:
        import random

        base += random.uniform(duration_seconds(jitter["from"]),
                               duration_seconds(jitter["to"]))
    return base


def _truthy(value: Any) -> bool:
    return value is not None and value is not False


class RunActor(TaskActor):
    """An execution: its top-level tasks, the workflow's input and output filters."""

    def __init__(self, run: Run) -> None:
        raw = run.definition.raw
        super().__init__(run, Task(run.definition.name, "workflow",
                                   {"timeout": raw["timeout"]} if "timeout" in raw else {}, ""))

    async def receive(self, message: Any) -> Any:
        run = self.run
        raw = run.definition.raw
        try:
            try:
                data = run.input
                spec = (raw.get("input") or {}) if "" not in run.resume else {}  # (recovered)
                self._validated(spec, data, "input")
                if "from" in spec:
                    data = self._transform(spec["from"], data, run.arguments({"input": data}))
                output, _ended = await self._timed(self.tasks(run.definition.tasks, data, {}))
                spec = raw.get("output") or {}
                if "as" in spec:
                    output = self._transform(spec["as"], output, run.arguments(
                        {"input": data, "output": output}))
                self._validated(spec, output, "output")
            except ExpressionError as exc:
                raise WorkflowError({"type": ERRORS + "expression", "status": 400,
                                     "title": "Expression Error", "detail": str(exc),
                                     "instance": "/"}) from None
        except WorkflowError as exc:
            return Outcome(None, error=exc)
        except Cancelled:
            return Outcome(None, flow=CANCELLED)
        return Outcome(output)


async def execute(definition: Definition, input: Any = None, *,
                  system: ActorSystem | None = None, run: Run | None = None) -> Any:
    """Run ``definition`` on ``input`` to its end and return the workflow's output;
    ``WorkflowError`` (the DSL's error, with ``error``) when it faults."""
    if system is None:
        async with ActorSystem(f"serverless-{definition.name}") as own:
            return await execute(definition, input, system=own, run=run)
    run = run or Run(definition, {} if input is None else input)
    actor = await system.spawn(RunActor, run, name=f"serverless-{run.id}")
    try:
        outcome: Outcome = await actor.ask(_Go(run.input, {}))
    finally:
        await system.stop(actor)
    return _unwrapped(outcome)
