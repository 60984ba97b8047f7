"""Workflows in a child process: reports in real time, the end, a kill, cancel and pause."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from actorstage import ActorCrashedError, ProcessOptions
from actorstage.testing import wait_until
from actorstage.workflows import (
    Action,
    ActionContext,
    ActionDef,
    BrokerMessage,
    MessageType,
    ProgressEvent,
    Runner,
    StageDef,
    Status,
    WorkflowDef,
    register_action,
)
from tests.transport.helpers import FAST
from tests.workflows import actions  # noqa: F401 - registers the test actions

pytestmark = pytest.mark.anyio



def _flow(*steps: ActionDef, on_error: str = "fail") -> WorkflowDef:
    return WorkflowDef(id="child-flow", store={"count": 1}, stages=[
        StageDef(id="who", actions=[ActionDef(id="whoami", action="test.whoami")]),
        StageDef(id="work", actions=list(steps), on_error=on_error),  # type: ignore[arg-type]
    ])


@pytest.mark.parametrize(("start", "transport"), [("spawn", "unix"), ("forkserver", "unix"),
                                                  ("spawn", "stdio")])
async def test_a_spawned_workflow_reports_as_it_runs_and_returns_its_result(
    start: str, transport: str
) -> None:
    seen: list[BrokerMessage] = []
    flow = _flow(ActionDef(id="hello", action="test.greet", params={"name": "child"}),
                 ActionDef(id="flaky", action="test.flaky", params={"succeed_on": 2},
                           max_attempts=2),
                 ActionDef(id="count", action="test.count"),
                 ActionDef(id="emit", action="test.emit"))
    async with Runner() as runner:
        runner.broker.register_handler("*", seen.append)
        options = ProcessOptions(start=start, transport=transport)  # type: ignore[arg-type]
        execution = await runner.start(flow, process=options)
        result = await execution.result()
    assert result.status == Status.SUCCEEDED, result.error
    store = result.store
    assert store["pid"] != os.getpid()
    assert store["greeting"] == "hello child" and store["count"] == 2
    assert store["flaky_attempts"] == 2
    assert execution.store == store  # the parent's copy followed the child's puts and deletes
    assert [m.seq for m in seen] == list(range(1, len(seen) + 1))
    progress = [m.payload for m in seen if m.message_type == MessageType.PROGRESS]
    assert all(isinstance(event, ProgressEvent) for event in progress)
    retry = next(e for e in progress if e.kind == "action_retry")
    assert retry.error is not None and retry.error.type_name == "ConnectionError"
    assert any(m.message_type == "custom.note" for m in seen)
    assert next(m for m in seen if m.message_type == MessageType.FINAL_STORE).payload == store


async def test_a_failing_action_in_a_child_comes_back_with_its_traceback() -> None:
    async with Runner() as runner:
        result = await runner.spawn(_flow(ActionDef(id="boom", action="test.fail")),
                                    process=FAST)
    assert result.status == Status.FAILED
    assert result.error is not None and result.error.type_name == "RuntimeError"
    assert (result.error.stage_id, result.error.action_id) == ("work", "boom")
    assert "raise RuntimeError" in result.error.traceback


async def test_a_child_killed_mid_workflow_fails_the_execution_and_nothing_hangs() -> None:
    puts: list[Any] = []
    async with Runner() as runner:
        runner.broker.register_handler(MessageType.STORE_PUT,
                                       lambda message: puts.append(message.payload))
        execution = await runner.start(
            _flow(ActionDef(id="long", action="test.sleep", params={"seconds": 60})),
            process=FAST)
        with anyio.fail_after(15):
            await wait_until(lambda: "pid" in execution.store and "ppid" in execution.store)
            os.kill(execution.store["pid"], signal.SIGKILL)
            result = await execution.result()
    assert result.status == Status.FAILED
    assert result.error is not None and result.error.type_name == "ProcessKilled"
    assert "SIGKILL" in result.error.message
    assert [p["key"] for p in puts] == ["pid", "ppid"]  # what was sent before arrived
    assert result.store == execution.store


async def test_cancel_and_pause_reach_a_workflow_in_a_child(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with Runner() as runner:
        progress: list[ProgressEvent] = []
        runner.broker.register_handler(MessageType.PROGRESS,
                                       lambda message: progress.append(message.payload))
        execution = await runner.start(_flow(
            ActionDef(id="nap", action="test.sleep", params={"seconds": 0.5}),
            ActionDef(id="long", action="test.sleep",
                      params={"seconds": 60, "step": 5, "marker": str(marker)})),
            process=FAST)
        with anyio.fail_after(15):
            await wait_until(lambda: any(e.action_id == "nap" for e in progress))
            await execution.pause()
            await wait_until(lambda: execution.status == Status.PAUSED
                             and any(e.kind == "workflow_paused" for e in progress))
            await anyio.sleep(0.7)  # longer than the nap: it is held
            assert not any(e.kind == "action_finished" and e.action_id == "nap"
                           for e in progress)
            await execution.resume()
            await wait_until(lambda: any(e.kind == "action_started" and e.action_id == "long"
                                         for e in progress))
            await execution.cancel()
            result = await execution.result()
    assert result.status == Status.CANCELLED
    assert [(a.id, a.status) for a in result.stages[1].actions] == [
        ("nap", Status.SUCCEEDED), ("long", Status.CANCELLED)]
    assert marker.read_text() == "cancelled"


async def test_an_action_the_child_cannot_find_fails_the_spawn_with_a_clear_error() -> None:
    @register_action("test.only-in-the-parent")
    class OnlyHere(Action):  # registered when this test runs, not when its module is imported
        async def execute(self, ctx: ActionContext) -> None:
            pass

    flow = WorkflowDef(id="w", stages=[StageDef(id="s", actions=[
        ActionDef(id="a", action="test.only-in-the-parent")])])
    async with Runner() as runner:
        assert (await runner.execute(flow)).status == Status.SUCCEEDED  # here it is known
        with pytest.raises(ActorCrashedError) as caught:
            await runner.spawn(flow, process=FAST)
    assert caught.value.type_name.endswith("InvalidDefinitionError")
    assert "unknown action 'test.only-in-the-parent'" in caught.value.error_message
    assert caught.value.during == "starting"
