"""A Serverless Workflow run by a ``Runner``, beside the stages-and-actions dialect.

``Runner.start`` takes a checked ``Definition`` as it takes a ``Workflow``:
the execution has the same ``Execution`` handle, broker messages, progress
events, pause/resume/cancel, and runs in this process or in a child process.
Here is the piece that differs, the actor that runs the definition's tasks
under the execution actor (in place of the stages' ``WorkflowActor``). Its
progress events name each task by its JSON pointer (``task``), and carry the
task's input (``task_started``) and output (``task_finished``) as ``data``.
The store of such an execution is the workflow's data: its input when it
starts, its output when it ends (under ``"output"`` when that is not a
mapping).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from actorstage._telemetry import span
from actorstage.actors._actor import Actor
from actorstage.actors._ref import ActorRef
from actorstage.exceptions import ActorDeadError
from actorstage.serverless._definition import Definition, parse_definition
from actorstage.serverless._runtime import CANCELLED, Outcome, Run, RunActor, _Go
from actorstage.workflows._events import ErrorInfo, MessageType, Status, WorkflowResult

if TYPE_CHECKING:
    from actorstage.workflows._context import Control

__all__ = ["ServerlessWorkflow", "final_store"]


class ServerlessWorkflow:
    """A checked Serverless Workflow ``Definition`` where the ``Runner`` takes a ``Workflow``.

    ``defn`` is what travels to a child process (the definition as read).
    """

    def __init__(self, definition: Definition) -> None:
        self.definition = definition

    @property
    def id(self) -> str:
        return self.definition.name

    @property
    def defn(self) -> dict[str, Any]:
        return self.definition.raw

    def modules(self) -> list[str]:
        return []  # nothing to import in a child: the tasks are the runtime's own

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> ServerlessWorkflow:
        """Read again in a child process (checked again, as a stages workflow is)."""
        return cls(parse_definition(raw))


def final_store(output: Any) -> dict[str, Any]:
    """The store an execution ends with: its output, or ``{"output": output}``."""
    return dict(output) if isinstance(output, dict) else {"output": output}


class ServerlessActor(Actor):
    """Runs one execution's definition (a ``RunActor`` under it) and reports to the
    execution actor as the stages' ``WorkflowActor`` does."""

    _traced = False  # (the runtime's own: see Actor._traced)
    _cancel_on_stop = True

    def __init__(self, workflow: ServerlessWorkflow, execution_id: str, control: Control,
                 execution: ActorRef, delivered: bool = False, resume: Any = None,
                 durable: bool = False) -> None:
        from actorstage.workflows._runner import _Reporter

        self.resume = resume  # a recovered execution's Resume: where its task lists stood
        self.workflow = workflow
        self.execution_id = execution_id
        self.control = control
        self.reporter = _Reporter(execution, delivered=delivered, durable=durable)

    async def _progress(self, kind: str, **fields: Any) -> None:
        await self.reporter.progress(kind, **fields)

    async def _checkpoint(self, position: dict[str, Any]) -> None:
        await self.reporter.report(MessageType.CHECKPOINT, position)

    async def receive(self, message: Any) -> Any:
        with span(f"workflow {self.workflow.id}", {
                "actorstage.workflow.id": self.workflow.id,
                "actorstage.workflow.dialect": "serverless",
                "actorstage.execution.id": self.execution_id,
                "actorstage.workflow.recovered": self.resume is not None,
                "process.pid": os.getpid()}) as traced:
            result = await self._execute(message)
            traced.set("actorstage.workflow.status", str(result.status))
            if result.error is not None:
                traced.failed(result.error.message)

    async def _execute(self, message: Any) -> WorkflowResult:
        from actorstage.workflows._runner import _Finished, _starting

        reporter = self.reporter
        started, clock = time.time(), time.monotonic()
        data = dict(message.store)
        resume = self.resume
        await reporter.progress("workflow_recovered" if resume else "workflow_started",
                                status=_starting(resume))
        run = Run(self.workflow.definition, data, id=self.execution_id, control=self.control,
                  report=self._progress,
                  checkpoint=self._checkpoint if self.reporter.durable else None)
        if resume is not None:  # where every task list stood, the waits' ends, $context
            run.resume = {**resume.cursors, **resume.timers}
            if resume.context is not None:
                run.context = resume.context
            if "" in resume.cursors:
                data = resume.cursors[""]["data"]
        runner = await self.context.spawn(RunActor, run, name="run")
        error: ErrorInfo | None = None
        output: Any = None
        try:
            outcome: Outcome = await runner.ask(_Go(data, {}))
        except ActorDeadError:  # stopped under us: the runner or its system is closing
            outcome = Outcome(None, flow=CANCELLED)
        finally:
            await self.context.system.stop(runner)
        if outcome.error is not None:
            status, error = Status.FAILED, outcome.error.info()
        elif outcome.flow == CANCELLED:
            status = Status.CANCELLED
        else:
            status, output = Status.SUCCEEDED, outcome.output
        store = final_store(output) if status == Status.SUCCEEDED else data
        await reporter.report(MessageType.FINAL_STORE, store)
        await reporter.progress("workflow_finished", status=status, error=error)
        result = WorkflowResult(
            execution_id=self.execution_id, workflow_id=self.workflow.id, status=status,
            store=store, stages=[], started_at=started, duration=time.monotonic() - clock,
            error=error, output=output)
        with contextlib.suppress(ActorDeadError):  # (closing: its on_stop says how it ended)
            await reporter.execution.tell(_Finished(result))
        return result
