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
