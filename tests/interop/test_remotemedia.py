"""A RemoteMedia client (grpcio stubs generated from the remotemedia.v1 .proto files that
actorstage ships) calls `actorstage serve` as it would call RemoteMedia's own server."""

from __future__ import annotations

import json
import struct
from types import ModuleType
from typing import Any

import grpc
import pytest

from tests.interop.conftest import serve

TOKEN = "remotemedia-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def _manifest(pb: Any, nodes: list[tuple[str, str, dict[str, Any] | str]],
              links: list[tuple[str, str]] = ()) -> Any:  # type: ignore[assignment]
    return pb.PipelineManifest(
        version="v1", metadata=pb.ManifestMetadata(name="interop", description="from grpcio"),
        nodes=[pb.NodeManifest(id=node_id, node_type=node_type,
                               params=params if isinstance(params, str) else json.dumps(params))
               for node_id, node_type, params in nodes],
        connections=[pb.Connection(**{"from": source, "to": target})
                     for source, target in links])


def _stubs(stubs: dict[str, ModuleType]) -> tuple[Any, Any, Any]:
    return stubs["common_pb2"], stubs["execution_pb2"], stubs["execution_pb2_grpc"]


def test_get_version_and_unary_execution_as_a_remotemedia_client_sees_them(
        remotemedia_stubs: dict[str, ModuleType]) -> None:
    common, pb, pb_grpc = _stubs(remotemedia_stubs)
    with serve(env={"ACTORSTAGE_TOKEN": TOKEN}) as served, \
            grpc.insecure_channel(served.address) as channel:
        service = pb_grpc.PipelineExecutionServiceStub(channel)

        with pytest.raises(grpc.RpcError) as caught:  # the same bearer token as ours
            service.GetVersion(pb.VersionRequest(client_version="v1"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        version = service.GetVersion(pb.VersionRequest(client_version="v1"), metadata=AUTH,
                                     timeout=10)
        info = version.version_info
        assert version.compatible and info.protocol_version == "v1"
        assert list(info.supported_protocols) == ["v1"] and info.runtime_version
        assert {"PassThrough", "PassthroughNode", "EchoNode", "VideoFlip"} <= set(
            info.supported_node_types)

        # The frame of RemoteMedia's own end-to-end test: red, green / blue, white.
        frame = common.VideoFrame(pixel_data=bytes([255, 0, 0, 0, 255, 0, 0, 0, 255,
                                                    255, 255, 255]),
                                  width=2, height=2, format=common.PIXEL_FORMAT_RGB24,
                                  frame_number=7, is_keyframe=True)
        answer = service.ExecutePipeline(pb.ExecuteRequest(
            manifest=_manifest(pb, [("flip", "VideoFlip", {"direction": "vertical"})]),
            data_inputs={"flip": common.DataBuffer(video=frame, metadata={"cam": "1"})},
            client_version="v1"), metadata=AUTH, timeout=30)
        assert answer.WhichOneof("outcome") == "result", answer
        result = answer.result
        assert result.status == common.EXECUTION_STATUS_SUCCESS
        flipped = result.data_outputs["flip"]
        assert flipped.WhichOneof("data_type") == "video"
        assert flipped.video.pixel_data == bytes([0, 0, 255, 255, 255, 255, 255, 0, 0,
                                                  0, 255, 0])
        assert (flipped.video.width, flipped.video.height, flipped.video.frame_number,
                flipped.video.is_keyframe) == (2, 2, 7, True)
        assert dict(flipped.metadata) == {"cam": "1"}
        assert result.metrics.wall_time_ms > 0 and "flip" in result.metrics.node_metrics
        assert [(node.node_id, node.status) for node in result.node_results] == [
            ("flip", common.NODE_STATUS_SUCCESS)]


def test_every_kind_of_data_buffer_keeps_its_kind_through_a_process_node(
        remotemedia_stubs: dict[str, ModuleType]) -> None:
    """PassThrough in this process, then EchoNode, which runs in a process of its own."""
    common, pb, pb_grpc = _stubs(remotemedia_stubs)
    samples = struct.pack("<4f", 0.0, 0.5, -0.5, 1.0)
    buffers = {
        "audio": common.DataBuffer(audio=common.AudioBuffer(
            samples=samples, sample_rate=48000, channels=2, format=common.AUDIO_FORMAT_F32,
            num_samples=2), metadata={"lang": "en"}),
        "json": common.DataBuffer(json=common.JsonData(json_payload='{"a": [1, 2.5, null]}')),
        "text": common.DataBuffer(text=common.TextBuffer(text_data="héllo".encode(),
                                                         encoding="utf-8")),
        "binary": common.DataBuffer(binary=common.BinaryBuffer(data=b"\x00\x01\xff")),
        "tensor": common.DataBuffer(tensor=common.TensorBuffer(
            data=struct.pack("<6i", *range(6)), shape=[2, 3], dtype=common.TENSOR_DTYPE_I32,
            layout="HW")),
        "numpy": common.DataBuffer(numpy=common.NumpyBuffer(
            data=struct.pack("<2d", 1.5, 2.5), shape=[2], dtype="float64", c_contiguous=True)),
        "file": common.DataBuffer(file=common.FileBuffer(path="/tmp/x.wav", filename="x.wav",
                                                         size=10, offset=2, length=4)),
        "control": common.DataBuffer(control=common.ControlMessage(
            batch_hint=common.BatchHint(suggested_batch_size=8), segment_id="s1",
            timestamp_ms=5)),
        "big": common.DataBuffer(binary=common.BinaryBuffer(data=bytes(range(256)) * 4096)),
    }
    with serve(env={"ACTORSTAGE_TOKEN": TOKEN}) as served, \
            grpc.insecure_channel(served.address) as channel:
        service = pb_grpc.PipelineExecutionServiceStub(channel)
        for kind, buffer in buffers.items():
            answer = service.ExecutePipeline(pb.ExecuteRequest(
                manifest=_manifest(pb, [("in", "PassThrough", ""), ("echo", "EchoNode", "{}")],
                                   [("in", "echo")]),
                data_inputs={"in": buffer}), metadata=AUTH, timeout=30)
            assert answer.WhichOneof("outcome") == "result", (kind, answer)
            got = answer.result.data_outputs["echo"]
            if kind == "binary" or kind == "big":  # a bytes item: binary, with a MIME type
                assert got.binary.data == buffer.binary.data
            elif kind == "json":
                assert json.loads(got.json.json_payload) == {"a": [1, 2.5, None]}
            elif kind == "text":
                assert got.text.text_data.decode() == "héllo"
            else:
                assert got == buffer, kind


def test_problems_come_back_in_band_as_remotemedia_does(
        remotemedia_stubs: dict[str, ModuleType]) -> None:
    common, pb, pb_grpc = _stubs(remotemedia_stubs)
    frame = common.DataBuffer(video=common.VideoFrame(pixel_data=b"\x00" * 12, width=2,
                                                      height=2,
                                                      format=common.PIXEL_FORMAT_RGB24))
    with serve(env={"ACTORSTAGE_TOKEN": TOKEN}) as served, \
            grpc.insecure_channel(served.address) as channel:
        service = pb_grpc.PipelineExecutionServiceStub(channel)

        def execute(manifest: Any, inputs: dict[str, Any] | None = None) -> Any:
            return service.ExecutePipeline(pb.ExecuteRequest(
                manifest=manifest, data_inputs={"flip": frame} if inputs is None else inputs),
                metadata=AUTH, timeout=30)

        with pytest.raises(grpc.RpcError) as caught:  # a status, as RemoteMedia's server
            service.ExecutePipeline(pb.ExecuteRequest(), metadata=AUTH, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Manifest is required" in caught.value.details()

        # Every problem at once: bad params text, a bad direction, an unknown node type.
        answer = execute(_manifest(pb, [("flip", "VideoFlip", {"direction": "sideways"}),
                                        ("raw", "VideoFlip", "{not json"),
                                        ("vad", "SileroVAD", {})]))
        assert answer.WhichOneof("outcome") == "error"
        error = answer.error
        assert error.error_type == common.ERROR_TYPE_VALIDATION
        problems = json.loads(error.message)
        assert {key for problem in problems for key in problem} == {
            "node_id", "node_type", "path", "constraint", "expected", "received", "message"}
        by_node = {problem["node_id"]: problem for problem in problems}
        assert by_node["flip"]["node_type"] == "VideoFlip"
        assert by_node["flip"]["path"] == "/direction"
        assert by_node["flip"]["constraint"] == "enum"
        assert "sideways" in by_node["flip"]["received"]
        assert by_node["raw"]["path"] == "" and "not valid JSON" in by_node["raw"]["message"]
        assert "SileroVAD" in by_node["vad"]["message"]
        assert "VideoFlip" in by_node["vad"]["message"]  # it names what is registered
        assert f"{len(problems)} validation error(s)" in error.context

        answer = execute(_manifest(pb, [("flip", "VideoFlip", {})]), inputs={})
        assert answer.error.error_type == common.ERROR_TYPE_VALIDATION
        assert answer.error.message == "No input data provided"

        answer = execute(_manifest(pb, [("a", "PassThrough", {}), ("flip", "VideoFlip", {})],
                                   [("a", "flip")]))
        assert answer.error.error_type == common.ERROR_TYPE_VALIDATION
        assert answer.error.failing_node_id == "flip" and "not a root" in answer.error.message

        empty = common.DataBuffer(metadata={"only": "metadata"})
        answer = execute(_manifest(pb, [("flip", "VideoFlip", {})]), inputs={"flip": empty})
        assert answer.error.error_type == common.ERROR_TYPE_VALIDATION
        assert "holds no data" in answer.error.message

        short = common.DataBuffer(video=common.VideoFrame(
            pixel_data=b"\x00" * 5, width=2, height=2, format=common.PIXEL_FORMAT_RGB24))
        answer = execute(_manifest(pb, [("flip", "VideoFlip", {})]), inputs={"flip": short})
        assert answer.error.error_type == common.ERROR_TYPE_NODE_EXECUTION
        assert answer.error.failing_node_id == "flip"
        assert "holds 12 bytes, this one 5" in answer.error.message
        assert "Traceback" in answer.error.stack_trace
