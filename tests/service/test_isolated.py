"""Executions isolated in a child process: pause, resume and cancel cross into it."""

from __future__ import annotations

import json
import os

import anyio
import pytest

from actorstage.service import (
    ControlRequest,
    ExecuteRequest,
    ExecutionStatus,
    GetExecutionRequest,
    Isolation,
    WatchExecutionRequest,
)
from actorstage.testing import wait_until
from tests.service.helpers import alive, long, run, serving, until

pytestmark = pytest.mark.anyio






async def test_an_isolated_execution_pauses_resumes_and_ends_in_its_own_process() -> None:
    async with serving() as (_, stub):
        request = ExecuteRequest(execution_id="iso", workflow=long(0.3),
                                 isolation=Isolation.PROCESS)
        await stub.execute_async(request)
        nap = await until(stub, "iso", "action_started")
        info = await stub.get_execution(GetExecutionRequest("iso"))
        assert info.isolation == Isolation.PROCESS
        assert info.pid not in (0, os.getpid()) and alive(info.pid)
        await stub.pause_execution(ControlRequest("iso"))
        landed = await until(stub, "iso", "workflow_paused", nap)
        await anyio.sleep(0.4)  # longer than the sleep: the child must hold it
        held = await stub.get_execution(GetExecutionRequest("iso"))
        assert held.status == ExecutionStatus.PAUSED and held.last_seq == landed
        await stub.resume_execution(ControlRequest("iso"))
        events = await run(stub, request)
        assert next(event.kind for event in events if event.seq > landed) == "workflow_resumed"
        assert events[-1].status == ExecutionStatus.SUCCEEDED
        assert json.loads(events[-1].store_json) == {"before": True, "after": True}
        with anyio.fail_after(10):  # the child leaves once its workflow has ended
            await wait_until(lambda: not alive(info.pid))


async def test_cancelling_an_isolated_execution_ends_its_process() -> None:
    async with serving(isolate="process") as (_, stub):  # the server's default isolation
        await stub.execute_async(ExecuteRequest(execution_id="iso", workflow=long(60)))
        await until(stub, "iso", "action_started")
        info = await stub.get_execution(GetExecutionRequest("iso"))
        assert info.isolation == Isolation.PROCESS and alive(info.pid)
        with anyio.fail_after(10):
            answer = await stub.cancel_execution(ControlRequest("iso", reason="stop it"))
            assert answer.status == ExecutionStatus.CANCELLED  # across the process, too
            events = [event async for event in stub.watch_execution(
                WatchExecutionRequest("iso"))]
            assert events[-1].status == ExecutionStatus.CANCELLED
            await wait_until(lambda: not alive(info.pid))


async def test_an_isolated_child_killed_mid_run_fails_the_execution_with_a_terminal_event(
) -> None:
    import signal

    async with serving() as (_, stub):
        await stub.execute_async(ExecuteRequest(execution_id="k", workflow=long(60),
                                                isolation=Isolation.PROCESS))
        await until(stub, "k", "action_started")
        info = await stub.get_execution(GetExecutionRequest("k"))
        os.kill(info.pid, signal.SIGKILL)
        with anyio.fail_after(10):
            events = [event async for event in stub.watch_execution(WatchExecutionRequest("k"))]
        end = events[-1]
        assert (end.kind, end.status) == ("workflow_finished", ExecutionStatus.FAILED)
        assert end.seq > events[-2].seq and end.error is not None
        assert "SIGKILL" in end.error.message or "killed" in end.error.message.lower(), end.error
