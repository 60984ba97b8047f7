"""Several runners on one PostgreSQL state: each execution is owned by one runner at a time
(a lease it renews); when a runner is killed, another takes its executions over within a
bounded time (the lease, then a third of it) and runs them on; a start of an id that
another runner owns is refused, never run twice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import msgspec
import pytest

from actorstage.workflows import Runner, StateError, Status, WorkflowDef
from tests.durable.test_recovery import _recovered, _runs, _workflow, killable

pytestmark = pytest.mark.anyio


async def test_a_second_runner_takes_over_when_the_first_is_killed(
        tmp_path: Path, postgres_db: str) -> None:
    state = f"{postgres_db}?lease=1"
    journal = tmp_path / "journal"
    definition = _workflow(journal, nap=3.0)
    async with Runner(state=state) as second:
        with killable(state, "start", definition) as first:
            first.wait_for("action_started nap")
            await anyio.sleep(1.5)  # longer than the lease: the first renews it, keeps it
            assert not second._running
            with pytest.raises(StateError, match="exists in the state already"):
                await second.start(msgspec.convert(json.loads(definition), WorkflowDef),
                                   execution_id="e1")
            first.kill()
            killed = time.monotonic()
        execution = await _recovered(second)
        taken_over = time.monotonic() - killed
        result = await execution.result()
    assert taken_over < 1.0 + 1.0 / 3 + 1.0, f"took {taken_over:.2f}s to take it over"
    assert result.status == Status.SUCCEEDED
    assert _runs(journal) == ["a", "nap", "nap", "b"]


async def test_two_services_on_one_database_share_executions_and_controls(
        postgres_db: str) -> None:
    from grpclib.client import Channel

    from actorstage.service import (
        ControlRequest,
        ExecuteRequest,
        ExecutionStatus,
        GetExecutionRequest,
        RunnerStub,
    )
    from tests.durable.test_service import LONG, _watch
    from tests.interop.conftest import serve

    state = ("--state", f"{postgres_db}?lease=1")
    with serve(*state) as first, serve(*state) as second:
        async with Channel("127.0.0.1", first.port) as one, \
                Channel("127.0.0.1", second.port) as two:
            a, b = RunnerStub(one), RunnerStub(two)
            await a.execute_async(ExecuteRequest(execution_id="shared-1", workflow=LONG))
            await _watch(a, "shared-1", until="action_started")
            again = await b.execute_async(ExecuteRequest(execution_id="shared-1",
                                                         workflow=LONG))
            assert again.attached  # never a second run, whichever runner is asked
            paused = await b.pause_execution(ControlRequest("shared-1", "from the second"))
            assert paused.status == ExecutionStatus.PAUSED  # the first did it, told by NOTIFY
            await anyio.sleep(2.5)  # longer than the nap: paused, it has not ended
            assert (await a.get_execution(GetExecutionRequest("shared-1"))).status == \
                ExecutionStatus.PAUSED
            await b.resume_execution(ControlRequest("shared-1"))
            events = await _watch(b, "shared-1")  # read from the state, as the first writes
            assert events[-1].kind == "workflow_finished"
            assert events[-1].status == ExecutionStatus.SUCCEEDED
            kinds = [event.kind for event in events]
            assert "workflow_paused" in kinds and "workflow_resumed" in kinds
            await a.execute_async(ExecuteRequest(execution_id="shared-2", workflow=LONG))
            await _watch(a, "shared-2", until="action_started")
        first.process.kill()  # SIGKILL: the second takes shared-2 over
        first.process.wait(10)
        async with Channel("127.0.0.1", second.port) as two:
            b = RunnerStub(two)
            events = await _watch(b, "shared-2")
            assert events[-1].status == ExecutionStatus.SUCCEEDED
            assert [event.kind for event in events].count("workflow_recovered") == 1


async def test_a_runner_that_stalls_past_its_lease_stops_what_another_took_over(
        tmp_path: Path, postgres_db: str) -> None:
    """Fencing: the stalled runner writes nothing more of the execution and starts no next
    step of it; the runner that took it over finishes it."""
    state = f"{postgres_db}?lease=1"
    journal = tmp_path / "journal"
    definition = msgspec.convert(json.loads(_workflow(journal, nap=2.5)), WorkflowDef)
    async with Runner(state=state) as stalled:
        execution = await stalled.start(definition, execution_id="e1")
        for _ in range(500):
            if journal.exists() and _runs(journal) == ["a", "nap"]:
                break
            await anyio.sleep(0.01)
        assert stalled._lease_task is not None
        stalled._lease_task.cancel()  # it stops renewing, as a frozen process would
        async with Runner(state=state) as other:
            taken = await _recovered(other)  # once the lease has run out
            result = await taken.result()
            with anyio.fail_after(10):
                await execution.result()  # stopped where it was, its nap over
    assert result.status == Status.SUCCEEDED
    assert execution.lost
    runs = _runs(journal)
    assert runs.count("a") == 1 and runs.count("b") == 1  # b ran once: on the other runner
