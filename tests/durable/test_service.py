"""`actorstage serve --state sqlite:///...`: killed with SIGKILL mid-execution and started
again on the same state, it knows its executions from before (Get, List, Watch from any seq,
idempotent ExecuteAsync) and runs the interrupted one on; stopped with SIGTERM, it leaves
its running executions to the next start."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import anyio
import pytest
from grpclib.client import Channel

from actorstage.service import (
    ExecuteRequest,
    ExecutionStatus,
    GetExecutionRequest,
    ListExecutionsRequest,
    ProgressEvent,
    RunnerStub,
    WatchExecutionRequest,
)
from tests.interop.conftest import serve
from tests.service.helpers import workflow
from tests.service.test_callbacks import Receiver, _free_port, endpoint

pytestmark = pytest.mark.anyio

SHORT = workflow(("put", "store.set", {"key": "short", "value": True}), workflow_id="short")
LONG = workflow(("a", "store.set", {"key": "a", "value": 1}),
                ("nap", "sleep", {"seconds": 2.0}),
                ("b", "store.set", {"key": "b", "value": 2}), workflow_id="long")


async def _watch(stub: RunnerStub, execution_id: str, after_seq: int = 0,
                 until: str = "workflow_finished") -> list[ProgressEvent]:
    events = []
    with anyio.fail_after(30):
        async for event in stub.watch_execution(WatchExecutionRequest(execution_id, after_seq)):
            events.append(event)
            if event.kind == until or event.kind == "workflow_finished":
                break
    return events


async def test_a_killed_service_comes_back_with_its_executions(state_url: str) -> None:
    state = ("--state", state_url)
    with serve(*state) as first:
        async with Channel("127.0.0.1", first.port) as channel:
            stub = RunnerStub(channel)
            await stub.execute_async(ExecuteRequest(execution_id="svc-0", workflow=SHORT))
            await _watch(stub, "svc-0")
            await stub.execute_async(ExecuteRequest(execution_id="svc-1", workflow=LONG,
                                                    store_json='{"given": true}'))
            before = await _watch(stub, "svc-1", until="action_started")
            before += await _watch(stub, "svc-1", before[-1].seq, until="action_started")
            assert before[-1].action_id == "nap"
            await anyio.sleep(0.5)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)

    with serve(*state) as second:
        async with Channel("127.0.0.1", second.port) as channel:
            stub = RunnerStub(channel)
            ended = await stub.get_execution(GetExecutionRequest("svc-0"))
            assert ended.status == ExecutionStatus.SUCCEEDED
            assert json.loads(ended.store_json) == {"short": True}
            listed = await stub.list_executions(ListExecutionsRequest())
            assert [info.execution_id for info in listed.executions] == ["svc-0", "svc-1"]
            events = await _watch(stub, "svc-1")  # from the start: the history, then live
            seqs = [event.seq for event in events]  # (store changes take seqs too)
            assert seqs == sorted(set(seqs)) and seqs[0] == 1
            kinds = [event.kind for event in events]
            assert kinds.count("workflow_started") == 1
            assert kinds.count("workflow_recovered") == 1
            finished = events[-1]
            assert finished.status == ExecutionStatus.SUCCEEDED
            assert json.loads(finished.store_json) == {"given": True, "a": 1, "b": 2}
            assert [event.action_id for event in events if event.kind == "action_started"] == [
                "a", "nap", "nap", "b"]  # a completed before the kill: not again
            again = await stub.execute_async(ExecuteRequest(
                execution_id="svc-1", workflow=LONG, store_json='{"given": true}'))
            assert again.attached and again.status == ExecutionStatus.SUCCEEDED
            await stub.execute_async(ExecuteRequest(execution_id="svc-2", workflow=LONG))
            await _watch(stub, "svc-2", until="action_started")
    # SIGTERM (the helper's stop) while svc-2 runs: it waits in the state for the next start

    with serve(*state) as third:
        async with Channel("127.0.0.1", third.port) as channel:
            stub = RunnerStub(channel)
            events = await _watch(stub, "svc-2")
            assert events[-1].status == ExecutionStatus.SUCCEEDED
            seqs = [event.seq for event in events]
            assert seqs == sorted(set(seqs)) and seqs[0] == 1
            assert [event.kind for event in events].count("workflow_recovered") == 1


async def test_callbacks_a_killed_service_left_undelivered_arrive_after_it_restarts(
        state_url: str) -> None:
    port = _free_port()
    flags = ("--state", state_url, "--callback", f"127.0.0.1:{port}")
    with serve(*flags) as first:  # the endpoint is down: the events wait in the outbox
        async with Channel("127.0.0.1", first.port) as channel:
            stub = RunnerStub(channel)
            await stub.execute_async(ExecuteRequest(execution_id="cb-1", workflow=SHORT))
            events = await _watch(stub, "cb-1")
            await anyio.sleep(0.3)  # (the sender is retrying, with backoff)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    receiver = Receiver()
    async with endpoint(receiver, port):
        with serve(*flags):
            await receiver.wait_for(lambda got: any(
                event.kind == "workflow_finished" for event in got))
    assert [event.seq for event in receiver.events] == [event.seq for event in events]
    assert receiver.keys == [f"cb-1:{event.seq}" for event in events]  # once each, in order


async def test_an_execution_gone_from_memory_is_still_answered_from_the_state(
        tmp_path: Path) -> None:
    from actorstage.service import ServiceConfig, open_service

    config = ServiceConfig(port=0, state=f"sqlite:///{tmp_path / 'runner.db'}", max_finished=0)
    async with open_service(config) as server, Channel("127.0.0.1", server.port) as channel:
        stub = RunnerStub(channel)
        await stub.execute_async(ExecuteRequest(execution_id="old", workflow=SHORT))
        await _watch(stub, "old")
        assert server.service is not None and server.service.executions.get("old") is None
        info = await stub.get_execution(GetExecutionRequest("old"))  # (kept in the state)
        assert info.status == ExecutionStatus.SUCCEEDED
        again = await stub.execute_async(ExecuteRequest(execution_id="old", workflow=SHORT))
        assert again.attached and again.status == ExecutionStatus.SUCCEEDED
