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


class _Requests:
    """A request stream the test writes to while it reads the answers (as a live client)."""

    def __init__(self) -> None:
        import queue

        self.queue: queue.Queue[Any] = queue.Queue()

    def send(self, request: Any) -> None:
        self.queue.put(request)

    def end(self) -> None:
        self.queue.put(None)

    def __iter__(self) -> Any:
        while (request := self.queue.get()) is not None:
            yield request


def _streaming(stubs: dict[str, ModuleType]) -> tuple[Any, Any, Any, Any]:
    return (stubs["common_pb2"], stubs["execution_pb2"], stubs["streaming_pb2"],
            stubs["streaming_pb2_grpc"])


def test_streaming_echoes_each_chunks_sequence_and_closes_after_the_last_result(
        remotemedia_stubs: dict[str, ModuleType]) -> None:
    common, pb, stream_pb, stream_grpc = _streaming(remotemedia_stubs)
    manifest = _manifest(pb, [("in", "PassThrough", {}), ("tick", "test.Ticker", {}),
                              ("echo", "EchoNode", {})], [("in", "tick"), ("tick", "echo")])
    with serve("--import", "tests.pipelines.nodes", env={"ACTORSTAGE_TOKEN": TOKEN}) as served, \
            grpc.insecure_channel(served.address) as channel:
        stub = stream_grpc.StreamingPipelineServiceStub(channel)
        requests = _Requests()
        responses = stub.StreamPipeline(iter(requests), metadata=AUTH, timeout=60)
        requests.send(stream_pb.StreamRequest(init=stream_pb.StreamInit(
            manifest=manifest, client_version="v1", expected_chunk_size=1024)))
        ready = next(responses)
        assert ready.WhichOneof("response") == "ready", ready
        assert ready.ready.session_id and ready.ready.recommended_chunk_size == 1024
        assert ready.ready.max_buffer_latency_ms > 0
        for sequence in range(25):  # chunk s gives s % 3 results: 0, 1, .. (s % 3) - 1
            requests.send(stream_pb.StreamRequest(data_chunk=stream_pb.DataChunk(
                node_id="in", sequence=sequence,
                buffer=common.DataBuffer(json=common.JsonData(
                    json_payload=json.dumps(sequence % 3))))))
        requests.send(stream_pb.StreamRequest(control=stream_pb.StreamControl(
            command=stream_pb.StreamControl.COMMAND_CLOSE)))
        requests.end()
        answers = list(responses)
    kinds = [answer.WhichOneof("response") for answer in answers]
    assert kinds[-1] == "closed" and "error" not in kinds, answers[-1]
    results = [answer.result for answer in answers if answer.HasField("result")]
    got = [(result.sequence, json.loads(result.data_outputs["echo"].json.json_payload))
           for result in results]
    assert got == [(sequence, tick) for sequence in range(25) for tick in range(sequence % 3)]
    assert [result.total_items_processed for result in results] == list(
        range(1, len(results) + 1))
    metrics = [answer.metrics for answer in answers if answer.HasField("metrics")]
    assert [m.chunks_processed for m in metrics] == [10, 20]
    assert all(m.session_id == ready.ready.session_id for m in metrics)
    assert dict(metrics[-1].data_type_breakdown) == {"json": 20}
    closed = answers[-1].closed
    assert closed.reason == "Client requested close"
    assert closed.session_id == ready.ready.session_id
    assert closed.final_metrics.wall_time_ms > 0
    assert closed.final_metrics.node_metrics["echo"].items_processed == len(results)


def test_streaming_protocol_problems_come_back_in_band(
        remotemedia_stubs: dict[str, ModuleType], tmp_path: Any) -> None:
    common, pb, stream_pb, stream_grpc = _streaming(remotemedia_stubs)
    text = common.DataBuffer(text=common.TextBuffer(text_data=b"hi"))
    init = stream_pb.StreamRequest(init=stream_pb.StreamInit(
        manifest=_manifest(pb, [("in", "PassThrough", {})]), client_version="v1"))

    def chunk(sequence: int, node_id: str = "in", buffer: Any = text) -> Any:
        return stream_pb.StreamRequest(data_chunk=stream_pb.DataChunk(
            node_id=node_id, sequence=sequence, buffer=buffer))

    with serve("--import", "tests.pipelines.nodes", env={"ACTORSTAGE_TOKEN": TOKEN}) as served, \
            grpc.insecure_channel(served.address) as channel:
        stub = stream_grpc.StreamingPipelineServiceStub(channel)

        def answers(*requests: Any) -> list[Any]:
            return list(stub.StreamPipeline(iter(requests), metadata=AUTH, timeout=30))

        with pytest.raises(grpc.RpcError) as caught:
            list(stub.StreamPipeline(iter([init]), timeout=10))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        [error] = answers(chunk(0))
        assert error.error.error_type == common.ERROR_TYPE_VALIDATION
        assert error.error.message == "StreamInit required before DataChunk"

        # A problem ends the stream at once: what was in flight may or may not get out.
        ready, *results, error = answers(init, chunk(0), init)
        assert ready.HasField("ready") and [r.result.sequence for r in results] in ([], [0])
        assert error.error.message == "StreamInit already received"

        ready, *results, error = answers(init, chunk(5), chunk(3))
        assert [r.result.sequence for r in results] in ([], [5])
        assert error.error.message == "Out-of-order chunk: expected sequence 6, got 3"

        ready, error = answers(init, chunk(0, node_id="nowhere"))
        assert error.error.failing_node_id == "nowhere"
        assert "no node has the id 'nowhere'" in error.error.message

        ready, error = answers(init, chunk(0, buffer=common.DataBuffer()))
        assert "holds no data" in error.error.message

        bad = stream_pb.StreamRequest(init=stream_pb.StreamInit(
            manifest=_manifest(pb, [("in", "VideoFlip", {"direction": 3})])))
        [error] = answers(bad)
        [problem] = json.loads(error.error.message)
        assert (problem["node_id"], problem["path"], problem["constraint"]) == (
            "in", "/direction", "type")

        # CANCEL stops a stream whose node is stuck, at once, and says so.
        held = tmp_path / "held"
        stuck = stream_pb.StreamRequest(init=stream_pb.StreamInit(manifest=_manifest(
            pb, [("hold", "test.Hold", {"path": str(held)})])))
        requests = _Requests()
        responses = stub.StreamPipeline(iter(requests), metadata=AUTH, timeout=30)
        requests.send(stuck)
        assert next(responses).HasField("ready")
        requests.send(chunk(0, node_id="hold", buffer=common.DataBuffer(
            binary=common.BinaryBuffer(data=b"abc"))))
        import time

        deadline = time.monotonic() + 20
        while not held.exists():
            assert time.monotonic() < deadline, "the node never got the chunk"
            time.sleep(0.02)
        requests.send(stream_pb.StreamRequest(control=stream_pb.StreamControl(
            command=stream_pb.StreamControl.COMMAND_CANCEL)))
        requests.end()
        [closed] = list(responses)
        assert closed.closed.reason == "Client requested cancel"


def test_a_remotemedia_deployments_environment_and_runtime_toml_configure_serve(
        remotemedia_stubs: dict[str, ModuleType], tmp_path: Any) -> None:
    """Started as RemoteMedia's server is: GRPC_* variables, runtime.toml in its folder."""
    import sys

    common, pb, pb_grpc = _stubs(remotemedia_stubs)
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "shout.py").write_text(
        "from actorstage.pipelines import Node, register_node\n\n"
        "@register_node('Shout')\nclass Shout(Node):\n"
        "    executor = 'process'\n\n"
        "    async def process(self, item):\n        return item.upper()\n")
    (tmp_path / "runtime.toml").write_text(  # RemoteMedia's keys, and two it alone uses
        "max_processes_per_session = 4\nchannel_capacity = 100\ninit_timeout_secs = 30\n"
        f"python_executable = {sys.executable!r}\nenable_backpressure = true\n"
        "docker_fallback_policy = 'AllowWithWarning'\npython_path = ['nodes']\n"
        "imports = ['shout']\n\n[python_env]\nmode = 'system'\n")
    env = {"GRPC_BIND_ADDRESS": "127.0.0.1:0", "GRPC_REQUIRE_AUTH": "true",
           "GRPC_AUTH_TOKENS": "first-token, second-token"}
    with serve(env=env, cwd=tmp_path, any_port=False) as served, \
            grpc.insecure_channel(served.address) as channel:
        service = pb_grpc.PipelineExecutionServiceStub(channel)
        request = pb.ExecuteRequest(
            manifest=_manifest(pb, [("shout", "Shout", {})]),
            data_inputs={"shout": common.DataBuffer(text=common.TextBuffer(text_data=b"hey"))})
        for token in ("first-token", "second-token"):
            answer = service.ExecutePipeline(
                request, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
            assert answer.result.data_outputs["shout"].text.text_data == b"HEY", answer
        with pytest.raises(grpc.RpcError) as caught:
            service.ExecutePipeline(request, metadata=(("authorization", "Bearer third"),),
                                    timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    output = "\n".join(served.lines)
    assert "docker_fallback_policy, python_env are RemoteMedia's and not used here" in output


def test_a_remote_pipeline_node_on_one_server_calls_a_second_server(
        remotemedia_stubs: dict[str, ModuleType]) -> None:
    """Server A runs PassThrough -> RemotePipelineNode; the node streams to server B."""
    common, pb, stream_pb, stream_grpc = _streaming(remotemedia_stubs)
    nested = {"version": "v1", "metadata": {"name": "far"},
              "nodes": [{"id": "flip", "node_type": "VideoFlip",
                         "params": {"direction": "both"}}], "connections": []}
    with serve(env={"ACTORSTAGE_TOKEN": "b-token"}) as far, \
            serve(env={"ACTORSTAGE_TOKEN": TOKEN}) as near, \
            grpc.insecure_channel(near.address) as channel:
        manifest = _manifest(pb, [
            ("in", "PassThrough", {}),
            ("remote", "RemotePipelineNode", {"transport": "grpc", "endpoint": far.address,
                                              "manifest": nested, "auth_token": "b-token",
                                              "timeout_ms": 10000})], [("in", "remote")])
        stub = stream_grpc.StreamingPipelineServiceStub(channel)
        frames = [bytes([i, i, i, 0, 0, 0, 9, 9, 9, 1, 2, 3]) for i in range(5)]
        requests = [stream_pb.StreamRequest(init=stream_pb.StreamInit(manifest=manifest))]
        requests += [stream_pb.StreamRequest(data_chunk=stream_pb.DataChunk(
            node_id="in", sequence=sequence, buffer=common.DataBuffer(video=common.VideoFrame(
                pixel_data=frame, width=2, height=2, format=common.PIXEL_FORMAT_RGB24))))
            for sequence, frame in enumerate(frames)]
        requests.append(stream_pb.StreamRequest(control=stream_pb.StreamControl(
            command=stream_pb.StreamControl.COMMAND_CLOSE)))
        answers = list(stub.StreamPipeline(iter(requests), metadata=AUTH, timeout=60))
    assert answers[-1].HasField("closed"), answers[-1]
    flipped = [answer.result.data_outputs["remote"].video.pixel_data
               for answer in answers if answer.HasField("result")]
    # both ways: the last pixel first, then the rest backwards
    assert flipped == [frame[9:12] + frame[6:9] + frame[3:6] + frame[0:3] for frame in frames]
