"""``RemotePipelineNode``: a nested manifest run on another server, over RemoteMedia's
streaming protocol (``remotemedia.v1.StreamingPipelineService``).

One stream per session: ``setup`` opens it (``init`` with the nested manifest,
then ``ready``); each item goes as a ``DataChunk`` to the nested pipeline's
root; what comes back (each ``ChunkResult``'s output) is given on by the
node. ``process`` waits for the results of its own chunk as long as the
server's ``max_buffer_latency_ms`` (the protocol's promise of how long an
output may lag), then gives on every result that has arrived, in order; the
rest come at the end (``flush`` sends CLOSE and gives all until ``closed``).
The server can be another ``actorstage serve`` or a RemoteMedia server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from contextlib import AsyncExitStack
from typing import Any

import msgspec
from grpclib.client import Channel
from grpclib.const import Cardinality

from actorstage._betterproto import betterproto2
from actorstage.pipelines._registry import Node, each, register_node

__all__ = ["RemotePipelineNode"]

ROUTE = "/remotemedia.v1.StreamingPipelineService/StreamPipeline"


class _Retry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_retries: int = 3
    backoff_ms: int = 1000


class _RemoteParams(msgspec.Struct, frozen=True):
    """RemoteMedia's ``RemotePipelineConfig`` (keys it has and actorstage does not use,
    such as ``circuit_breaker`` or ``health_check``, are accepted)."""

    transport: str = "grpc"
    endpoint: str | None = None
    endpoints: list[str] | None = None
    manifest: dict[str, Any] | None = None
    manifest_url: str | None = None
    pipeline_name: str | None = None
    timeout_ms: int = 30_000
    retry: _Retry | None = None
    auth_token: str | None = None
    metadata: dict[str, str] | None = None
    input_node: str | None = None  # the nested root that takes the items (default: the first)
    circuit_breaker: Any = None
    load_balance_strategy: Any = None
    health_check: Any = None
    manifest_endpoint: Any = None
    auth_header: Any = None

    def __post_init__(self) -> None:
        if self.transport != "grpc":
            raise ValueError(f"transport {self.transport!r} is not supported here: only "
                             "'grpc' (RemoteMedia's streaming gRPC protocol)")
        if not (self.endpoint or self.endpoints):
            raise ValueError("give `endpoint` (HOST:PORT) or `endpoints`")
        if self.manifest is None:
            which = "manifest_url" if self.manifest_url else "pipeline_name" if \
                self.pipeline_name else None
            raise ValueError(f"{which} is not supported here: give the nested pipeline "
                             "inline as `manifest`" if which else "give the nested pipeline "
                             "as `manifest`")
        if not 1 <= self.timeout_ms <= 3_600_000:
            raise ValueError(f"timeout_ms must be between 1 and 3600000, got {self.timeout_ms}")


def _address(endpoint: str) -> tuple[str, int]:
    text = endpoint.split("://", 1)[-1].rstrip("/")
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise ValueError(f"an endpoint is HOST:PORT, got {endpoint!r}")
    return host.strip("[]"), int(port)


def proto_manifest(manifest: dict[str, Any]) -> Any:
    """RemoteMedia's JSON manifest as its ``PipelineManifest`` message."""
    from actorstage._proto.remotemedia.v1 import (
        Connection,
        ManifestMetadata,
        NodeManifest,
        PipelineManifest,
    )

    metadata = manifest.get("metadata") or {}
    return PipelineManifest(
        version=str(manifest.get("version", "v1")),
        metadata=ManifestMetadata(name=str(metadata.get("name", "")),
                                  description=str(metadata.get("description", ""))),
        nodes=[NodeManifest(id=str(node.get("id", "")),
                            node_type=str(node.get("node_type", "")),
                            params=json.dumps(node.get("params") or {}))
               for node in manifest.get("nodes") or []],
        connections=[Connection(from_=str(link.get("from", "")), to=str(link.get("to", "")))
                     for link in manifest.get("connections") or []])


@register_node("RemotePipelineNode")
class RemotePipelineNode(Node):
    """Runs ``manifest`` on the server at ``endpoint`` (the first of ``endpoints`` that
    answers), streaming; see the module's description."""

    Params = _RemoteParams

    async def setup(self) -> None:
        from actorstage._proto.remotemedia.v1 import StreamInit, StreamRequest, StreamResponse

        params = self.params
        manifest = params.manifest
        targets = {link.get("to") for link in manifest.get("connections") or []}
        roots = [node.get("id") for node in manifest.get("nodes") or []
                 if node.get("id") not in targets]
        self.root = params.input_node or (roots[0] if roots else "")
        self.results: asyncio.Queue[Any] = asyncio.Queue()
        self.sequence = 0
        self.latency = 0.1
        self.closed = asyncio.Event()
        self.problem: str | None = None
        endpoints = params.endpoints or [params.endpoint]
        retry = params.retry or _Retry()
        metadata = dict(params.metadata or {})
        if params.auth_token:
            metadata["authorization"] = f"Bearer {params.auth_token}"
        last: BaseException | None = None
        for attempt in range(retry.max_retries + 1):
            for endpoint in endpoints:
                host, port = _address(str(endpoint))
                exits = AsyncExitStack()
                channel = Channel(host, port)
                exits.callback(channel.close)
                try:
                    self.stream = await exits.enter_async_context(channel.request(
                        ROUTE, Cardinality.STREAM_STREAM, StreamRequest, StreamResponse,
                        metadata=metadata))
                    await self.stream.send_request()
                    await self.stream.send_message(StreamRequest(init=StreamInit(
                        manifest=proto_manifest(manifest), client_version="v1")))
                    first = await asyncio.wait_for(self.stream.recv_message(),
                                                   params.timeout_ms / 1000)
                except Exception as exc:  # not reachable, or refused: the next one
                    last = exc
                    with contextlib.suppress(Exception):
                        await exits.aclose()
                    continue
                kind, found = betterproto2.which_one_of(first, "response") if first else (
                    "", None)
                body: Any = found
                if kind != "ready":
                    with contextlib.suppress(Exception):
                        await exits.aclose()
                    if kind == "error":
                        raise RuntimeError(f"the remote pipeline at {endpoint} refused the "
                                           f"manifest: {body.message}")
                    raise RuntimeError(f"the server at {endpoint} did not answer `ready` "
                                       f"but {kind or 'nothing'}")
                self.exits = exits
                self.latency = (body.max_buffer_latency_ms or 100) / 1000
                self.reader = asyncio.get_running_loop().create_task(self._read())
                return
            if attempt < retry.max_retries:
                await asyncio.sleep(retry.backoff_ms / 1000 * 2 ** attempt)
        raise ConnectionError(f"no remote pipeline server answered at {', '.join(endpoints)} "
                              f"after {retry.max_retries + 1} attempts: {last}")

    async def _read(self) -> None:
        from actorstage.service._remotemedia import BadBuffer, from_buffer

        try:
            async for response in self.stream:
                kind, found = betterproto2.which_one_of(response, "response")
                body: Any = found
                if kind == "result":
                    for node_id, buffer in body.data_outputs.items():
                        try:
                            item = from_buffer(buffer, f"the output of remote node {node_id!r}")
                        except BadBuffer as exc:
                            self.problem = str(exc)
                            break
                        await self.results.put((body.sequence, item))
                elif kind == "error":
                    self.problem = f"the remote pipeline failed: {body.message}"
                    break
                elif kind == "closed":
                    break
        except Exception as exc:
            self.problem = f"the remote pipeline's stream broke: {exc}"
        finally:
            self.closed.set()
            await self.results.put(None)  # wakes a waiter

    def _given(self) -> list[Any]:
        out = []
        while not self.results.empty():
            entry = self.results.get_nowait()
            if entry is not None:
                out.append(entry[1])
        return out

    async def process(self, item: Any) -> Any:
        from actorstage._proto.remotemedia.v1 import DataChunk, StreamRequest
        from actorstage.service._remotemedia import to_buffer

        if self.problem is not None:
            raise RuntimeError(self.problem)
        sequence = self.sequence
        self.sequence += 1
        await self.stream.send_message(StreamRequest(data_chunk=DataChunk(
            node_id=self.root, buffer=to_buffer(item), sequence=sequence)))
        deadline = time.monotonic() + self.latency
        out: list[Any] = []
        while True:  # this chunk's results, for as long as the server may hold them
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                entry = await asyncio.wait_for(self.results.get(), left)
            except TimeoutError:
                break
            if entry is None:
                break
            out.append(entry[1])
            if entry[0] >= sequence:
                break
        out += self._given()
        if self.problem is not None and not out:
            raise RuntimeError(self.problem)
        return each(out) if out else None

    async def flush(self) -> Any:
        from actorstage._proto.remotemedia.v1 import (
            StreamControl,
            StreamControlCommand,
            StreamRequest,
        )

        if not self.closed.is_set():
            await self.stream.send_message(StreamRequest(control=StreamControl(
                command=StreamControlCommand.CLOSE)))
            await asyncio.wait_for(self.closed.wait(), self.params.timeout_ms / 1000)
        out = self._given()
        if self.problem is not None:
            raise RuntimeError(self.problem)
        return each(out) if out else None

    async def teardown(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        exits = getattr(self, "exits", None)
        if exits is not None:
            with contextlib.suppress(Exception):
                await exits.aclose()


