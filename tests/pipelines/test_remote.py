"""RemotePipelineNode: a nested manifest run on another server over RemoteMedia's streaming
protocol (the server here is actorstage's own service, on a loopback port)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from actorstage.pipelines import ManifestError, PipelineError
from actorstage.service import ServiceConfig, open_service
from tests.pipelines import nodes as test_nodes
from tests.pipelines.helpers import node, pipeline

pytestmark = pytest.mark.anyio

NESTED = {"version": "v1", "metadata": {"name": "nested"},
          "nodes": [{"id": "double", "node_type": "test.Double", "params": {}},
                    {"id": "tick", "node_type": "test.Ticker", "params": {}}],
          "connections": [{"from": "double", "to": "tick"}]}


@pytest.fixture
async def server() -> AsyncIterator[Any]:
    assert "Ticker" in dir(test_nodes)  # (registered here: the server knows the nested types)
    async with open_service(ServiceConfig(port=0, token="remote-token")) as served:
        yield served


def remote(port: int, **params: Any) -> dict[str, Any]:
    return node("far", "RemotePipelineNode", endpoint=f"127.0.0.1:{port}", manifest=NESTED,
                auth_token="remote-token", timeout_ms=10_000, **params)


async def test_items_go_through_the_nested_pipeline_on_the_other_server_in_order(
        server: Any) -> None:
    pipe = pipeline([node("near", "PassThrough"), remote(server.port)], [("near", "far")])
    result = await pipe.run([1, 2, 0, 3])
    assert [output.item for output in result.outputs] == [
        *range(2), *range(4), *range(6)]  # each doubled, then ticked, on the far server
    assert result.nodes["far"].items_in == 4


async def test_a_refused_nested_manifest_or_no_server_fails_the_start_clearly(
        server: Any) -> None:
    bad = dict(NESTED, nodes=[{"id": "x", "node_type": "NoSuchType", "params": {}}])
    refused = pipeline([node("far", "RemotePipelineNode", endpoint=f"127.0.0.1:{server.port}",
                             manifest=bad, auth_token="remote-token")])
    with pytest.raises(PipelineError, match=r"refused the manifest.*NoSuchType"):
        await refused.run([1])
    nobody = pipeline([node("far", "RemotePipelineNode", endpoint="127.0.0.1:1",
                            manifest=NESTED, retry={"max_retries": 1, "backoff_ms": 10})])
    with pytest.raises(PipelineError, match=r"no remote pipeline server answered at "
                                            r"127\.0\.0\.1:1 after 2 attempts"):
        await nobody.run([1])
    with pytest.raises(ManifestError, match="transport 'webrtc' is not supported"):
        pipeline([node("far", "RemotePipelineNode", endpoint="127.0.0.1:1",
                       transport="webrtc", manifest=NESTED)])  # refused before it runs


async def test_a_remote_node_failure_fails_the_local_session(server: Any) -> None:
    crashing = dict(NESTED, nodes=[{"id": "c", "node_type": "test.Crash",
                                    "params": {"on": 2, "raise_it": True}}], connections=[])
    pipe = pipeline([node("far", "RemotePipelineNode", endpoint=f"127.0.0.1:{server.port}",
                          manifest=crashing, auth_token="remote-token")])
    with pytest.raises(PipelineError, match=r"remote pipeline failed.*cannot take 2"):
        await pipe.run([1, 2, 3])
