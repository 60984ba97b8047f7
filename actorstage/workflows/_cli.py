"""``actorstage run-workflow FILE``: run a definition with a live progress display."""

from __future__ import annotations

import importlib
import sys
import time
from typing import TextIO

from actorstage.exceptions import ActorCrashedError, InvalidDefinitionError
from actorstage.workflows._defs import load_workflow
from actorstage.workflows._events import BrokerMessage, MessageType, ProgressEvent, Status
from actorstage.workflows._runner import Runner
from actorstage.workflows._workflow import Workflow

__all__ = ["run_workflow_command"]

_EXIT = {Status.SUCCEEDED: 0, Status.FAILED: 1, Status.CANCELLED: 130}


class _Display:
    """One line per progress event, as it happens, with the time since the start."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, message: BrokerMessage) -> None:
        event = message.payload
        if not isinstance(event, ProgressEvent):
            return
        where = "/".join(part for part in (event.stage_id, event.action_id) if part)
        what = event.kind.replace("_", " ")
        extra = []
        if event.attempt > 1 or event.kind == "action_retry":
            extra.append(f"attempt {event.attempt}")
        if event.status and event.kind.endswith("finished"):
            extra.append(str(event.status))
        if event.error is not None:
            extra.append(f"{event.error.type_name}: {event.error.message}")
        tail = f" ({', '.join(extra)})" if extra else ""
        line = f"[{time.monotonic() - self.started:7.2f}s] #{event.seq:<4} {what:<17}"
        self.out.write(f"{line} {where}{tail}\n" if where else f"{line}{tail}\n")
        self.out.flush()


async def _run(path: str, spawn: bool, imports: list[str], out: TextIO) -> int:
    try:
        for module in imports:
            importlib.import_module(module)
    except Exception as exc:
        print(f"actorstage run-workflow: cannot import {module!r}: {exc}", file=sys.stderr)
        return 2
    try:
        workflow = Workflow.from_def(load_workflow(path))
    except InvalidDefinitionError as exc:
        print(f"actorstage run-workflow: {exc}", file=sys.stderr)
        return 2
    where = "in a child process" if spawn else "in this process"
    out.write(f"workflow {workflow.id!r} from {path}, {where}\n")
    async with Runner() as runner:
        runner.broker.register_handler(MessageType.PROGRESS, _Display(out))
        try:
            execution = await runner.start(workflow, process=True if spawn else None)
        except ActorCrashedError as exc:
            print(f"actorstage run-workflow: the workflow could not start: {exc}",
                  file=sys.stderr)
            return 1
        result = await execution.result()
    out.write(f"\n{result.status} in {result.duration * 1000:.1f} ms\n")
    for stage in result.stages:
        for action in stage.actions:
            out.write(f"  {stage.id}/{action.id:<20} {action.status:<10} "
                      f"attempts={action.attempts} {action.duration * 1000:8.1f} ms\n")
    if result.error is not None:
        error = result.error
        place = "/".join(part for part in (error.stage_id, error.action_id) if part)
        out.write(f"\nerror{' in ' + place if place else ''}: "
                  f"{error.type_name}: {error.message}\n{error.traceback}")
    store = ", ".join(f"{key}={value!r}" for key, value in sorted(result.store.items()))
    out.write(f"final store: {{{store}}}\n")
    return _EXIT.get(result.status, 1)


def run_workflow_command(path: str, spawn: bool, imports: list[str]) -> int:
    """Run the definition at ``path``; the exit status says how it ended."""
    from actorstage._run import run

    return run(_run, path, spawn, imports, sys.stdout)
