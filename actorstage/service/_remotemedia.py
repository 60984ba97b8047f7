"""RemoteMedia's pipeline services (``remotemedia.v1``), served by actorstage.

RemoteMedia's clients call ``PipelineExecutionService`` and
``StreamingPipelineService`` with the structured ``PipelineManifest`` and
``DataBuffer`` items. This module turns those into actorstage's manifest and
items (``DataBuffer`` kinds map to ``Audio``, ``VideoFrame``, ``Tensor``,
``FileRef``, ``Control`` and plain JSON, text and binary values) and back,
and answers problems in band as ``ErrorResponse``, as RemoteMedia's server
does: validation problems as a JSON array of objects with its field names.
The compatibility guide lists what maps to what.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from grpclib import GRPCError
from grpclib.const import Status as Code

from actorstage._betterproto import betterproto2
from actorstage._documents import DocumentError, load, off_loop
from actorstage._proto.remotemedia.v1 import (
    AudioBuffer,
    AudioFormat,
    BatchHint,
    BinaryBuffer,
    CancelSpeculation,
    ChunkResult,
    ControlMessage,
    DataBuffer,
    DeadlineWarning,
    ErrorResponse,
    ErrorType,
    ExecuteRequest,
    ExecuteResponse,
    ExecutionMetrics,
    ExecutionResult,
    ExecutionStatus,
    FileBuffer,
    JsonData,
    NodeMetrics,
    NodeResult,
    NodeStatus,
    NumpyBuffer,
    PipelineExecutionServiceBase,
    PipelineManifest,
    PixelFormat,
    StreamClosed,
    StreamControl,
    StreamControlCommand,
    StreamingPipelineServiceBase,
    StreamInit,
    StreamMetrics,
    StreamReady,
    StreamRequest,
    StreamResponse,
    TensorBuffer,
    TensorDtype,
    TextBuffer,
    VersionInfo,
    VersionRequest,
    VersionResponse,
    VideoCodec,
)
from actorstage._proto.remotemedia.v1 import (
    VideoFrame as ProtoVideoFrame,
)
from actorstage.pipelines._audio import Audio
from actorstage.pipelines._manifest import (
    Connection,
    Manifest,
    ManifestError,
    Metadata,
    NodeSpec,
    Problem,
)
from actorstage.pipelines._media import Control, FileRef, Tensor, VideoFrame
from actorstage.pipelines._pipeline import Pipeline
from actorstage.pipelines._registry import registered_nodes
from actorstage.pipelines._session import Output, PipelineError
from actorstage.pipelines._wire import to_bytes
from actorstage.service._pipeline_service import PipelineService

__all__ = [
    "RemoteMediaExecution",
    "RemoteMediaStreaming",
    "from_buffer",
    "manifest_of",
    "pipeline_of",
    "to_buffer",
    "validation_error",
]

log = logging.getLogger("actorstage.service.remotemedia")

PROTOCOL = "v1"
MAX_PARAMS = 1024 * 1024  # bytes of one node's params JSON

# -- items -----------------------------------------------------------------------------

_AUDIO_FORMATS: dict[Any, Any] = {AudioFormat.F32: "f32", AudioFormat.I16: "i16",
                                  AudioFormat.I32: "i32"}
_AUDIO_ENUMS = {name: enum for enum, name in _AUDIO_FORMATS.items()}
_PIXELS: dict[Any, Any] = {PixelFormat.RGB24: "rgb24", PixelFormat.RGBA32: "rgba32",
           PixelFormat.YUV420P: "yuv420p", PixelFormat.GRAY8: "gray8", PixelFormat.I420: "i420",
           PixelFormat.NV12: "nv12", PixelFormat.ENCODED: "encoded"}
_PIXEL_ENUMS = {name: enum for enum, name in _PIXELS.items()}
_CODECS = {VideoCodec.VP8: "vp8", VideoCodec.H264: "h264", VideoCodec.AV1: "av1"}
_CODEC_ENUMS = {name: enum for enum, name in _CODECS.items()}
_DTYPES = {TensorDtype.F32: "float32", TensorDtype.F16: "float16", TensorDtype.I32: "int32",
           TensorDtype.I8: "int8", TensorDtype.U8: "uint8"}
_DTYPE_ENUMS = {name: enum for enum, name in _DTYPES.items()}
_CONTROLS = {"cancel_speculation": CancelSpeculation, "batch_hint": BatchHint,
             "deadline_warning": DeadlineWarning}


class BadBuffer(ValueError):
    """A ``DataBuffer`` that is no item: empty, or inconsistent."""


def from_buffer(buffer: DataBuffer, where: str = "the buffer") -> Any:
    """The pipeline item of ``buffer``; ``BadBuffer`` naming ``where`` when it holds none."""
    kind, found = betterproto2.which_one_of(buffer, "data_type")
    data: Any = found
    metadata = dict(buffer.metadata)
    if kind == "audio":
        if data.format not in _AUDIO_FORMATS:
            raise BadBuffer(f"{where}: audio.format must be F32, I16 or I32 (the samples' "
                            f"encoding), got {data.format!r}")
        if data.channels < 1 or data.sample_rate < 1:
            raise BadBuffer(f"{where}: audio needs sample_rate >= 1 and channels >= 1, got "
                            f"{data.sample_rate} and {data.channels}")
        return Audio(data.samples, data.sample_rate, data.channels, _AUDIO_FORMATS[data.format],
                     metadata)
    if kind == "video":
        return VideoFrame(data.pixel_data, data.width, data.height,
                          _PIXELS.get(data.format, "rgb24"), data.frame_number,
                          data.timestamp_us, _CODECS.get(data.codec, ""), data.is_keyframe,
                          metadata)
    if kind == "tensor":
        if data.dtype not in _DTYPES:
            raise BadBuffer(f"{where}: tensor.dtype is unspecified; give F32, F16, I32, I8 "
                            "or U8")
        return Tensor(data.data, tuple(data.shape), _DTYPES[data.dtype], data.layout,
                      metadata=metadata)
    if kind == "numpy":
        strides = () if data.c_contiguous else tuple(data.strides)
        return Tensor(data.data, tuple(data.shape), data.dtype or "float32", "", strides,
                      metadata)
    if kind == "json":
        try:
            return load(data.json_payload, "json", where)
        except DocumentError as exc:
            raise BadBuffer(str(exc)) from None
    if kind == "text":
        encoding = data.encoding or "utf-8"
        try:
            return bytes(data.text_data).decode(encoding)
        except (LookupError, UnicodeDecodeError) as exc:
            raise BadBuffer(f"{where}: the text is not {encoding}: {exc}") from None
    if kind == "binary":
        return bytes(data.data)
    if kind == "file":
        return FileRef(data.path, data.filename, data.mime_type, data.size, data.offset,
                       data.length, data.stream_id, metadata)
    if kind == "control":
        which, inner_found = betterproto2.which_one_of(data, "message_type")
        inner: Any = inner_found
        values = {} if inner is None else {
            name: int(getattr(inner, name)) for name in inner.to_dict(
                casing=betterproto2.Casing.SNAKE, include_default_values=True)}
        control_kind: Any = which or ""
        return Control(control_kind, values, data.segment_id, data.timestamp_ms, data.metadata,
                       metadata)
    raise BadBuffer(f"{where} holds no data: set one of audio, video, tensor, json, text, "
                    "binary, numpy, file or control")


def to_buffer(value: Any) -> DataBuffer:
    """``value`` (a pipeline's output) as a ``DataBuffer``; ``TypeError`` when it is none
    of the kinds a ``DataBuffer`` has and not JSON either."""
    value = to_bytes(value)
    if isinstance(value, Audio):
        return DataBuffer(audio=AudioBuffer(
            samples=value.pcm, sample_rate=value.sample_rate, channels=value.channels,
            format=_AUDIO_ENUMS[value.format], num_samples=value.frames),
            metadata=dict(value.metadata))
    if isinstance(value, VideoFrame):
        return DataBuffer(video=ProtoVideoFrame(
            pixel_data=value.pixels, width=value.width, height=value.height,
            format=_PIXEL_ENUMS.get(value.format, PixelFormat.UNSPECIFIED),
            frame_number=value.frame_number, timestamp_us=value.timestamp_us,
            codec=_CODEC_ENUMS.get(value.codec, VideoCodec.UNSPECIFIED),
            is_keyframe=value.keyframe), metadata=dict(value.metadata))
    if isinstance(value, Tensor):
        if value.dtype in _DTYPE_ENUMS and not value.strides:
            return DataBuffer(tensor=TensorBuffer(
                data=value.data, shape=list(value.shape), dtype=_DTYPE_ENUMS[value.dtype],
                layout=value.layout), metadata=dict(value.metadata))
        return DataBuffer(numpy=NumpyBuffer(
            data=value.data, shape=list(value.shape), dtype=value.dtype,
            strides=list(value.strides), c_contiguous=not value.strides,
            f_contiguous=False), metadata=dict(value.metadata))
    if isinstance(value, FileRef):
        return DataBuffer(file=FileBuffer(
            path=value.path, filename=value.filename, mime_type=value.mime_type,
            size=value.size, offset=value.offset, length=value.length,
            stream_id=value.stream_id), metadata=dict(value.metadata))
    if isinstance(value, Control):
        message = ControlMessage(segment_id=value.segment_id, timestamp_ms=value.timestamp_ms,
                                 metadata=value.detail)
        kind = _CONTROLS.get(value.kind)
        if kind is not None:
            setattr(message, value.kind, kind(**value.values))
        return DataBuffer(control=message, metadata=dict(value.metadata))
    if isinstance(value, str):
        return DataBuffer(text=TextBuffer(text_data=value.encode(), encoding="utf-8"))
    if isinstance(value, bytes | bytearray):
        return DataBuffer(binary=BinaryBuffer(data=bytes(value),
                                              mime_type="application/octet-stream"))
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a {type(value).__name__} is none of a DataBuffer's kinds and not "
                        f"JSON ({exc})") from None
    return DataBuffer(json=JsonData(json_payload=text))


# -- manifests ---------------------------------------------------------------------------

def manifest_of(proto: PipelineManifest) -> tuple[Manifest, list[Problem]]:
    """actorstage's ``Manifest`` of RemoteMedia's structured one, and the problems found
    on the way (params that are not a JSON object: ``{}`` in their place, so that the
    manifest's check still finds every other problem)."""
    problems: list[Problem] = []
    if proto.version != PROTOCOL:
        problems.append(Problem("version", f"must be \"{PROTOCOL}\", got {proto.version!r}"))
    nodes = []
    for index, node in enumerate(proto.nodes):
        params: Any = {}
        text = node.params.strip()
        if len(text) > MAX_PARAMS:
            problems.append(Problem(f"nodes[{index}].params", (
                f"{len(text)} bytes of JSON, more than the {MAX_PARAMS} a node's params may "
                "have")))
        elif text:
            try:  # (bounded in size and depth, as any untrusted document)
                params = load(text, "json", "the params")
            except DocumentError as exc:
                problems.append(Problem(f"nodes[{index}].params", str(exc)))
                params = {}
            if not isinstance(params, dict):
                problems.append(Problem(f"nodes[{index}].params", (
                    f"must be a JSON object, got {type(params).__name__}")))
                params = {}
        nodes.append(NodeSpec(id=node.id, node_type=node.node_type, params=params,
                              executor=_executor(node.node_type)))
    connections = [Connection(from_=link.from_, to=link.to) for link in proto.connections]
    name = proto.metadata.name if proto.metadata is not None and proto.metadata.name else \
        "pipeline"
    description = proto.metadata.description if proto.metadata is not None else ""
    return Manifest(version="v1", metadata=Metadata(name=name, description=description),
                    nodes=nodes, connections=connections), problems


def manifest_size(proto: PipelineManifest) -> int:
    """Roughly the bytes of a manifest: what decides whether it is read off the loop."""
    return sum(len(node.params) + 64 for node in proto.nodes) + 32 * len(proto.connections)


def pipeline_of(proto: PipelineManifest, runtime: Any) -> Pipeline:
    """The checked ``Pipeline`` of RemoteMedia's manifest; ``ManifestError`` listing every
    problem."""
    manifest, problems = manifest_of(proto)
    try:
        pipeline = Pipeline(manifest, runtime=runtime)
    except ManifestError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ManifestError(problems)
    return pipeline


def _executor(node_type: str) -> Any:
    """Where a node of ``node_type`` runs: as its type says (``Node.executor``), as
    RemoteMedia's server decides by node type, too."""
    from actorstage.pipelines._registry import lookup

    entry = lookup(node_type)
    return entry.cls.executor if entry is not None else "native"


_NODE_PLACE = re.compile(r"^nodes\[(\d+)\](?:\.(\w+))?(.*)$")
_EXPECTED = re.compile(r"^Expected `(.+?)`, got `(.+?)`$")
_MISSING = re.compile(r"^Object missing required field `(.+?)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(.+?)`$")
_ENUM = re.compile(r"^Invalid enum value (.+)$")
_BOUND = re.compile(r"^Expected `.+?` (>=|<=|>|<) (\S+)$")
_BOUNDS = {">=": "minimum", "<=": "maximum", ">": "exclusive_minimum", "<": "exclusive_maximum"}


def _pointer(path: str) -> str:
    """``.threshold[2]`` (msgspec's place in params) as the JSON pointer ``/threshold/2``."""
    parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]", path)
    return "".join(f"/{name or number}" for name, number in parts)


def validation_error(error: ManifestError, proto: PipelineManifest | None = None
                     ) -> ErrorResponse:
    """``error`` in band, as RemoteMedia's server answers validation problems: ``message``
    a JSON array of ``{node_id, node_type, path, constraint, expected, received, message}``.
    """
    nodes = list(proto.nodes) if proto is not None else []
    found = []
    failing = ""
    for problem in error.problems:
        node_id = node_type = ""
        path, constraint, expected, received = "", "other", "", ""
        place = _NODE_PLACE.match(problem.location)
        if place is not None:
            index, field, rest = int(place.group(1)), place.group(2) or "", place.group(3)
            if index < len(nodes):
                node_id, node_type = nodes[index].id, nodes[index].node_type
            path = _pointer(rest) if field == "params" else f"/{field}" if field else ""
        else:
            path = "/" + problem.location.replace(".", "/").replace("[", "/").rstrip("]") \
                if problem.location else ""
        text = problem.message
        if (match := _EXPECTED.match(text)) is not None:
            constraint, expected, received = "type", match.group(1), match.group(2)
        elif (match := _MISSING.match(text)) is not None:
            constraint, expected, received = "required", "required parameter", "(missing)"
            path += f"/{match.group(1)}"
        elif (match := _UNKNOWN.match(text)) is not None:
            constraint, expected, received = "additional_properties", "a known parameter", \
                match.group(1)
            path += f"/{match.group(1)}"
        elif (match := _BOUND.match(text)) is not None:
            constraint, expected = _BOUNDS[match.group(1)], match.group(2)
        elif (match := _ENUM.match(text)) is not None:
            constraint, received = "enum", match.group(1)
        failing = failing or node_id
        found.append({"node_id": node_id, "node_type": node_type, "path": path,
                      "constraint": constraint, "expected": expected, "received": received,
                      "message": str(problem)})
    return ErrorResponse(
        error_type=ErrorType.VALIDATION, message=json.dumps(found), failing_node_id=failing,
        context=f"{len(found)} validation error(s) in the pipeline manifest")


def _error(kind: ErrorType, message: str, *, node: str = "", context: str = "",
           trace: str = "") -> ErrorResponse:
    return ErrorResponse(error_type=kind, message=message, failing_node_id=node,
                         context=context, stack_trace=trace)


def version_info() -> VersionInfo:
    from actorstage import __version__

    return VersionInfo(protocol_version=PROTOCOL, runtime_version=__version__,
                       supported_node_types=sorted(registered_nodes()),
                       supported_protocols=[PROTOCOL], build_timestamp="")


# -- the unary service -------------------------------------------------------------------


class RemoteMediaExecution(PipelineExecutionServiceBase):
    """``remotemedia.v1.PipelineExecutionService``: one manifest over the inputs given,
    each to the node it names; one answer with every output, keyed by the node that
    produced it (a node's second output under ``<node>#2``, and so on)."""

    def __init__(self, pipelines: PipelineService) -> None:
        self.pipelines = pipelines  # its sessions, session limit, metrics and shutdown apply

    async def get_version(self, message: VersionRequest) -> VersionResponse:
        compatible = not message.client_version or message.client_version.startswith(
            ("v1", "1", "0"))
        return VersionResponse(
            version_info=version_info(), compatible=compatible,
            compatibility_message="Compatible" if compatible else (
                f"client version {message.client_version!r} is not one this server knows; it "
                f"speaks protocol {PROTOCOL}"))

    async def execute_pipeline(self, message: ExecuteRequest) -> ExecuteResponse:
        began = time.monotonic()
        if message.manifest is None:
            raise GRPCError(Code.INVALID_ARGUMENT, "Manifest is required")
        try:
            pipeline = await off_loop(manifest_size(message.manifest), pipeline_of,
                                      message.manifest, self.pipelines.runtime)
        except ManifestError as exc:
            return ExecuteResponse(error=validation_error(exc, message.manifest))
        if not message.data_inputs:
            return ExecuteResponse(error=_error(
                ErrorType.VALIDATION, "No input data provided",
                context="ExecutePipeline needs data_inputs: node id -> DataBuffer"))
        inputs: list[tuple[str, Any]] = []
        for node_id, buffer in message.data_inputs.items():
            try:
                inputs.append((node_id, from_buffer(buffer, f"data_inputs[{node_id!r}]")))
            except BadBuffer as exc:
                return ExecuteResponse(error=_error(ErrorType.VALIDATION, str(exc),
                                                    node=node_id, context="data_inputs"))
        roots = set(pipeline.plan.roots)
        for node_id, _item in inputs:
            if node_id not in roots:
                where = "is not a root of the pipeline" if node_id in pipeline.plan.nodes \
                    else "is no node of the manifest"
                return ExecuteResponse(error=_error(
                    ErrorType.VALIDATION, f"data_inputs[{node_id!r}]: {node_id!r} {where}; "
                    f"inputs go to {sorted(roots)}", node=node_id, context="data_inputs"))
        outputs: list[Output] = []
        async with self.pipelines.running_session(pipeline) as running:
            if running.started:
                session = running.session
                feeder = asyncio.get_running_loop().create_task(self._feed(session, inputs))
                try:
                    async for batch in session.output_batches():
                        outputs.extend(batch)
                except PipelineError:
                    pass  # (running.error has it)
                finally:
                    feeder.cancel()
                    await asyncio.wait([feeder])
        session = running.session
        if running.error is not None:
            failed = getattr(running.error, "failure", None)
            return ExecuteResponse(error=_error(
                ErrorType.NODE_EXECUTION, str(running.error) or type(running.error).__name__,
                node=failed.node_id if failed is not None else "",
                trace=failed.traceback if failed is not None else ""))
        try:
            data_outputs = _keyed(outputs)
        except TypeError as exc:
            return ExecuteResponse(error=_error(ErrorType.NODE_EXECUTION, str(exc)))
        stats = session.stats()
        return ExecuteResponse(result=ExecutionResult(
            data_outputs=data_outputs,
            metrics=ExecutionMetrics(
                wall_time_ms=(time.monotonic() - began) * 1000,
                cpu_time_ms=sum(node.busy_seconds for node in stats.values()) * 1000,
                node_metrics={node_id: NodeMetrics(
                    execution_time_ms=node.busy_seconds * 1000, items_processed=node.items_in)
                    for node_id, node in stats.items()}),
            node_results=[NodeResult(
                node_id=node_id,
                status=NodeStatus.FAILED if node.failed else NodeStatus.SUCCESS)
                for node_id, node in stats.items()],
            status=ExecutionStatus.SUCCESS))

    @staticmethod
    async def _feed(session: Any, inputs: list[tuple[str, Any]]) -> None:
        try:
            for node_id, item in inputs:
                await session.send(item, to=node_id)
        except PipelineError:
            return
        session.close_input()


def _keyed(outputs: list[Output]) -> dict[str, DataBuffer]:
    keyed: dict[str, DataBuffer] = {}
    counts: dict[str, int] = {}
    for output in outputs:
        count = counts[output.node_id] = counts.get(output.node_id, 0) + 1
        key = output.node_id if count == 1 else f"{output.node_id}#{count}"
        try:
            keyed[key] = to_buffer(output.item)
        except TypeError as exc:
            raise TypeError(f"node {output.node_id!r}: {exc}") from None
    return keyed


# -- the streaming service ---------------------------------------------------------------

METRICS_EVERY = 10  # chunks between two StreamMetrics
CHUNK_SIZE = 4096  # recommended when the client names none (samples, ~256 ms at 16 kHz)
MAX_BUFFER_LATENCY_MS = 100
_TRACKED = 10_000  # chunks whose arrival time is kept, for processing_time_ms
_END = object()


class RemoteMediaStreaming(StreamingPipelineServiceBase):
    """``remotemedia.v1.StreamingPipelineService``: one session per stream (see
    ``streaming.proto``); every output comes back as a ``ChunkResult`` with the sequence
    of the chunk it came from, keyed by the node that produced it."""

    def __init__(self, pipelines: PipelineService) -> None:
        self.pipelines = pipelines

    async def stream_pipeline(self, messages: AsyncIterator[StreamRequest]
                              ) -> AsyncIterator[StreamResponse]:
        async for response in _Stream(self.pipelines, messages).run():
            yield response


def _stream_error(kind: ErrorType, message: str, **details: str) -> StreamResponse:
    return StreamResponse(error=_error(kind, message, **details))


class _Stream:
    """One ``StreamPipeline`` call: reads chunks into the session, sends results back."""

    def __init__(self, pipelines: PipelineService, messages: AsyncIterator[StreamRequest]
                 ) -> None:
        self.pipelines = pipelines
        self.messages = messages
        self.responses: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)  # holds outputs back
        self.began = time.monotonic()
        self.arrived: dict[int, float] = {}
        self.chunks = 0
        self.results = 0
        self.latency = 0.0  # summed over results, in seconds
        self.kinds: dict[str, int] = {}
        self.reason = ""  # why the client ended it: close or cancel
        self.ended = False  # the last response (closed, or an error) is on its way
        self.session: Any = None

    async def run(self) -> AsyncIterator[StreamResponse]:
        try:
            first = await anext(self.messages)
        except StopAsyncIteration:
            return
        kind, init = betterproto2.which_one_of(first, "request")
        if kind != "init" or init is None:
            yield _stream_error(ErrorType.VALIDATION,
                                f"StreamInit required before {_request_name(kind)}")
            return
        assert isinstance(init, StreamInit)
        if init.manifest is None:
            yield _stream_error(ErrorType.VALIDATION, "manifest required in StreamInit")
            return
        try:
            pipeline = await off_loop(manifest_size(init.manifest), pipeline_of,
                                      init.manifest, self.pipelines.runtime)
        except ManifestError as exc:
            yield StreamResponse(error=validation_error(exc, init.manifest))
            return
        initial = []
        for node_id, buffer in init.data_inputs.items():
            try:
                item = from_buffer(buffer, f"init.data_inputs[{node_id!r}]")
            except BadBuffer as exc:
                yield _stream_error(ErrorType.VALIDATION, str(exc), node=node_id)
                return
            initial.append((node_id, item, _kind(buffer)))
        async with self.pipelines.running_session(pipeline, origins=True) as running:
            if not running.started:
                yield _stream_error(ErrorType.NODE_EXECUTION, str(running.error),
                                    context="a node's setup failed")
                return
            session = self.session = running.session
            yield StreamResponse(ready=StreamReady(
                session_id=session.id,
                recommended_chunk_size=init.expected_chunk_size or CHUNK_SIZE,
                max_buffer_latency_ms=MAX_BUFFER_LATENCY_MS))
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(self._read(initial)), loop.create_task(self._pump())]
            try:
                while (response := await self.responses.get()) is not _END:
                    yield response
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks)

    # -- in ----------------------------------------------------------------------------

    async def _read(self, initial: list[tuple[str, Any, str]]) -> None:
        session = self.session
        try:
            for node_id, item, kind in initial:
                if not await self._send(node_id, item, 0, kind):
                    return
            expected = 0
            async for message in self.messages:
                kind, found = betterproto2.which_one_of(message, "request")
                body: Any = found
                if kind == "init":
                    await self._refuse("StreamInit already received")
                    return
                if kind == "control":
                    assert isinstance(body, StreamControl)
                    if body.command == StreamControlCommand.CANCEL:
                        self.reason = "Client requested cancel"
                        session.fail(PipelineError("the client cancelled the stream"),
                                     log_it=False)
                        await self._finish(self._closed())  # at once: nothing waits for
                        return  # a node that is stuck (the session stops them all)
                    self.reason = "Client requested close"  # CLOSE (or unspecified)
                    break
                if kind not in ("data_chunk", "audio_chunk"):
                    continue  # an empty request: nothing to do
                node_id, sequence = body.node_id, body.sequence
                if sequence < expected:
                    await self._refuse(f"Out-of-order chunk: expected sequence {expected}, "
                                       f"got {sequence}")
                    return
                expected = sequence + 1
                buffer = self._buffer(kind, body)
                if buffer is None:
                    await self._refuse("DataChunk must have buffer or named_buffers")
                    return
                try:
                    item = from_buffer(buffer, f"chunk {sequence}")
                except BadBuffer as exc:
                    await self._refuse(str(exc), node=node_id)
                    return
                if not await self._send(node_id, item, sequence, _kind(buffer)):
                    return
                if self.chunks % METRICS_EVERY == 0:
                    await self.responses.put(StreamResponse(metrics=self._metrics()))
            else:
                self.reason = self.reason or "the client closed its side of the stream"
            session.close_input()  # what is in flight finishes; then the pump closes
        except PipelineError:
            return  # the session failed: the pump says so

    @staticmethod
    def _buffer(kind: str, body: Any) -> DataBuffer | None:
        if kind == "audio_chunk":
            return DataBuffer(audio=body.buffer) if body.buffer is not None else None
        if body.buffer is not None:
            return body.buffer  # type: ignore[no-any-return]
        for _name, buffer in body.named_buffers.items():
            return buffer  # type: ignore[no-any-return]
        return None

    async def _send(self, node_id: str, item: Any, sequence: int, kind: str) -> bool:
        session = self.session
        try:
            session.input_of(node_id)
        except ValueError as exc:
            await self._refuse(str(exc), node=node_id)
            return False
        self.chunks += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.arrived[sequence] = time.monotonic()
        if len(self.arrived) > _TRACKED:
            del self.arrived[next(iter(self.arrived))]
        await session.send(item, to=node_id, origin=sequence)
        return True

    async def _refuse(self, message: str, *, node: str = "") -> None:
        """A protocol problem: answered in band, and the stream ends (as RemoteMedia's)."""
        self.session.fail(PipelineError(message), log_it=False)
        await self._finish(_stream_error(ErrorType.VALIDATION, message, node=node))

    async def _finish(self, last: StreamResponse) -> None:
        """Send ``last`` and end the stream; only the first call does."""
        if self.ended:
            return
        self.ended = True
        await self.responses.put(last)
        await self.responses.put(_END)

    def _closed(self) -> StreamResponse:
        return StreamResponse(closed=StreamClosed(
            session_id=self.session.id, final_metrics=self._final_metrics(),
            reason=self.reason or "Client requested close"))

    # -- out ---------------------------------------------------------------------------

    async def _pump(self) -> None:
        session = self.session
        last = None
        try:
            async for batch in session.output_batches():
                for output in batch:
                    await self.responses.put(StreamResponse(result=self._result(output)))
        except TypeError as exc:
            session.fail(PipelineError(str(exc)), log_it=False)
            last = _stream_error(ErrorType.NODE_EXECUTION, str(exc))
        except PipelineError as exc:
            failure = exc.failure
            last = _stream_error(
                ErrorType.NODE_EXECUTION, str(exc),
                node=failure.node_id if failure is not None else "",
                trace=failure.traceback if failure is not None else "")
        await self._finish(last or self._closed())

    def _result(self, output: Output) -> ChunkResult:
        sequence = output.origin if isinstance(output.origin, int) else 0
        try:
            buffer = to_buffer(output.item)
        except TypeError as exc:
            raise TypeError(f"node {output.node_id!r}: {exc}") from None
        arrived = self.arrived.get(sequence)
        took = time.monotonic() - arrived if arrived is not None else 0.0
        self.results += 1
        self.latency += took
        return ChunkResult(sequence=sequence, data_outputs={output.node_id: buffer},
                           processing_time_ms=took * 1000, total_items_processed=self.results)

    def _metrics(self) -> StreamMetrics:
        return StreamMetrics(
            session_id=self.session.id, chunks_processed=self.chunks,
            average_latency_ms=self.latency * 1000 / self.results if self.results else 0.0,
            total_items=self.results,
            buffer_items=sum(self.session.queue_depths().values()),
            data_type_breakdown=dict(self.kinds))

    def _final_metrics(self) -> ExecutionMetrics:
        stats = self.session.stats()
        return ExecutionMetrics(
            wall_time_ms=(time.monotonic() - self.began) * 1000,
            cpu_time_ms=sum(node.busy_seconds for node in stats.values()) * 1000,
            node_metrics={node_id: NodeMetrics(execution_time_ms=node.busy_seconds * 1000,
                                               items_processed=node.items_in)
                          for node_id, node in stats.items()},
            data_type_breakdown=dict(self.kinds))


def _kind(buffer: DataBuffer) -> str:
    return betterproto2.which_one_of(buffer, "data_type")[0] or "empty"


def _request_name(kind: str) -> str:
    return {"data_chunk": "DataChunk", "audio_chunk": "AudioChunk",
            "control": "StreamControl"}.get(kind, "anything else")
