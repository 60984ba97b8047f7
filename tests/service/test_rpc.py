"""Every RPC of the runner service and every error path, through grpclib's client."""

from __future__ import annotations

import json

import anyio
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status as Code

from actorstage.service import (
    ControlRequest,
    ExecuteRequest,
    ExecutionStatus,
    GetExecutionRequest,
    ListActionsRequest,
    ListExecutionsRequest,
    ProgressEvent,
    RunnerStub,
    ServiceConfig,
    WatchExecutionRequest,
    WorkflowMetadata,
    open_service,
)
from tests.service.helpers import SHORT, YAML, long, run, serving, until, workflow

pytestmark = pytest.mark.anyio




async def test_execute_streams_every_event_in_order_up_to_the_end() -> None:
    async with serving() as (_, stub):
        events = await run(stub, ExecuteRequest(execution_id="e1", workflow=SHORT,
                                                store_json='{"start": 1}'))
        kinds = [event.kind for event in events]
        assert kinds == ["workflow_started", "stage_started", "action_started", "log",
                         "action_finished", "action_started", "action_finished",
                         "stage_finished", "workflow_finished"]
        seqs = [event.seq for event in events]
        assert seqs == sorted(set(seqs))
        assert events[3].message == "INFO: hi"
        end = events[-1]
        assert end.status == ExecutionStatus.SUCCEEDED
        assert json.loads(end.store_json) == {"start": 1, "answer": 42}
        info = await stub.get_execution(GetExecutionRequest("e1"))
        assert info.status == ExecutionStatus.SUCCEEDED
        assert info.last_seq == end.seq and info.workflow_id == "wf"
        assert json.loads(info.store_json) == {"start": 1, "answer": 42}


async def test_yaml_definitions_run_too() -> None:
    async with serving() as (_, stub):
        events = await run(stub, ExecuteRequest(workflow=YAML))
        assert events[-1].status == ExecutionStatus.SUCCEEDED
        assert json.loads(events[-1].store_json) == {"greeting": "hello"}
        assert len(events[0].execution_id) == 32  # the server picked one


async def test_execute_async_answers_at_once_and_watch_misses_nothing_on_reconnect() -> None:
    async with serving() as (_, stub):
        started = await stub.execute_async(ExecuteRequest(execution_id="bg", workflow=long(0.2)))
        assert (started.execution_id, started.status, started.attached) == (
            "bg", ExecutionStatus.RUNNING, False)
        # A first watcher "disconnects" after the sleep action starts; a second one
        # resumes from the last seq it saw.
        seen: list[ProgressEvent] = []
        async for event in stub.watch_execution(WatchExecutionRequest("bg")):
            seen.append(event)
            if event.kind == "action_started" and event.action_id == "nap":
                break
        async for event in stub.watch_execution(WatchExecutionRequest("bg", seen[-1].seq)):
            seen.append(event)
        everything = [event async for event in stub.watch_execution(WatchExecutionRequest("bg"))]
        assert seen == everything
        assert everything[-1].kind == "workflow_finished"


async def test_executing_an_id_again_attaches_and_a_different_request_is_refused() -> None:
    async with serving() as (_, stub):
        request = ExecuteRequest(execution_id="same", workflow=long(0.2),
                                 metadata=WorkflowMetadata(name="n", labels={"team": "a"}))
        first = await stub.execute_async(request)
        again = await stub.execute_async(request)
        assert (first.attached, again.attached) == (False, True)
        attached = await run(stub, request)
        assert attached[0].kind == "workflow_started" and attached[-1].kind == "workflow_finished"
        listed = await stub.list_executions(ListExecutionsRequest())
        assert [info.execution_id for info in listed.executions] == ["same"]
        with pytest.raises(GRPCError) as caught:
            await stub.execute_async(ExecuteRequest(execution_id="same", workflow=SHORT))
        assert caught.value.status == Code.ALREADY_EXISTS
        assert "exists with a different request" in str(caught.value.message)


async def test_pause_holds_the_workflow_until_resume() -> None:
    async with serving() as (_, stub):
        await stub.execute_async(ExecuteRequest(execution_id="p", workflow=long(0.3)))
        nap = await until(stub, "p", "action_started")
        paused = await stub.pause_execution(ControlRequest("p", reason="maintenance"))
        assert paused.status == ExecutionStatus.PAUSED and paused.reason == "maintenance"
        landed = await until(stub, "p", "workflow_paused", nap)
        assert (await stub.get_execution(GetExecutionRequest("p"))).status == \
            ExecutionStatus.PAUSED
        await anyio.sleep(0.4)  # longer than the whole sleep: a real pause must hold it
        info = await stub.get_execution(GetExecutionRequest("p"))
        assert info.status == ExecutionStatus.PAUSED and info.last_seq == landed
        resumed = await stub.resume_execution(ControlRequest("p", reason="done"))
        assert resumed.status == ExecutionStatus.RUNNING
        rest = [event async for event in stub.watch_execution(WatchExecutionRequest("p", landed))]
        assert rest[0].kind == "workflow_resumed"  # nothing happened while paused
        assert rest[-1].status == ExecutionStatus.SUCCEEDED
        events = {event.kind + event.action_id: event for event in await run(
            stub, ExecuteRequest(execution_id="p", workflow=long(0.3)))}
        took = events["action_finishednap"].time - events["action_startednap"].time
        assert took >= 0.3 + 0.4  # the sleep's own time plus the pause


async def test_cancel_ends_a_running_execution_and_finished_ones_refuse_controls() -> None:
    async with serving() as (server, stub):
        await stub.execute_async(ExecuteRequest(execution_id="c", workflow=long(60)))
        await until(stub, "c", "action_started")
        with anyio.fail_after(10):
            cancelled = await stub.cancel_execution(ControlRequest("c", reason="no longer needed"))
            assert cancelled.reason == "no longer needed"
            assert cancelled.status == ExecutionStatus.CANCELLED  # the state reached
            events = await run(stub, ExecuteRequest(execution_id="c", workflow=long(60)))
        assert events[-1].status == ExecutionStatus.CANCELLED
        info = await stub.get_execution(GetExecutionRequest("c"))
        assert json.loads(info.store_json) == {"before": True}
        for control in (stub.cancel_execution, stub.pause_execution, stub.resume_execution):
            with pytest.raises(GRPCError) as caught:
                await control(ControlRequest("c"))
            assert caught.value.status == Code.FAILED_PRECONDITION
            assert "already ended (cancelled)" in str(caught.value.message)
        assert server.metrics.ended == {"cancelled": 1}


async def test_a_failing_action_fails_the_execution_with_its_error() -> None:
    async with serving() as (_, stub):
        events = await run(stub, ExecuteRequest(
            execution_id="f", workflow=workflow(("boom", "fail", {"message": "on purpose"}))))
        end = events[-1]
        assert end.status == ExecutionStatus.FAILED and end.error is not None
        assert (end.error.type_name, end.error.message, end.error.action_id) == (
            "ActionFailed", "on purpose", "boom")
        info = await stub.get_execution(GetExecutionRequest("f"))
        assert info.error is not None and info.error.message == "on purpose"


@pytest.mark.parametrize(("request_", "text"), [
    (ExecuteRequest(workflow=""), "workflow is empty"),
    (ExecuteRequest(workflow="id: [unclosed"), "not valid YAML"),
    (ExecuteRequest(workflow='{"id": "x"'), "not valid JSON"),
    (ExecuteRequest(workflow=workflow(("a", "no.such", {}))), "unknown action 'no.such'"),
    (ExecuteRequest(workflow=workflow(("a", "sleep", {"seconds": "long"}))), "seconds"),
    (ExecuteRequest(workflow=workflow(("a", "sleep", {"seconds": -1}))), ">= 0"),
    (ExecuteRequest(workflow=SHORT, store_json="[1]"), "must be a JSON object, got list"),
    (ExecuteRequest(workflow=SHORT, store_json="{"), "store_json is not valid JSON"),
    (ExecuteRequest(workflow=SHORT, execution_id="has space"), "execution id 'has space'"),
])
async def test_bad_requests_are_invalid_arguments_naming_the_problem(
    request_: ExecuteRequest, text: str
) -> None:
    async with serving() as (server, stub):
        for call in (stub.execute_async, lambda r: run(stub, r)):
            with pytest.raises(GRPCError) as caught:
                await call(request_)
            assert caught.value.status == Code.INVALID_ARGUMENT
            assert text in str(caught.value.message)
        assert server.service is not None and len(server.service.executions) == 0


async def test_unknown_ids_are_not_found() -> None:
    async with serving() as (_, stub):
        calls = [stub.get_execution(GetExecutionRequest("nope")),
                 stub.cancel_execution(ControlRequest("nope")),
                 stub.pause_execution(ControlRequest("nope")),
                 stub.resume_execution(ControlRequest("nope"))]
        for call in calls:
            with pytest.raises(GRPCError) as caught:
                await call
            assert caught.value.status == Code.NOT_FOUND
            assert "no execution 'nope'" in str(caught.value.message)
        with pytest.raises(GRPCError) as caught:
            [event async for event in stub.watch_execution(WatchExecutionRequest("nope"))]
        assert caught.value.status == Code.NOT_FOUND


async def test_list_filters_by_status_and_labels_and_pages() -> None:
    async with serving() as (_, stub):
        for number in range(5):
            labels = {"team": "a" if number % 2 else "b"}
            await run(stub, ExecuteRequest(execution_id=f"ok{number}", workflow=SHORT,
                                           metadata=WorkflowMetadata(labels=labels)))
        await run(stub, ExecuteRequest(execution_id="bad", workflow=workflow(("x", "fail", {}))))
        failed = await stub.list_executions(ListExecutionsRequest(status=ExecutionStatus.FAILED))
        assert [info.execution_id for info in failed.executions] == ["bad"]
        team_a = await stub.list_executions(ListExecutionsRequest(labels={"team": "a"}))
        assert [info.execution_id for info in team_a.executions] == ["ok1", "ok3"]
        pages, token = [], ""
        while True:
            page = await stub.list_executions(ListExecutionsRequest(page_size=4,
                                                                    page_token=token))
            pages.append([info.execution_id for info in page.executions])
            token = page.next_page_token
            if not token:
                break
        assert pages == [["ok0", "ok1", "ok2", "ok3"], ["ok4", "bad"]]
        for bad, text in [(ListExecutionsRequest(page_size=5000), "page_size is at most 1000"),
                          (ListExecutionsRequest(page_token="x"), "page_token 'x'")]:
            with pytest.raises(GRPCError) as caught:
                await stub.list_executions(bad)
            assert caught.value.status == Code.INVALID_ARGUMENT
            assert text in str(caught.value.message)


async def test_list_actions_gives_ids_modules_and_params_schemas() -> None:
    async with serving() as (_, stub):
        actions = {action.id: action for action in
                   (await stub.list_actions(ListActionsRequest())).actions}
        assert {"log", "sleep", "store.set", "fail"} <= set(actions)
        schema = json.loads(actions["sleep"].params_schema_json)
        sleep = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
        assert sleep["required"] == ["seconds"]
        assert sleep["properties"]["seconds"]["minimum"] == 0


async def test_watch_refuses_history_it_no_longer_has() -> None:
    async with serving() as (server, stub):
        assert server.service is not None
        await run(stub, ExecuteRequest(execution_id="full", workflow=SHORT))
        events = [event async for event in stub.watch_execution(WatchExecutionRequest("full"))]
        server.service.max_events = 3
        await stub.execute_async(ExecuteRequest(execution_id="h", workflow=SHORT))
        record = server.service.executions.get("h")
        assert record is not None
        await record.ended_event.wait()
        with pytest.raises(GRPCError) as caught:
            [event async for event in stub.watch_execution(WatchExecutionRequest("h"))]
        assert caught.value.status == Code.OUT_OF_RANGE
        assert "discarded" in str(caught.value.message)
        tail = [event async for event in stub.watch_execution(
            WatchExecutionRequest("h", events[-4].seq))]
        assert [(event.seq, event.kind) for event in tail] == [
            (event.seq, event.kind) for event in events[-3:]]


async def test_a_stopping_service_takes_no_new_executions() -> None:
    async with serving() as (server, stub):
        assert server.service is not None
        server.service.accepting = False
        with pytest.raises(GRPCError) as caught:
            await stub.execute_async(ExecuteRequest(workflow=SHORT))
        assert caught.value.status == Code.UNAVAILABLE
        server.service.accepting = True
        request = ExecuteRequest(execution_id="known", workflow=SHORT)
        await run(stub, request)
        server.service.accepting = False
        assert (await run(stub, request))[-1].kind == "workflow_finished"  # attaching still works
        server.service.accepting = True


async def test_a_request_over_max_message_size_is_resource_exhausted_before_it_is_read() -> None:
    async with serving(max_message_size=4096) as (_server, stub):
        huge = workflow(("put", "store.set", {"key": "k", "value": "x" * 1_000_000}))
        with pytest.raises(GRPCError) as caught:
            await stub.execute_async(ExecuteRequest(execution_id="big", workflow=huge))
        assert caught.value.status is Code.RESOURCE_EXHAUSTED
        assert "exceeds the limit of 4096 bytes" in str(caught.value.message)
        # The same connection serves the next call.
        events = await run(stub, ExecuteRequest(execution_id="small", workflow=SHORT))
        assert events[-1].kind == "workflow_finished"


async def test_the_service_stops_at_once_while_a_client_stays_connected() -> None:
    channel = None
    try:
        with anyio.fail_after(4):  # grpclib alone waits for the client forever on Python 3.12+
            async with open_service(ServiceConfig(port=0)) as server:
                channel = Channel("127.0.0.1", server.port)
                await run(RunnerStub(channel), ExecuteRequest(execution_id="one", workflow=SHORT))
    finally:
        if channel is not None:
            channel.close()
