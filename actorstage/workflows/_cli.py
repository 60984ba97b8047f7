"""``actorstage run-workflow FILE``: run a definition with a live progress display."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import Any, TextIO

import msgspec

from actorstage._documents import DocumentError, load
from actorstage.cli import import_modules
from actorstage.exceptions import ActorCrashedError, InvalidDefinitionError
from actorstage.workflows._defs import read_definition_file
from actorstage.workflows._events import (
    BrokerMessage,
    MessageType,
    ProgressEvent,
    Status,
    WorkflowResult,
)
from actorstage.workflows._runner import Runner
from actorstage.workflows._workflow import read_workflow

__all__ = ["run_workflow_command"]

_EXIT = {Status.SUCCEEDED: 0, Status.FAILED: 1, Status.CANCELLED: 130}


class _Display:
    """One line per event, as it happens: progress, log lines and store changes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, message: BrokerMessage) -> None:
        kind, payload = message.message_type, message.payload
        where = "/".join(part for part in (message.stage_id, message.action_id) if part)
        if kind == MessageType.PROGRESS and isinstance(payload, ProgressEvent):
            self._progress(payload)
            return
        if kind == MessageType.LOG and isinstance(payload, dict):
            text = f"{str(payload.get('level', '')).lower():<7} {payload.get('message', '')}"
            self._line("log", where, text)
        elif kind == MessageType.STORE_PUT and isinstance(payload, dict):
            value = msgspec.json.encode(payload.get("value"), enc_hook=str).decode()
            self._line("store put", where, f"{payload.get('key')} = {value}")
        elif kind == MessageType.STORE_DELETE and isinstance(payload, dict):
            self._line("store delete", where, str(payload.get("key")))

    def _progress(self, event: ProgressEvent) -> None:
        where = event.task or "/".join(part for part in (event.stage_id, event.action_id)
                                       if part)
        extra = []
        if event.attempt > 1 or event.kind == "action_retry":
            extra.append(f"attempt {event.attempt}")
        if event.status and event.kind.endswith("finished"):
            extra.append(str(event.status))
        if event.error is not None:
            extra.append(f"{event.error.type_name}: {event.error.message}")
        self._line(event.kind.replace("_", " "), where, f"({', '.join(extra)})" if extra else "")

    def _line(self, what: str, where: str, text: str) -> None:
        parts = [f"[{time.monotonic() - self.started:7.2f}s] {what:<17}", where, text]
        self.out.write(" ".join(part for part in parts if part).rstrip() + "\n")
        self.out.flush()


def _table(result: WorkflowResult) -> list[str]:
    rows = [("action", "status", "attempts", "ms")] + [
        (f"{stage.id}/{action.id}", str(action.status), str(action.attempts),
         f"{action.duration * 1000:.1f}")
        for stage in result.stages for action in stage.actions]
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) if col < 2 else cell.rjust(width)
                 for col, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
        if index == 0:
            lines.append("  " + "  ".join("-" * width for width in widths))
    return lines


def _input(text: str | None) -> dict[str, Any]:
    """``--input``: a JSON object, given inline or as ``@FILE``."""
    if text is None:
        return {}
    what = "--input"
    try:
        if text.startswith("@"):
            what = text[1:]
            with open(what, "rb") as file:
                text = file.read().decode("utf-8", "replace")
        value = load(text, "json", what)
    except (OSError, DocumentError) as exc:
        raise InvalidDefinitionError(f"{what}: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidDefinitionError(f"{what} must be a JSON object, got "
                                     f"{type(value).__name__}")
    return value


async def _run(path: str, spawn: bool, imports: list[str], out: TextIO,
               given: str | None = None) -> int:
    try:
        import_modules(imports)
        data, fmt = read_definition_file(path)
        try:
            workflow = read_workflow(data, format=fmt)
        except InvalidDefinitionError as exc:
            raise InvalidDefinitionError(f"{path}: {exc}") from None
        store = _input(given)
    except InvalidDefinitionError as exc:
        print(f"actorstage run-workflow: {exc}", file=sys.stderr)
        return 2
    where = "in a child process" if spawn else "in this process"
    out.write(f"workflow {workflow.id!r} from {path}, {where} (Ctrl-C cancels it)\n")
    loop = asyncio.get_running_loop()
    async with Runner() as runner:
        runner.broker.register_handler("*", _Display(out))
        try:
            execution = await runner.start(workflow, store=store,
                                           process=True if spawn else None)
        except ActorCrashedError as exc:
            print(f"actorstage run-workflow: the workflow could not start: {exc}",
                  file=sys.stderr)
            return 1

        cancelling: list[asyncio.Task[None]] = []

        def interrupt() -> None:
            out.write("\ninterrupted: cancelling the workflow\n")
            cancelling.append(loop.create_task(execution.cancel()))

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            result = await execution.result()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
    out.write(f"\n{result.status} in {result.duration * 1000:.1f} ms\n")
    if result.stages:
        out.write("\n".join(_table(result)) + "\n")
    if result.error is not None:
        error = result.error
        place = "/".join(part for part in (error.stage_id, error.action_id) if part)
        out.write(f"\nerror{' in ' + place if place else ''}: "
                  f"{error.type_name}: {error.message}\n{error.traceback}")
    final = msgspec.json.format(msgspec.json.encode(result.store, enc_hook=str), indent=2)
    out.write(f"\nfinal store:\n{final.decode()}\n")
    return _EXIT.get(result.status, 1)


def run_workflow_command(path: str, spawn: bool, imports: list[str],
                         given: str | None = None) -> int:
    """Run the definition at ``path`` (either dialect) on ``given`` (``--input``); the exit
    status says how it ended."""
    from actorstage._run import run

    try:
        return run(_run, path, spawn, imports, sys.stdout, given)
    except KeyboardInterrupt:  # a second Ctrl-C, while the workflow was being cancelled
        print("actorstage run-workflow: interrupted", file=sys.stderr)
        return 130
