"""The workflow the spawn examples run: three actions, and the checks of what they did.

A child process imports this module by name (``flow``) to find the actions:
the parent passes its ``sys.path`` along.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import msgspec

from actorstage.workflows import (
    Action,
    ActionContext,
    ActionDef,
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
