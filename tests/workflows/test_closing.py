"""Structured concurrency: closing a runner or a system, or cancelling the caller, cancels
the running work at once, ends it ``cancelled`` and leaves no internal noise in the logs."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from actorstage import ActorSystem, ProcessOptions
from actorstage.testing import wait_until
from actorstage.workflows import (
    ActionDef,
    BrokerMessage,
    Execution,
    Runner,
    StageDef,
    Status,
    WorkflowDef,
)
from tests.workflows import actions  # noqa: F401 - registers the test actions

pytestmark = pytest.mark.anyio


def _long() -> WorkflowDef:
    return WorkflowDef(id="long", store={"n": 1}, stages=[StageDef(id="s", actions=[
        ActionDef(id="who", action="test.whoami"),
        ActionDef(id="nap", action="sleep", params={"seconds": 60})])])


async def _running(runner: Runner, process: ProcessOptions | None = None) -> Execution:
    """A long execution, started and past its first action."""
    execution = await runner.start(_long(), process=process)
    with anyio.fail_after(20):
        await wait_until(lambda: "ppid" in execution.store)
    return execution


def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noise == []  # no "did not finish its message", no ActorDeadError


@pytest.mark.parametrize("process", [None, ProcessOptions()])
async def test_leaving_the_runner_cancels_running_executions_at_once(
    process: ProcessOptions | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "actorstage")
    async with Runner() as runner:
        execution = await _running(runner, process)
        began = time.monotonic()
    took = time.monotonic() - began
    result = await execution.result()
    assert result.status == Status.CANCELLED
    [stage] = result.stages  # a real cancel, with the stages as far as they went
    assert stage.status == Status.CANCELLED
    assert [(a.id, a.status) for a in stage.actions][:1] == [("who", Status.SUCCEEDED)]
    assert took < 3.0, f"closing took {took:.2f}s"  # a generous bound: it is milliseconds
    _quiet(caplog)


async def test_leaving_the_system_under_a_runner_cancels_quietly_and_at_once(
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "actorstage")
    async with ActorSystem() as system:
        execution = await _running(Runner(system))
        began = time.monotonic()
    took = time.monotonic() - began
    result = await execution.result()
    assert result.status == Status.CANCELLED
    assert took < 3.0, f"closing took {took:.2f}s"
    _quiet(caplog)


async def test_cancelling_the_caller_of_execute_cancels_the_execution() -> None:
    async with Runner() as runner:
        seen: list[BrokerMessage] = []
        runner.broker.register_handler("progress", seen.append)
        with anyio.move_on_after(0.5) as scope:
            await runner.execute(_long())
        assert scope.cancelled_caught
        finished = [m.payload for m in seen if m.payload.kind == "workflow_finished"]
        assert [event.status for event in finished] == [Status.CANCELLED]  # not left running
        assert runner._running == set()
