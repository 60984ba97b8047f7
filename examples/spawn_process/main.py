"""A workflow in a child process: three actions, store updates watched live, results checked.

Run it with `python examples/spawn_process/main.py`. The actions live in this
script; the child process runs the script under another name (its
``if __name__ == "__main__":`` block does not run there) to find them.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import msgspec

import actorstage
from actorstage.workflows import (
    Action,
    ActionContext,
    ActionDef,
    BrokerMessage,
    MessageType,
    Runner,
    StageDef,
    Status,
    WorkflowDef,
    WorkflowResult,
    register_action,
)


@register_action("example.process-info")
class ProcessInfo(Action):
    """Reports where it runs: pid, parent pid, host and working directory."""

    async def execute(self, ctx: ActionContext) -> None:
        await ctx.store.put("child_pid", os.getpid())
        await ctx.store.put("child_ppid", os.getppid())
        await ctx.store.put("hostname", socket.gethostname())
        await ctx.store.put("cwd", os.getcwd())


@register_action("example.hello")
class Hello(Action):
    class Params(msgspec.Struct):
        name: str

    async def execute(self, ctx: ActionContext) -> None:
        await ctx.log.info(f"hello, {self.params.name}")
        await ctx.store.put("greeting", f"hello, {self.params.name}, from process {os.getpid()}")


@register_action("example.write-file")
class WriteFile(Action):
    """Writes a file into the directory the parent gave in the store."""

    class Params(msgspec.Struct):
        filename: str

    async def execute(self, ctx: ActionContext) -> None:
        directory = ctx.store.get("workdir", type=str)
        path = Path(directory) / self.params.filename
        text = f"written by process {os.getpid()} at {time.time():.3f}\n"
        path.write_text(text)
        await ctx.store.put("file", str(path))
        await ctx.store.put("file_text", text)


FLOW = WorkflowDef(id="spawn-process", name="Three actions in a child process", stages=[
    StageDef(id="inspect", actions=[ActionDef(id="info", action="example.process-info")]),
    StageDef(id="work", actions=[
        ActionDef(id="hello", action="example.hello", params={"name": "parent"}),
        ActionDef(id="write", action="example.write-file", params={"filename": "hello.txt"}),
    ]),
])


async def run_workflow(workdir: str) -> WorkflowResult:
    """Spawn the workflow, printing each store update as it arrives."""
    async with Runner() as runner:
        def show(message: BrokerMessage) -> None:
            update = message.payload
            print(f"  store update from {message.stage_id}/{message.action_id}: "
                  f"{update['key']} = {update['value']!r}")

        runner.broker.register_handler(MessageType.STORE_PUT, show)
        started = time.perf_counter()
        result = await runner.spawn(FLOW, store={"workdir": workdir})
        print(f"workflow {result.status} in {time.perf_counter() - started:.2f}s "
              "(spawn included)")
    return result


def verify(result: WorkflowResult, parent_pid: int) -> dict[str, bool]:
    store = result.store
    written = Path(store.get("file", "/nonexistent"))
    return {
        "the workflow succeeded": result.status == Status.SUCCEEDED,
        f"the child ran in another process ({store.get('child_pid')})":
            store.get("child_pid") not in (None, parent_pid),
        f"the child's parent is this process ({store.get('child_ppid')})":
            store.get("child_ppid") == parent_pid,
        f"the file exists ({written})": written.is_file(),
        "it holds what the child wrote":
            written.is_file() and written.read_text() == store.get("file_text"),
    }


def main() -> None:
    parent_pid = os.getpid()
    print(f"parent process {parent_pid}")
    with tempfile.TemporaryDirectory(prefix="spawn-process-") as workdir:
        result = actorstage.run(run_workflow, workdir)
        for stage in result.stages:
            for action in stage.actions:
                print(f"  {stage.id}/{action.id}: {action.status} in "
                      f"{action.duration * 1000:.1f} ms")
        checks = verify(result, parent_pid)
    for check, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {check}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
