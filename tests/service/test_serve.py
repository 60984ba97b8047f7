"""`actorstage serve` as a process: SIGTERM while executions run, imports, bad settings."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest
from grpclib.client import Channel

from actorstage.service import (
    ExecuteRequest,
    ExecutionStatus,
    GetExecutionRequest,
    Isolation,
    ListActionsRequest,
    ProgressEvent,
    RunnerStub,
)
from tests.interop.conftest import ROOT, serve
from tests.service.helpers import alive, long, until, workflow

pytestmark = pytest.mark.anyio






async def _collect(stub: RunnerStub, request: ExecuteRequest, into: list[ProgressEvent]) -> None:
    async for event in stub.execute(request):
        into.append(event)


@pytest.mark.parametrize("mode", ["cancel", "drain"])
async def test_sigterm_ends_running_executions_and_exits_0_with_no_child_left(mode: str) -> None:
    with serve("--shutdown", mode, "--grace", "20") as served:
        async with Channel("127.0.0.1", served.port) as channel:
            stub = RunnerStub(channel)
            seconds = 60 if mode == "cancel" else 1.0
            inline: list[ProgressEvent] = []
            isolated: list[ProgressEvent] = []
            requests = [ExecuteRequest(execution_id="inline", workflow=long(seconds)),
                        ExecuteRequest(execution_id="isolated", workflow=long(seconds),
                                       isolation=Isolation.PROCESS)]
            for request in requests:
                await stub.execute_async(request)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_collect, stub, requests[0], inline)  # these attach
                tasks.start_soon(_collect, stub, requests[1], isolated)
                with anyio.fail_after(30):
                    await until(stub, "inline", "action_started")
                    await until(stub, "isolated", "action_started")
                pid = (await stub.get_execution(GetExecutionRequest("isolated"))).pid
                assert alive(pid)
                served.process.send_signal(signal.SIGTERM)
            status = await anyio.to_thread.run_sync(served.process.wait, 30)
    want = ExecutionStatus.CANCELLED if mode == "cancel" else ExecutionStatus.SUCCEEDED
    assert (inline[-1].kind, inline[-1].status) == ("workflow_finished", want)
    assert (isolated[-1].kind, isolated[-1].status) == ("workflow_finished", want)
    assert status == 0
    assert not alive(pid)
    out = "\n".join(served.lines)
    assert f"stopping ({mode}, grace 20s)" in out and "stopped" in out


async def test_a_stubborn_drain_is_cancelled_after_the_grace_period() -> None:
    with serve("--shutdown", "drain", "--grace", "0.5") as served:
        async with Channel("127.0.0.1", served.port) as channel:
            stub = RunnerStub(channel)
            await stub.execute_async(ExecuteRequest(execution_id="x", workflow=long(60)))
            with anyio.fail_after(30):
                await until(stub, "x", "action_started")
            events: list[ProgressEvent] = []
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_collect, stub, ExecuteRequest(execution_id="x",
                                                                workflow=long(60)), events)
                served.process.send_signal(signal.SIGTERM)
            assert await anyio.to_thread.run_sync(served.process.wait, 30) == 0
    assert events[-1].status == ExecutionStatus.CANCELLED


async def test_imported_modules_register_their_actions(tmp_path: Path) -> None:
    module = tmp_path / "served_actions.py"
    module.write_text(
        "from actorstage.workflows import Action, register_action\n"
        "@register_action('served.hello')\n"
        "class Hello(Action):\n"
        "    async def execute(self, ctx):\n"
        "        await ctx.store.put('pid', __import__('os').getpid())\n")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    with serve("--import", "served_actions", env=env) as served:
        async with Channel("127.0.0.1", served.port) as channel:
            stub = RunnerStub(channel)
            ids = {action.id for action in (await stub.list_actions(ListActionsRequest())).actions}
            assert "served.hello" in ids
            for isolation in (Isolation.INLINE, Isolation.PROCESS):
                events = [event async for event in stub.execute(ExecuteRequest(
                    workflow=workflow(("hi", "served.hello", {})), isolation=isolation))]
                assert events[-1].status == ExecutionStatus.SUCCEEDED, events[-1]
