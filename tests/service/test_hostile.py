"""Hostile requests to the service: every answer is a clear gRPC error, never UNKNOWN, and
other clients are served meanwhile."""

from __future__ import annotations

import anyio
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.const import Status as Code
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorstage.service import ExecutePipelineRequest as PipelineRequest
from actorstage.service import ExecuteRequest, PipelinesStub, PipelineStart
from actorstage.transport._codec import RawCodec
from tests.service.helpers import SHORT, run, serving
from tests.test_documents import BOMB, DEEP_JSON

pytestmark = pytest.mark.anyio

# What a server may answer to a malformed request: never UNKNOWN or INTERNAL.
CLEAR = {Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED, Code.NOT_FOUND, Code.ALREADY_EXISTS,
         Code.FAILED_PRECONDITION, Code.UNIMPLEMENTED}


async def _raw_call(channel: Channel, method: str, body: bytes) -> None:
    async with channel.request(method, Cardinality.UNARY_UNARY, bytes, bytes) as stream:
        await stream.send_message(body, end=True)
        await stream.recv_message()


@pytest.mark.parametrize(("workflow", "reason"), [
    (DEEP_JSON, "more than 64 deep"),
    ("[" * 50_000, "more than 64 deep"),
    (BOMB, "through its aliases"),
])
async def test_hostile_definitions_are_invalid_argument_while_others_are_served(
    workflow: str, reason: str,
) -> None:
    async with serving() as (_server, stub), anyio.create_task_group() as tasks:
        async def hostile() -> None:
            with pytest.raises(GRPCError) as caught:
                await stub.execute_async(ExecuteRequest(execution_id="bad", workflow=workflow))
            assert caught.value.status is Code.INVALID_ARGUMENT
            assert reason in str(caught.value.message)

        tasks.start_soon(hostile)
        with anyio.fail_after(5):
            events = await run(stub, ExecuteRequest(execution_id="good", workflow=SHORT))
        assert events[-1].kind == "workflow_finished"


async def test_a_hostile_manifest_is_invalid_argument() -> None:
    async with serving() as (_server, stub):
        pipelines = PipelinesStub(stub.channel)
        for manifest, reason in ((BOMB, "aliases"), (DEEP_JSON, "more than 64 deep")):
            with pytest.raises(GRPCError) as caught:
                await pipelines.execute_pipeline(PipelineRequest(
                    start=PipelineStart(manifest=manifest)))
            assert caught.value.status is Code.INVALID_ARGUMENT
            assert reason in str(caught.value.message)


async def test_a_string_that_is_not_utf8_is_invalid_argument_naming_the_encoding() -> None:
    async with serving() as (server, _stub):
        good = bytes(ExecuteRequest(execution_id="x", workflow="id: a"))
        body = good.replace(b"id: a", b"id: \xff")
        channel = Channel("127.0.0.1", server.port, codec=RawCodec())
        try:
            with pytest.raises(GRPCError) as caught:
                await _raw_call(channel, "/actorstage.v1.Runner/ExecuteAsync", body)
        finally:
            channel.close()
        assert caught.value.status is Code.INVALID_ARGUMENT
        assert "not UTF-8" in str(caught.value.message)


_METHODS = ["/actorstage.v1.Runner/ExecuteAsync", "/actorstage.v1.Runner/GetExecution",
            "/actorstage.v1.Runner/ListExecutions", "/actorstage.v1.Runner/CancelExecution",
            "/actorstage.v1.Runner/PauseExecution", "/actorstage.v1.Pipelines/ExecutePipeline"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_METHODS), st.binary(max_size=300)),
                min_size=1, max_size=5))
async def test_fuzzed_rpc_requests_get_a_clear_answer(calls: list[tuple[str, bytes]]) -> None:
    async with serving() as (server, _stub):
        channel = Channel("127.0.0.1", server.port, codec=RawCodec())
        try:
            for method, body in calls:
                try:
                    with anyio.fail_after(10):
                        await _raw_call(channel, method, body)
                except GRPCError as exc:
                    assert exc.status in CLEAR, (method, body, exc.status, exc.message)  # noqa: PT017
        finally:
            channel.close()
