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
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from actorstage.actors._actor import Actor
from actorstage.actors._system import ActorSystem
from actorstage.serverless._definition import Definition, Task, duration_seconds
from actorstage.serverless._expressions import ExpressionError, evaluate, render

__all__ = ["Cancelled", "Control", "Run", "WorkflowError", "execute"]

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


def _expression_error(task: Task, exc: ExpressionError) -> WorkflowError:
    return WorkflowError({"type": ERRORS + "expression", "status": 400,
                          "title": "Expression Error",
                          "detail": f"task {task.name!r}: {exc}", "instance": task.pointer})


class Cancelled(Exception):
    """The execution was cancelled (``Control.cancel``)."""


class Control:
    """Pause and cancel of one execution: they take effect between tasks and inside
    ``wait``."""

    def __init__(self) -> None:
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.stopping = asyncio.Event()  # a pause or a cancel was asked for
        self.cancelled = False

    def pause(self) -> None:
        self.resumed.clear()
        self.stopping.set()

    def resume(self) -> None:
        self.resumed.set()
        if not self.cancelled:
            self.stopping.clear()

    def cancel(self) -> None:
        self.cancelled = True
        self.stopping.set()
        self.resumed.set()

    async def boundary(self) -> None:
        await self.resumed.wait()
        if self.cancelled:
            raise Cancelled("the execution was cancelled")


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
    events: list[tuple[str, str]] = field(default_factory=list)  # (event, task pointer)
    started_at: float = field(default_factory=time.time)

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


@dataclass(frozen=True)
class Outcome:
    output: Any
    flow: str = "continue"  # continue, exit, end, or the name of a task of the same list
    error: WorkflowError | None = None


class TaskActor(Actor):
    """Runs one task (and, for ``do``, ``for``, ``try`` and ``fork``, the tasks inside it,
    as its children)."""

    _cancel_on_stop = True  # a stopped task (a fork's losing branch) stops at once

    def __init__(self, run: Run, task: Task) -> None:
        self.run = run
        self.task = task

    async def receive(self, message: Any) -> Any:
        assert isinstance(message, _Go)
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
        arguments = run.arguments({**variables, "task": descriptor, "input": raw})
        try:
            if "if" in body and not _truthy(evaluate(str(body["if"]), raw, arguments)):
                run.events.append(("skipped", task.pointer))
                return Outcome(raw)
            data = raw
            spec = body.get("input")
            if isinstance(spec, dict) and "from" in spec:
                data = self._transform(spec["from"], raw, arguments)
            arguments["input"] = data
            run.events.append(("started", task.pointer))
            output, flow = await self._kind(data, arguments, variables)
            spec = body.get("output")
            if isinstance(spec, dict) and "as" in spec:
                output = self._transform(spec["as"], output, {**arguments, "output": output})
            spec = body.get("export")
            if isinstance(spec, dict) and "as" in spec:
                run.context = self._transform(spec["as"], output,
                                              {**arguments, "output": output,
                                               "context": run.context})
        except ExpressionError as exc:
            raise _expression_error(task, exc) from None
        run.events.append(("completed", task.pointer))
        if flow is None:  # a task's own `then` (a switch or a list may have chosen)
            flow = body.get("then", "continue")
        return Outcome(output, flow)

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
            output, ended = await self.tasks(task.lists["do"], data, variables)
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
        for index, item in enumerate(collection):
            scope = {**variables, each: item, at: index}
            if condition is not None and not _truthy(evaluate(
                    condition, current, {**arguments, **scope})):
                break
            current, ended = await self.tasks(tasks, current, scope)
            if ended:
                return current, "end"
        return current, None

    async def _call(self, data: Any, arguments: dict[str, Any]) -> Any:
        from actorstage.serverless._http import CallError, call_http

        spec = render(self.task.body.get("with") or {}, data, arguments)
        endpoint = spec.get("endpoint")
        if isinstance(endpoint, dict):  # a name in use.authentications, or {use: name}
            named = endpoint.get("authentication")
            if isinstance(named, dict) and set(named) == {"use"}:
                named = named["use"]
            if isinstance(named, str):
                endpoint["authentication"] = self.run.used("authentications", named,
                                                           self.task.pointer)
        try:
            return await call_http(spec, data)
        except CallError as exc:
            raise WorkflowError({**exc.error, "instance": self.task.pointer}) from None

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
                output, ended = await self.tasks(tasks, data, variables)
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
                    await self._wait(_delay(policy, attempts))
                    continue
                if "catch" not in task.lists:
                    return data, None
                output, ended = await self.tasks(task.lists["catch"], data,
                                                 {**variables, name: exc.error})
                return output, "end" if ended else None

    async def _fork(self, spec: dict[str, Any], data: Any, variables: dict[str, Any]) -> Any:
        """Run the branches at once, each an actor: every output in order, or (``compete``)
        the first to finish, the others stopped."""
        children = [await self.context.spawn(TaskActor, self.run, branch)
                    for branch in self.task.lists["branches"]]
        asks = [asyncio.ensure_future(child.ask(_Go(data, variables))) for child in children]
        try:
            if spec.get("compete"):  # the first to finish wins (a fault ends the race too)
                return _unwrapped(await next(asyncio.as_completed(asks)))
            return [_unwrapped(outcome) for outcome in await asyncio.gather(*asks)]
        finally:
            for pending in asks:
                pending.cancel()
            for child in children:
                await self.context.system.stop(child)

    def _raised(self, error: Any, data: Any, arguments: dict[str, Any]) -> WorkflowError:
        if isinstance(error, str):  # a reference to use.errors
            error = self.run.used("errors", error, self.task.pointer)
        rendered = render(dict(error), data, arguments)
        rendered.setdefault("instance", self.task.pointer)
        return WorkflowError(rendered)

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` of running time: a pause holds the rest of it."""
        control = self.run.control
        left = seconds
        while left > 0:
            await control.boundary()
            began = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(control.stopping.wait(), left)
            left -= time.monotonic() - began
        await control.boundary()

    async def tasks(self, tasks: list[Task], data: Any, variables: dict[str, Any]
                    ) -> tuple[Any, bool]:
        """Run a list of tasks in order (as ``then`` directs); ``(output, ended)``."""
        names = {task.name: index for index, task in enumerate(tasks)}
        index, current = 0, data
        while index < len(tasks):
            await self.run.control.boundary()
            child = await self.context.spawn(TaskActor, self.run, tasks[index])
            try:
                outcome: Outcome = await child.ask(_Go(current, variables))
            finally:
                await self.context.system.stop(child)
            current = _unwrapped(outcome)
            flow = outcome.flow
            if flow == "end":
                return current, True
            if flow == "exit":
                break
            index = index + 1 if flow == "continue" else names[flow]
        return current, False


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
        super().__init__(run, Task(run.definition.name, "workflow", {}, ""))

    async def receive(self, message: Any) -> Any:
        run = self.run
        raw = run.definition.raw
        try:
            try:
                data = run.input
                spec = raw.get("input") or {}
                if "from" in spec:
                    data = self._transform(spec["from"], data, run.arguments({"input": data}))
                output, _ended = await self.tasks(run.definition.tasks, data, {})
                spec = raw.get("output") or {}
                if "as" in spec:
                    output = self._transform(spec["as"], output, run.arguments(
                        {"input": data, "output": output}))
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
