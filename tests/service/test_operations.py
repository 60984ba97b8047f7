"""Tokens, TLS, health, reflection and metrics of the runner service."""

from __future__ import annotations

import datetime
import ssl
import urllib.request
from pathlib import Path

import anyio
import pytest
from google.protobuf import descriptor_pb2
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status as Code
from grpclib.exceptions import StreamTerminatedError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest
from prometheus_client.parser import text_string_to_metric_families

from actorstage.service import (
    ExecuteRequest,
    ExecutionStatus,
    ListActionsRequest,
    RunnerStub,
    ServiceConfig,
    open_service,
)
from tests.certificates import self_signed
from tests.service.helpers import SHORT, run, serving, workflow

pytestmark = pytest.mark.anyio


STIGMER = "ai.stigmer.agentic.workflowrunner.v1.WorkflowRunnerServiceController"


async def test_a_token_is_required_when_configured_but_not_for_health() -> None:
    async with serving(token="s3cret") as (server, stub):
        for metadata, text in [(None, "missing credentials"),
                               ({"authorization": "Bearer wrong"}, "wrong token"),
                               ({"authorization": "s3cret"}, "wrong token")]:
            with pytest.raises(GRPCError) as caught:
                await stub.list_actions(ListActionsRequest(), metadata=metadata)
            assert caught.value.status == Code.UNAUTHENTICATED
            assert text in str(caught.value.message)
        with pytest.raises(GRPCError) as caught:
            await run(stub, ExecuteRequest(workflow=SHORT))
        assert caught.value.status == Code.UNAUTHENTICATED
        good = {"authorization": "Bearer s3cret"}
        events = await run(stub, ExecuteRequest(workflow=SHORT), metadata=good)
        assert events[-1].status == ExecutionStatus.SUCCEEDED
        async with Channel("127.0.0.1", server.port) as channel:
            health = await HealthStub(channel).Check(HealthCheckRequest(service=""))
            assert health.status == HealthCheckResponse.SERVING
            for name in ("actorstage.v1.Runner", STIGMER):  # each service by its name too
                health = await HealthStub(channel).Check(HealthCheckRequest(service=name))
                assert health.status == HealthCheckResponse.SERVING


def _certificate(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: (cert file, key file)."""
    cert, key = self_signed("127.0.0.1", lifetime=datetime.timedelta(hours=1), ip="127.0.0.1")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    return str(cert_file), str(key_file)


async def test_tls_serves_clients_that_trust_the_certificate(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    config = ServiceConfig(port=0, tls_cert=cert, tls_key=key, token="t")
    async with open_service(config) as server:
        context = ssl.create_default_context(cafile=cert)
        context.set_alpn_protocols(["h2"])
        async with Channel("127.0.0.1", server.port, ssl=context) as channel:
            events = await run(RunnerStub(channel), ExecuteRequest(workflow=SHORT),
                               metadata={"authorization": "Bearer t"})
            assert events[-1].status == ExecutionStatus.SUCCEEDED
        async with Channel("127.0.0.1", server.port) as plain:  # no TLS: refused
            with pytest.raises((StreamTerminatedError, GRPCError, OSError)):
                with anyio.fail_after(5):
                    await RunnerStub(plain).list_actions(ListActionsRequest())


async def test_reflection_describes_the_runner_service() -> None:
    async with serving() as (server, _):
        async with (Channel("127.0.0.1", server.port) as channel,
                    ServerReflectionStub(channel).ServerReflectionInfo.open() as stream):
                await stream.send_message(ServerReflectionRequest(list_services=""))
                listed = await stream.recv_message()
                assert listed is not None
                names = {service.name for service in listed.list_services_response.service}
                assert {"actorstage.v1.Runner", "grpc.health.v1.Health", STIGMER} <= names
                await stream.send_message(ServerReflectionRequest(
                    file_containing_symbol="actorstage.v1.Runner"))
                found = await stream.recv_message()
                await stream.end()
        assert found is not None
        files = [descriptor_pb2.FileDescriptorProto.FromString(data) for data in
                 found.file_descriptor_response.file_descriptor_proto]
        runner = next(service for file in files for service in file.service
                      if service.name == "Runner")
        assert {method.name for method in runner.method} == {
            "Execute", "ExecuteAsync", "CancelExecution", "PauseExecution", "ResumeExecution",
            "GetExecution", "ListExecutions", "WatchExecution", "ListActions"}


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_metrics_count_executions_by_status_and_time_them() -> None:
    async with serving(metrics_port=0) as (server, stub):
        assert server.metrics_port is not None
        await run(stub, ExecuteRequest(workflow=SHORT))
        await run(stub, ExecuteRequest(workflow=workflow(("x", "fail", {}))))
        await stub.execute_async(ExecuteRequest(execution_id="slow", workflow=workflow(
            ("nap", "sleep", {"seconds": 60}))))
        samples = await anyio.to_thread.run_sync(_scrape, server.metrics_port)
        assert samples["actorstage_executions_active"] == 1
        assert samples["actorstage_executions_total{status=succeeded}"] == 1
        assert samples["actorstage_executions_total{status=failed}"] == 1
        assert samples["actorstage_executions_total{status=cancelled}"] == 0
        assert samples["actorstage_execution_duration_seconds_count"] == 2
        assert samples["actorstage_execution_duration_seconds_bucket{le=+Inf}"] == 2
        assert samples["actorstage_callback_failures_total"] == 0
        with pytest.raises(urllib.error.HTTPError) as caught:
            await anyio.to_thread.run_sync(
                urllib.request.urlopen, f"http://127.0.0.1:{server.metrics_port}/other")
        assert caught.value.code == 404
        caught.value.close()
    # Stopping cancelled the slow one (the default shutdown); the count shows it.
    assert server.metrics.ended == {"succeeded": 1, "failed": 1, "cancelled": 1}
