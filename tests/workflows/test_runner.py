"""Running workflows in this process: results, reports, retries, errors, pause and cancel."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from actorstage import ActorSystem, InvalidDefinitionError
from actorstage.testing import wait_until
from actorstage.workflows import (
    ActionDef,
    BrokerMessage,
    MessageType,
    ProgressEvent,
    Runner,
    StageDef,
    Status,
    WorkflowDef,
)
from tests.workflows import actions  # noqa: F401 - registers the test actions

pytestmark = pytest.mark.anyio


def _flow(*stages: StageDef, store: dict[str, Any] | None = None) -> WorkflowDef:
    return WorkflowDef(id="flow", stages=list(stages), store=store or {})


def _stage(stage_id: str, *steps: ActionDef, on_error: str = "fail") -> StageDef:
    return StageDef(id=stage_id, actions=list(steps), on_error=on_error)  # type: ignore[arg-type]


GREET_AND_COUNT = _flow(
    _stage("greet", ActionDef(id="hello", action="test.greet", params={"name": "ada"})),
    _stage("tally", ActionDef(id="one", action="test.count"),
           ActionDef(id="two", action="test.count-factory"),
           ActionDef(id="three", action="test.emit")),
    store={"count": 10},
)


async def test_a_workflow_runs_its_stages_in_order_and_reports_everything() -> None:
    seen: list[BrokerMessage] = []
    async with Runner() as runner:
        runner.broker.register_handler("*", seen.append)
        puts: list[Any] = []

        async def on_put(message: BrokerMessage) -> None:
            puts.append(message.payload)

        runner.broker.register_handler(MessageType.STORE_PUT, on_put)
        execution = await runner.start(GREET_AND_COUNT)
        result = await execution.result()
    assert result.status == Status.SUCCEEDED
    assert result.store == {"count": 12, "greeting": "hello ada"}
    assert execution.store == result.store  # the parent's copy followed every put and delete
    assert execution.status == Status.SUCCEEDED
    assert [stage.id for stage in result.stages] == ["greet", "tally"]
    assert [a.id for a in result.stages[1].actions] == ["one", "two", "three"]
    assert all(a.status == Status.SUCCEEDED and a.attempts == 1 and a.duration >= 0
               for stage in result.stages for a in stage.actions)
    assert [p["key"] for p in puts] == ["greeting", "count", "count", "temp"]
    assert [m.seq for m in seen] == list(range(1, len(seen) + 1))  # numbered, none missing
    kinds = [m.payload.kind for m in seen if isinstance(m.payload, ProgressEvent)]
    assert kinds[0] == "workflow_started" and kinds[-1] == "workflow_finished"
    assert kinds.count("action_started") == kinds.count("action_finished") == 4
    assert kinds.index("stage_started") < kinds.index("action_started")
    types = [m.message_type for m in seen]
    assert "log" in types and "custom.note" in types and "store.delete" in types
    final = [m for m in seen if m.message_type == MessageType.FINAL_STORE]
    assert final[0].payload == result.store
    note = next(m for m in seen if m.message_type == "custom.note")
    assert (note.stage_id, note.action_id, note.payload) == ("tally", "three", {"from": "three"})


async def test_a_flaky_action_succeeds_on_its_third_attempt() -> None:
    flow = _flow(_stage("s", ActionDef(id="f", action="test.flaky", params={"succeed_on": 3},
                                       max_attempts=3, backoff=0.01)))
    events: list[ProgressEvent] = []
    async with Runner() as runner:
        runner.broker.register_handler(MessageType.PROGRESS,
                                       lambda message: events.append(message.payload))
        result = await runner.execute(flow)
    assert result.status == Status.SUCCEEDED
    action = result.stages[0].actions[0]
    assert action.attempts == 3 and action.status == Status.SUCCEEDED
    assert result.store["flaky_attempts"] == 3
    retries = [e for e in events if e.kind == "action_retry"]
    assert [e.attempt for e in retries] == [1, 2]
    assert retries[0].error is not None and retries[0].error.type_name == "ConnectionError"


async def test_a_failure_ends_the_workflow_unless_the_stage_continues() -> None:
    failing = ActionDef(id="boom", action="test.fail", params={"message": "no disk"})
    async with Runner() as runner:
        result = await runner.execute(_flow(
            _stage("first", failing, ActionDef(id="after", action="test.count")),
            _stage("never", ActionDef(id="n", action="test.count"))))
        assert result.status == Status.FAILED
        assert result.error is not None
        assert (result.error.stage_id, result.error.action_id) == ("first", "boom")
        assert result.error.type_name == "RuntimeError" and result.error.message == "no disk"
        assert 'raise RuntimeError(self.params.message)' in result.error.traceback
        assert [s.id for s in result.stages] == ["first"]
        assert [a.id for a in result.stages[0].actions] == ["boom"]
        assert "count" not in result.store

        result = await runner.execute(_flow(
            _stage("lenient", failing, ActionDef(id="after", action="test.count"),
                   on_error="continue"),
            _stage("next", ActionDef(id="n", action="test.count"))))
        assert result.status == Status.SUCCEEDED
        statuses = [(a.id, a.status) for a in result.stages[0].actions]
        assert statuses == [("boom", Status.FAILED), ("after", Status.SUCCEEDED)]
        assert result.stages[0].actions[0].error is not None
        assert result.store["count"] == 2


async def test_cancel_lands_inside_a_long_action(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    flow = _flow(_stage("s", ActionDef(id="long", action="test.sleep",
                                       params={"seconds": 60, "step": 5, "marker": str(marker)}),
                        ActionDef(id="never", action="test.count")))
    async with Runner() as runner:
        started_actions: list[str] = []
        runner.broker.register_handler(
            MessageType.PROGRESS, lambda message: started_actions.append(message.action_id)
            if message.payload.kind == "action_started" else None)
        execution = await runner.start(flow)
        with anyio.fail_after(10):
            await wait_until(lambda: started_actions == ["long"])  # in its 5 s step now
            started = time.monotonic()
            await execution.cancel()
            result = await execution.result()
    assert time.monotonic() - started < 2
    assert result.status == Status.CANCELLED
    assert [(a.id, a.status) for a in result.stages[0].actions] == [("long", Status.CANCELLED)]
    assert marker.read_text() == "cancelled"


async def test_pause_then_resume_ends_with_the_store_of_an_uninterrupted_run() -> None:
    flow = _flow(
        _stage("s", ActionDef(id="nap", action="test.sleep", params={"seconds": 0.3}),
               ActionDef(id="one", action="test.count"),
               ActionDef(id="two", action="test.count")),
        store={"count": 0})
    async with Runner() as runner:
        uninterrupted = await runner.execute(flow)
        progress: list[ProgressEvent] = []
        runner.broker.register_handler(MessageType.PROGRESS,
                                       lambda message: progress.append(message.payload))
        execution = await runner.start(flow)
        with anyio.fail_after(10):
            await wait_until(lambda: execution.status == Status.RUNNING)
            await execution.pause()  # lands at a checkpoint inside the nap
            await wait_until(lambda: any(e.kind == "workflow_paused" for e in progress))
            store_when_paused = dict(execution.store)
            await anyio.sleep(0.5)  # longer than the nap: nothing moves while paused
            assert execution.status == Status.PAUSED
            assert execution.store == store_when_paused
            assert not any(e.kind == "action_finished" for e in progress)
            await execution.resume()
            result = await execution.result()
    assert result.status == Status.SUCCEEDED
    assert result.store == uninterrupted.store == {"count": 2, "slept": 0.3}
    kinds = [e.kind for e in progress]
    assert kinds.index("workflow_paused") < kinds.index("workflow_resumed")


async def test_a_failing_handler_is_counted_and_the_workflow_goes_on() -> None:
    def broken(message: BrokerMessage) -> None:
        raise ValueError("handler bug")

    async with Runner() as runner:
        runner.broker.register_handler(MessageType.STORE_PUT, broken)
        result = await runner.execute(GREET_AND_COUNT)
    assert result.status == Status.SUCCEEDED
    assert runner.broker.handler_errors == 4


async def test_a_runner_uses_a_system_it_is_given_and_leaves_no_actor_behind() -> None:
    async with ActorSystem() as system:
        runner = Runner(system)
        result = await runner.execute(GREET_AND_COUNT, store={"count": 100})
        assert result.store["count"] == 102
        with anyio.fail_after(5):
            await wait_until(lambda: system.tree().children == ())


async def test_closing_the_runner_mid_workflow_ends_the_execution_cancelled() -> None:
    flow = _flow(_stage("s", ActionDef(id="long", action="test.sleep",
                                       params={"seconds": 60, "step": 0.05})))
    async with ActorSystem(shutdown_timeout=0.5) as system:
        execution = await Runner(system).start(flow)
        with anyio.fail_after(5):
            await wait_until(lambda: execution.status == Status.RUNNING)
    with anyio.fail_after(5):
        result = await execution.result()  # resolved, not left waiting forever
    assert result.status == Status.CANCELLED
    assert result.error is not None and result.error.type_name == "RunnerStopped"


async def test_a_bad_execution_id_or_store_is_refused_before_anything_starts() -> None:
    async with Runner() as runner:
        with pytest.raises(InvalidDefinitionError, match="execution id 'a/b'"):
            await runner.start(GREET_AND_COUNT, execution_id="a/b")
        with pytest.raises(InvalidDefinitionError, match="initial store cannot be encoded"):
            await runner.start(GREET_AND_COUNT, store={"x": object()})
        assert runner.system.tree().children == ()
        result = await runner.execute(GREET_AND_COUNT, execution_id="run-1")
        assert result.execution_id == "run-1"
