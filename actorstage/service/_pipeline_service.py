"""The ``actorstage.v1.Pipelines`` gRPC service: pipeline manifests run over gRPC.

Each call runs one ``PipelineSession`` in the server's actor system. A
request that cannot start (a bad manifest, a bad input, a session id in
use) is refused with INVALID_ARGUMENT or ALREADY_EXISTS and starts nothing;
a session that started ends with a summary whose status says how it ended,
after every output it produced: a failure mid-stream loses no output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import msgspec
from grpclib import GRPCError
from grpclib.const import Status as Code

from actorstage._documents import DocumentError, load, off_loop
from actorstage._proto.actorstage.v1 import (
    ErrorInfo,
    ExecutePipelineRequest,
    ExecutePipelineResponse,
    ExecutionStatus,
    Item,
    PipelineItemFailure,
    PipelineNodeStats,
    PipelineOutput,
    PipelinesBase,
    PipelineStart,
    PipelineStarted,
    PipelineSummary,
    StreamPipelineRequest,
    StreamPipelineResponse,
)
from actorstage.actors._system import ActorSystem
from actorstage.pipelines._config import RuntimeConfig
from actorstage.pipelines._manifest import ManifestError, parse_manifest
from actorstage.pipelines._pipeline import Pipeline
from actorstage.pipelines._session import (
    Output,
    PipelineError,
    PipelineSession,
    valid_session_id,
)
from actorstage.service._metrics import PipelineMetrics

__all__ = ["PipelineService"]

log = logging.getLogger("actorstage.service.pipelines")


def _invalid(message: str) -> GRPCError:
    return GRPCError(Code.INVALID_ARGUMENT, message)


class BadInput(ValueError):
    """An input item the pipeline cannot be given."""


def decode_item(item: Item, number: int) -> Any:
    """The Python value of input ``number`` (1-based): JSON decoded, or bytes as they are."""
    if item.data is not None:
        return item.data
    if item.json is None:
        raise BadInput(f"input {number} is empty: set Item.json (JSON text) or Item.data "
                       "(bytes)")
    try:
        return load(item.json, "json", f"input {number}")
    except DocumentError as exc:
        raise BadInput(str(exc)) from None


def _manifest_size(start: PipelineStart | None) -> int:
    return len(start.manifest) if start is not None else 0


def encode_output(output: Output) -> PipelineOutput:
    """``output`` as the wire sees it: bytes stay bytes, anything else becomes JSON."""
    value = output.item
    if type(value) is bytes:
        return PipelineOutput(node_id=output.node_id, item=Item(data=value))
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, ValueError) as exc:
        raise PipelineError(
            f"node {output.node_id!r} produced a {type(value).__name__} that cannot be sent "
            f"as JSON ({exc}); have the pipeline's leaves emit bytes, JSON-like values or "
            "msgspec Structs") from None
    return PipelineOutput(node_id=output.node_id, item=Item(json=text))


class _Running:
    """A session the service runs, and why the service ended it, if it did."""

    def __init__(self, session: PipelineSession) -> None:
        self.session = session
        self.started = False  # every node was set up
        self.cancelled: str | None = None  # the reason, when the service cancelled it
        self.problem: str | None = None  # a bad input that ended it
        self.error: BaseException | None = None  # how it ended, when not well


class PipelineService(PipelinesBase):
    """Serves ``actorstage.v1.Pipelines`` in ``system``.

    Args:
        system: where sessions' actors live (node processes are its children).
        runtime: the service-wide defaults under every manifest (``runtime.toml``).
        metrics: items per node, queue depths and node latency.
        max_sessions: sessions that may run at once; more are refused
            with RESOURCE_EXHAUSTED.
    """

    def __init__(self, system: ActorSystem, *, runtime: RuntimeConfig | None = None,
                 metrics: PipelineMetrics | None = None, max_sessions: int = 16) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions!r}")
        self.system = system
        self.runtime = runtime
        self.metrics = metrics or PipelineMetrics()
        self.max_sessions = max_sessions
        self.accepting = True
        self.running: dict[str, _Running] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # -- the RPCs ------------------------------------------------------------------------

    async def execute_pipeline(self, message: ExecutePipelineRequest) -> ExecutePipelineResponse:
        pipeline, session_id = await off_loop(_manifest_size(message.start), self._pipeline,
                                              message.start)
        try:
            inputs = [decode_item(item, number)
                      for number, item in enumerate(message.inputs, 1)]
        except BadInput as exc:
            raise _invalid(str(exc)) from None
        outputs: list[PipelineOutput] = []
        async with self.running_session(pipeline, session_id) as running:
            if running.started:
                session = running.session
                feeder = asyncio.get_running_loop().create_task(session.feed(inputs))
                try:
                    async for batch in self._outputs(running):
                        outputs.extend(batch)
                finally:
                    feeder.cancel()
                    await asyncio.wait([feeder])
        return ExecutePipelineResponse(outputs=outputs,
                                       summary=self._summary(running, len(outputs)))

    async def stream_pipeline(self, messages: AsyncIterator[StreamPipelineRequest]
                              ) -> AsyncIterator[StreamPipelineResponse]:
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            raise _invalid("the stream ended before its first message, which must carry "
                           "`start` (the manifest)") from None
        pipeline, session_id = await off_loop(_manifest_size(first.start), self._pipeline,
                                              first.start)
        sent = 0
        async with self.running_session(pipeline, session_id) as running:
            if running.started:
                session = running.session
                pids = {node_id: stats.pid for node_id, stats in session.stats().items()
                        if stats.pid}
                yield StreamPipelineResponse(started=PipelineStarted(
                    session_id=session.id, name=pipeline.name, pids=pids))
                reader = asyncio.get_running_loop().create_task(
                    self._read_inputs(running, first.inputs, messages))
                try:
                    async for batch in self._outputs(running):
                        sent += len(batch)
                        yield StreamPipelineResponse(outputs=batch)
                finally:
                    reader.cancel()
                    await asyncio.wait([reader])
        yield StreamPipelineResponse(summary=self._summary(running, sent))

    # -- sessions ------------------------------------------------------------------------

    def _pipeline(self, start: PipelineStart | None) -> tuple[Pipeline, str]:
        """The checked pipeline of a request, and the session id it asks for (may be empty)."""
        if start is None:
            raise _invalid("the request has no `start`: it must carry the manifest")
        text = start.manifest
        if not text.strip():
            raise _invalid("start.manifest is empty: give the manifest as JSON or YAML text")
        if start.session_id and not valid_session_id(start.session_id):
            raise _invalid(f"start.session_id {start.session_id!r} must be 1-64 letters, "
                           "digits, _ or .")
        try:
            manifest = parse_manifest(
                text, format="json" if text.lstrip().startswith("{") else "yaml")
            return Pipeline(manifest, runtime=self.runtime), start.session_id
        except ManifestError as exc:
            raise _invalid(str(exc)) from None

    @asynccontextmanager
    async def running_session(self, pipeline: Pipeline, session_id: str = "", *,
                              origins: bool = False) -> AsyncIterator[_Running]:
        """A session, registered while it runs; not ``started`` when a node's setup failed.
        ``_summary`` then describes how it ended. (RemoteMedia's services run theirs here
        too, under the same limit and shutdown.)"""
        if not self.accepting:
            raise GRPCError(Code.UNAVAILABLE, "the service is shutting down: it starts no new "
                                              "pipeline sessions")
        if session_id in self.running:
            raise GRPCError(Code.ALREADY_EXISTS, f"session {session_id!r} is running; "
                                                 "use another id, or none")
        if len(self.running) >= self.max_sessions:
            raise GRPCError(Code.RESOURCE_EXHAUSTED, (
                f"{len(self.running)} pipeline sessions are running, the most this service "
                f"allows (max_pipeline_sessions); retry later"))
        session = pipeline.session(self.system, session_id=session_id or None,
                                   origins=origins)
        running = _Running(session)
        self.running[session.id] = running
        self._idle.clear()
        self.metrics.started(session)
        log.info("pipeline %r session %s starting", pipeline.name, session.id)
        try:
            async with AsyncExitStack() as stack:
                try:
                    await stack.enter_async_context(session)
                    running.started = True
                except PipelineError as exc:  # a node's setup failed or timed out
                    running.error = exc
                yield running
        except BaseException as exc:
            running.error = running.error or exc
            raise
        finally:
            running.error = running.error or session.error
            self._end(running)

    def _end(self, running: _Running) -> None:
        session, error = running.session, running.error
        self.running.pop(session.id, None)
        if not self.running:
            self._idle.set()
        status = self._status(running, error)
        self.metrics.finished(session, status.name.lower())
        log.info("pipeline %r session %s ended %s%s", session.plan.name, session.id,
                 status.name.lower(), f": {error}" if error is not None else "")

    def _status(self, running: _Running, error: BaseException | None) -> ExecutionStatus:
        if error is None:
            return ExecutionStatus.SUCCEEDED
        if running.cancelled is not None or isinstance(error, asyncio.CancelledError):
            return ExecutionStatus.CANCELLED
        return ExecutionStatus.FAILED

    def _summary(self, running: _Running, outputs: int) -> PipelineSummary:
        """How ``running`` ended, once it has."""
        session, error = running.session, running.error
        summary = PipelineSummary(
            session_id=session.id, name=session.plan.name, status=self._status(running, error),
            duration=session.duration or time.monotonic() - session.started_at,
            outputs=outputs, nodes=[_node_stats(stats) for stats in session.stats().values()],
            failures=[PipelineItemFailure(
                node_id=failure.node_id, item_number=failure.item_number,
                type_name=failure.type_name, message=failure.message,
                traceback=failure.traceback) for failure in session.failures])
        if error is not None:
            if running.problem is not None:
                summary.error = ErrorInfo(type_name="InvalidArgument", message=running.problem)
            else:
                summary.error = ErrorInfo(type_name=type(error).__name__,
                                          message=str(error) or "cancelled")
        return summary

    async def _outputs(self, running: _Running) -> AsyncIterator[list[PipelineOutput]]:
        """The session's outputs, encoded; ends quietly when the session fails (its error is
        in the summary)."""
        session = running.session
        try:
            async for batch in session.output_batches():
                try:
                    encoded = [encode_output(output) for output in batch]
                except PipelineError as exc:
                    session.fail(exc)
                    break
                self.metrics.outputs(len(encoded))
                yield encoded
        except PipelineError:
            return

    async def _read_inputs(self, running: _Running, first: Iterable[Item],
                           messages: AsyncIterator[StreamPipelineRequest]) -> None:
        """Feed the stream's inputs to the session; reading only as fast as it takes them is
        what holds a fast client back.

        A bad input ends the input there: what came before it runs to the end and its
        outputs are sent, then the summary fails naming it.
        """
        session = running.session
        number = 0

        async def send(items: Iterable[Item]) -> None:
            nonlocal number
            values: list[Any] = []
            bad = None
            for item in items:
                try:
                    values.append(decode_item(item, number + len(values) + 1))
                except BadInput as exc:
                    bad = exc
                    break
            number += len(values)
            await session.send_all(values)
            if bad is not None:
                raise bad

        try:
            await send(first)
            count = 1
            async for message in messages:
                count += 1
                if message.start is not None:
                    raise BadInput(f"message {count} carries `start`; only the first "
                                   "message of a stream may")
                await send(message.inputs)
        except BadInput as exc:
            running.problem = str(exc)
            running.error = PipelineError(f"the input ended at a bad message: {exc}")
        except PipelineError:
            return  # the session failed; its error ends the outputs
        session.close_input()

    # -- stopping ------------------------------------------------------------------------

    def cancel_all(self, reason: str) -> None:
        """End every running session: its outputs stop, its summary says CANCELLED."""
        for running in list(self.running.values()):
            if running.cancelled is None:
                running.cancelled = reason
                running.session.fail(PipelineError(reason), log_it=False)

    def sessions(self) -> list[PipelineSession]:
        """The sessions running now."""
        return [running.session for running in self.running.values()]

    async def wait_idle(self) -> None:
        """Wait until no session runs (each one's processes are gone by then)."""
        await self._idle.wait()


def _node_stats(stats: Any) -> PipelineNodeStats:
    return PipelineNodeStats(
        node_id=stats.node_id, node_type=stats.node_type, executor=stats.executor,
        items_in=stats.items_in, items_out=stats.items_out, failed=stats.failed,
        busy_seconds=stats.busy_seconds, max_queue=stats.max_queue, restarts=stats.restarts)
