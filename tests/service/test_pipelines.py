"""The Pipelines service through a real grpclib client on a loopback port."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.const import Status as Code
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

import tests.pipelines.nodes as test_nodes
from actorstage.pipelines import Pipeline, parse_manifest
from actorstage.service import (
    ExecutePipelineRequest,
    ExecutePipelineResponse,
    ExecutionStatus,
    Item,
    PipelineOutput,
    PipelineService,
    PipelinesStub,
    PipelineStart,
    PipelineSummary,
    RunnerServer,
    ServiceConfig,
    StreamPipelineRequest,
    StreamPipelineResponse,
    open_service,
)
from tests.pipelines.helpers import manifest_doc, node, until
from tests.service.helpers import alive, serving_with

pytestmark = pytest.mark.anyio


def manifest(nodes: list[dict[str, Any]], connections: list[tuple[str, str]] | None = None,
             **settings: Any) -> str:
    if connections is None:
        connections = [(a["id"], b["id"]) for a, b in itertools.pairwise(nodes)]
    return json.dumps(manifest_doc(nodes, connections, **settings))


def numbers(*values: int) -> list[Item]:
    return [Item(json=str(value)) for value in values]


def serving(**settings: Any) -> AbstractAsyncContextManager[tuple[RunnerServer, PipelinesStub]]:
    return serving_with(PipelinesStub, **settings)


class Feed:
    """A StreamPipeline request stream the test writes to as it goes."""

    def __init__(self, first: StreamPipelineRequest) -> None:
        self.queue: asyncio.Queue[StreamPipelineRequest | None] = asyncio.Queue()
        self.queue.put_nowait(first)
        self.sent = 0  # messages the client has taken from us

    def put(self, *items: Item) -> None:
        self.queue.put_nowait(StreamPipelineRequest(inputs=list(items)))

    def close(self) -> None:
        self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[StreamPipelineRequest]:
        while (message := await self.queue.get()) is not None:
            self.sent += 1
            yield message


def value(output: PipelineOutput) -> Any:
    """An output's item: bytes as they are, JSON decoded."""
    item = output.item
    assert item is not None
    return item.data if item.data is not None else json.loads(item.json or "")


def values(response: StreamPipelineResponse | ExecutePipelineResponse) -> list[Any]:
    return [value(output) for output in response.outputs]


def summary_of(response: StreamPipelineResponse | ExecutePipelineResponse) -> PipelineSummary:
    assert response.summary is not None
    return response.summary


def pipelines_of(server: RunnerServer) -> PipelineService:
    assert server.pipelines is not None
    return server.pipelines


async def test_execute_pipeline_runs_native_and_process_nodes_to_the_same_outputs() -> None:
    outputs = {}
    async with serving() as (_server, stub):
        for executor in ("native", "process"):
            text = manifest([node("tag", "test.Tag", executor, tag="t"),
                             node("double", "test.Double", executor)])
            response = await stub.execute_pipeline(ExecutePipelineRequest(
                start=PipelineStart(manifest=text), inputs=numbers(1, 2, 3)))
            summary = summary_of(response)
            assert summary.status == ExecutionStatus.SUCCEEDED, summary.error
            assert summary.outputs == 3 and summary.name == "test"
            assert [(stats.node_id, stats.executor, stats.items_in, stats.items_out)
                    for stats in summary.nodes] == [("tag", executor, 3, 3),
                                                    ("double", executor, 3, 3)]
            outputs[executor] = [(output.node_id, value(output))
                                 for output in response.outputs]
    assert outputs["native"] == outputs["process"] == [
        ("double", {"source": "t", "value": value}) for value in (2, 4, 6)]


async def test_bytes_stay_bytes_both_ways_and_large_ones_cross_shared_memory() -> None:
    big = os.urandom(300_000)
    text = manifest([node("one", "IdentityNode", "process"),
                     node("two", "IdentityNode", "process")],
                    shared_memory_threshold_bytes=65536)
    async with serving() as (_server, stub):
        response = await stub.execute_pipeline(ExecutePipelineRequest(
            start=PipelineStart(manifest=text), inputs=[Item(data=big), Item(data=b"small")]))
    assert summary_of(response).status == ExecutionStatus.SUCCEEDED, response.summary
    assert values(response) == [big, b"small"]


async def test_stream_pipeline_sends_each_output_while_the_stream_is_still_open() -> None:
    text = manifest([node("tag", "test.Tag", "process", tag="s")])
    feed = Feed(StreamPipelineRequest(start=PipelineStart(manifest=text, session_id="s.1"),
                                      inputs=numbers(1)))
    seen: list[Any] = []
    async with serving() as (_server, stub):
        with anyio.fail_after(30):
            responses = stub.stream_pipeline(feed).__aiter__()
            started = (await anext(responses)).started
            assert started is not None and started.session_id == "s.1"
            assert started.name == "test" and set(started.pids) == {"tag"}
            for value in (2, 3, None):
                response = await anext(responses)
                seen.extend(values(response))
                # Only now does the next input go: each output came back on its own.
                if value is None:
                    feed.close()
                else:
                    feed.put(*numbers(value))
            summary = [response.summary async for response in responses]
    assert seen == [{"source": "s", "value": n} for n in (1, 2, 3)]
    assert len(summary) == 1 and summary[0] is not None
    assert summary[0].status == ExecutionStatus.SUCCEEDED and summary[0].outputs == 3
    assert not alive(started.pids["tag"])


async def test_a_failing_node_ends_the_stream_with_its_error_after_the_outputs_before_it(
) -> None:
    text = manifest([node("crash", "test.Crash", "process", on=3, raise_it=True)])
    request = [StreamPipelineRequest(start=PipelineStart(manifest=text),
                                     inputs=numbers(1, 2, 3, 4))]
    async with serving() as (_server, stub):
        responses = [response async for response in stub.stream_pipeline(request)]
    got = [value for response in responses for value in values(response)]
    summary = responses[-1].summary
    assert summary is not None and summary.status == ExecutionStatus.FAILED
    assert got == [1, 2]
    assert summary.error is not None
    assert "node 'crash' failed on its item 3: ValueError: cannot take 3" in \
        summary.error.message


async def test_continue_reports_the_failed_item_and_goes_on() -> None:
    text = manifest([node("crash", "test.Crash", on=2, raise_it=True)],
                    on_node_crash="continue")
    async with serving() as (_server, stub):
        response = await stub.execute_pipeline(ExecutePipelineRequest(
            start=PipelineStart(manifest=text), inputs=numbers(1, 2, 3)))
    summary = summary_of(response)
    assert summary.status == ExecutionStatus.SUCCEEDED
    assert values(response) == [1, 3]
    assert [(f.node_id, f.item_number, f.type_name) for f in summary.failures] == [
        ("crash", 2, "ValueError")]


async def test_bad_requests_are_refused_naming_every_problem_and_start_nothing() -> None:
    bad = json.dumps(manifest_doc([node("a", "NoSuchNode"), node("a", "IdentityNode")],
                                  [("a", "ghost")], channel_capacity=0))
    good = manifest([node("a", "IdentityNode")])
    async with serving() as (server, stub):
        cases = [
            (ExecutePipelineRequest(), "no `start`"),
            (ExecutePipelineRequest(start=PipelineStart(manifest=" ")), "manifest is empty"),
            (ExecutePipelineRequest(start=PipelineStart(manifest="nodes: [")), "not valid YAML"),
            (ExecutePipelineRequest(start=PipelineStart(manifest=good, session_id="a-b")),
             "session_id 'a-b' must be 1-64 letters, digits, _ or ."),
            (ExecutePipelineRequest(start=PipelineStart(manifest=good),
                                    inputs=[Item(json="1"), Item(json="{oops")]),
             "input 2 is not valid JSON"),
            (ExecutePipelineRequest(start=PipelineStart(manifest=good), inputs=[Item()]),
             "input 1 is empty"),
        ]
        for request, expected in cases:
            with pytest.raises(GRPCError) as caught:
                await stub.execute_pipeline(request)
            assert caught.value.status == Code.INVALID_ARGUMENT
            assert expected in str(caught.value.message), caught.value.message
        with pytest.raises(GRPCError) as caught:
            await stub.execute_pipeline(ExecutePipelineRequest(
                start=PipelineStart(manifest=bad)))
        message = str(caught.value.message)
        for problem in ("unknown node type 'NoSuchNode'", "duplicate node id 'a'",
                        "'ghost'", "channel_capacity"):
            assert problem in message, message
        with pytest.raises(GRPCError) as caught:
            [response async for response in stub.stream_pipeline([])]
        assert caught.value.status == Code.INVALID_ARGUMENT
        assert "ended before its first message" in str(caught.value.message)
        assert server.pipelines is not None and not pipelines_of(server).running
        assert server.metrics.pipelines is not None
        assert server.metrics.pipelines.ended == {}


async def test_a_bad_input_mid_stream_ends_the_session_keeping_the_outputs_before_it(
) -> None:
    text = manifest([node("same", "IdentityNode")])
    requests = [StreamPipelineRequest(start=PipelineStart(manifest=text), inputs=numbers(1)),
                StreamPipelineRequest(inputs=[Item(json="2"), Item(json="[")]),
                StreamPipelineRequest(inputs=numbers(4))]
    again = [StreamPipelineRequest(start=PipelineStart(manifest=text)),
             StreamPipelineRequest(start=PipelineStart(manifest=text))]
    async with serving() as (_server, stub):
        responses = [response async for response in stub.stream_pipeline(requests)]
        restarted = [response async for response in stub.stream_pipeline(again)]
    summary = responses[-1].summary
    assert summary is not None and summary.status == ExecutionStatus.FAILED
    assert summary.error is not None and summary.error.type_name == "InvalidArgument"
    assert summary.error.message.startswith("input 3 is not valid JSON")
    assert [value for response in responses for value in values(response)] == [1, 2]
    summary = restarted[-1].summary
    assert summary is not None and summary.error is not None
    assert summary.error.message == "message 2 carries `start`; only the first message of " \
                                    "a stream may"


async def test_a_setup_failure_is_a_failed_summary_and_leaves_no_process() -> None:
    text = manifest([node("slow", "test.SlowSetup", "process", seconds=30)],
                    init_timeout_secs=0.5)
    async with serving() as (_server, stub):
        responses = [response async for response in stub.stream_pipeline(
            [StreamPipelineRequest(start=PipelineStart(manifest=text))])]
    assert len(responses) == 1
    summary = responses[0].summary
    assert summary is not None and summary.status == ExecutionStatus.FAILED
    assert summary.error is not None and "slow" in summary.error.message
    assert "init_timeout_secs" in summary.error.message


async def test_cancelling_the_call_ends_the_session_and_its_processes() -> None:
    text = manifest([node("same", "IdentityNode", "process")])
    feed = Feed(StreamPipelineRequest(start=PipelineStart(manifest=text)))
    pids: dict[str, int] = {}
    started = asyncio.Event()

    async def call(stub: PipelinesStub) -> None:
        async for response in stub.stream_pipeline(feed):
            if response.started is not None:
                pids.update(response.started.pids)
                started.set()

    async with serving() as (server, stub):
        assert server.pipelines is not None and server.metrics.pipelines is not None
        task = asyncio.get_running_loop().create_task(call(stub))
        with anyio.fail_after(30):
            await started.wait()
        assert alive(pids["same"])
        task.cancel()  # the client goes away: grpclib resets the stream
        await asyncio.wait([task])
        await until(lambda: not pipelines_of(server).running)
        assert server.metrics.pipelines.ended == {"cancelled": 1}
    assert not alive(pids["same"])


async def test_stopping_the_server_cancels_running_sessions_with_a_summary_and_no_process(
) -> None:
    text = manifest([node("same", "IdentityNode", "process")])
    responses: list[StreamPipelineResponse] = []

    async def call(channel: Channel) -> None:
        async with channel.request("/actorstage.v1.Pipelines/StreamPipeline",
                                   Cardinality.STREAM_STREAM, StreamPipelineRequest,
                                   StreamPipelineResponse) as stream:
            await stream.send_message(StreamPipelineRequest(
                start=PipelineStart(manifest=text), inputs=numbers(7)))
            async for response in stream:
                responses.append(response)
                if response.summary is not None:
                    await stream.end()  # the server ended the call; grpclib wants our end too

    async with serving(grace=5) as (server, _stub):
        channel = Channel("127.0.0.1", server.port)
        try:
            task = asyncio.get_running_loop().create_task(call(channel))
            await until(lambda: any(response.outputs for response in responses))
            pid = responses[0].started.pids["same"]  # type: ignore[union-attr]
            with anyio.fail_after(30):
                await server.stop()
            with anyio.fail_after(10):
                await task
        finally:
            channel.close()
    summary = responses[-1].summary
    assert summary is not None and summary.status == ExecutionStatus.CANCELLED
    assert summary.error is not None and summary.error.message == "the service is stopping"
    assert [value for response in responses for value in values(response)] == [7]
    assert not alive(pid)


async def test_draining_lets_a_session_finish_and_refuses_new_ones() -> None:
    text = manifest([node("same", "IdentityNode", "process")])
    feed = Feed(StreamPipelineRequest(start=PipelineStart(manifest=text), inputs=numbers(1)))
    responses: list[StreamPipelineResponse] = []

    async def call(stub: PipelinesStub) -> None:
        async for response in stub.stream_pipeline(feed):
            responses.append(response)

    async with serving(grace=30, shutdown="drain") as (server, stub):
        loop = asyncio.get_running_loop()
        task = loop.create_task(call(stub))
        await until(lambda: any(response.outputs for response in responses))
        stopping = loop.create_task(server.stop())
        assert server.pipelines is not None
        await until(lambda: not pipelines_of(server).accepting)
        with pytest.raises(GRPCError) as caught:
            await stub.execute_pipeline(ExecutePipelineRequest(
                start=PipelineStart(manifest=text)))
        assert caught.value.status == Code.UNAVAILABLE
        assert "shutting down" in str(caught.value.message)
        feed.put(*numbers(2))
        feed.close()
        with anyio.fail_after(30):
            await task
            await stopping
    summary = responses[-1].summary
    assert summary is not None and summary.status == ExecutionStatus.SUCCEEDED
    assert [value for response in responses for value in values(response)] == [1, 2]


async def test_a_full_pipeline_holds_the_client_back_through_the_stream() -> None:
    test_nodes.GATES["svc"] = gate = asyncio.Event()
    test_nodes.TAKEN.pop("svc", None)
    text = manifest([node("gate", "test.Gated", gate="svc")], channel_capacity=2)
    payload = b"x" * 262_144  # flow-control windows hold only a few of these
    sent = 0

    async def requests() -> AsyncIterator[StreamPipelineRequest]:
        nonlocal sent
        yield StreamPipelineRequest(start=PipelineStart(manifest=text))
        for _ in range(200):
            sent += 1
            yield StreamPipelineRequest(inputs=[Item(data=payload)])

    async with serving() as (server, stub):
        received = 0

        async def call() -> None:
            nonlocal received
            async for response in stub.stream_pipeline(requests()):
                received += len(response.outputs)

        task = asyncio.get_running_loop().create_task(call())
        await until(lambda: test_nodes.TAKEN.get("svc") == 1)
        await asyncio.sleep(0.5)  # time for a client that is not held back to send it all
        held = sent
        assert server.metrics.pipelines is not None
        text_metrics = server.metrics.render()
        gate.set()
        with anyio.fail_after(30):
            await task
    assert held < 60, f"the client sent {held} of 200 items into a stalled pipeline"
    assert received == 200
    assert 'actorstage_pipeline_node_queue_depth{pipeline="test",node="gate"} 2' in \
        text_metrics


async def test_metrics_count_items_per_node_and_latency() -> None:
    text = manifest([node("tag", "test.Tag", tag="m"), node("double", "test.Double")])
    async with serving() as (server, stub):
        for _ in range(2):
            await stub.execute_pipeline(ExecutePipelineRequest(
                start=PipelineStart(manifest=text), inputs=numbers(1, 2, 3)))
        rendered = server.metrics.render()
    for line in ('actorstage_pipeline_sessions_total{status="succeeded"} 2',
                 "actorstage_pipeline_sessions_active 0",
                 "actorstage_pipeline_outputs_total 6",
                 'actorstage_pipeline_node_items_in_total{pipeline="test",node="tag"} 6',
                 'actorstage_pipeline_node_items_out_total{pipeline="test",node="double"} 6',
                 'actorstage_pipeline_node_latency_seconds_count{pipeline="test",node="tag"} 6'):
        assert line in rendered.splitlines(), line
    assert 'actorstage_pipeline_node_latency_seconds_sum{pipeline="test",node="double"} ' \
        in rendered


async def test_session_limits_and_ids_in_use_are_refused() -> None:
    test_nodes.GATES["limit"] = gate = asyncio.Event()
    text = manifest([node("gate", "test.Gated", gate="limit")])
    async with serving(max_pipeline_sessions=1) as (server, stub):
        feed = Feed(StreamPipelineRequest(start=PipelineStart(manifest=text, session_id="one"),
                                          inputs=numbers(1)))
        async def call() -> None:
            async for _response in stub.stream_pipeline(feed):
                pass

        task = asyncio.get_running_loop().create_task(call())
        assert server.pipelines is not None
        await until(lambda: "one" in pipelines_of(server).running)
        for session_id, code in (("one", Code.ALREADY_EXISTS), ("", Code.RESOURCE_EXHAUSTED)):
            with pytest.raises(GRPCError) as caught:
                await stub.execute_pipeline(ExecutePipelineRequest(
                    start=PipelineStart(manifest=text, session_id=session_id)))
            assert caught.value.status == code, caught.value.message
        gate.set()
        feed.close()
        await task
        await until(lambda: not pipelines_of(server).running)
        response = await stub.execute_pipeline(ExecutePipelineRequest(
            start=PipelineStart(manifest=text, session_id="one"), inputs=numbers(5)))
        assert summary_of(response).status == ExecutionStatus.SUCCEEDED


async def test_pipelines_share_the_runners_token_and_health() -> None:
    text = manifest([node("same", "IdentityNode")])
    async with open_service(ServiceConfig(port=0, token="sesame")) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            stub = PipelinesStub(channel)
            with pytest.raises(GRPCError) as caught:
                await stub.execute_pipeline(ExecutePipelineRequest(
                    start=PipelineStart(manifest=text)))
            assert caught.value.status == Code.UNAUTHENTICATED
            response = await stub.execute_pipeline(
                ExecutePipelineRequest(start=PipelineStart(manifest=text), inputs=numbers(1)),
                metadata={"authorization": "Bearer sesame"})
            assert summary_of(response).status == ExecutionStatus.SUCCEEDED
            health = await HealthStub(channel).Check(
                HealthCheckRequest(service="actorstage.v1.Pipelines"))
            assert health.status == HealthCheckResponse.SERVING
        finally:
            channel.close()


async def test_the_runtime_file_sets_defaults_under_every_manifest(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime.toml"
    runtime.write_text('channel_capacity = 3\nimports = ["tests.pipelines.nodes"]\n')
    text = manifest([node("tag", "test.Tag", tag="r")])
    async with serving(pipeline_runtime=str(runtime)) as (server, stub):
        assert server.pipelines is not None and server.pipelines.runtime is not None
        assert server.pipelines.runtime.channel_capacity == 3
        pipeline = Pipeline(parse_manifest(text), runtime=server.pipelines.runtime)
        assert pipeline.plan.settings.sources["channel_capacity"] == "runtime.toml"
        response = await stub.execute_pipeline(ExecutePipelineRequest(
            start=PipelineStart(manifest=text), inputs=numbers(4)))
    assert summary_of(response).status == ExecutionStatus.SUCCEEDED
