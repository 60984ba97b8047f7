"""Google's grpcio, with stubs generated from our .proto files, calls every RPC of a running
`actorstage serve`, and serves as its progress callback endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from tests.interop.conftest import serve
from tests.interop.pipeline_support import check_segments, recording_pieces, speech_manifest
from tests.service.helpers import alive

WORKFLOW = json.dumps({"id": "interop", "stages": [{"id": "main", "actions": [
    {"id": "hello", "action": "log", "params": {"message": "from grpcio"}},
    {"id": "put", "action": "store.set", "params": {"key": "answer", "value": 42}}]}]})

LONG = json.dumps({"id": "long", "stages": [{"id": "main", "actions": [
    {"id": "nap", "action": "sleep", "params": {"seconds": 60}}]}]})

TOKEN = "interop-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def _until(stubs: dict[str, ModuleType], runner: Any, execution_id: str, kind: str) -> Any:
    pb = stubs["runner_pb2"]
    for event in runner.WatchExecution(pb.WatchExecutionRequest(execution_id=execution_id),
                                       metadata=AUTH, timeout=30):
        if event.kind == kind:
            return event
    raise AssertionError(f"no {kind} event")


def test_grpcio_calls_every_rpc(grpcio_stubs: dict[str, ModuleType]) -> None:
    pb, pb_grpc = grpcio_stubs["runner_pb2"], grpcio_stubs["runner_pb2_grpc"]
    with serve(env={"ACTORSTAGE_TOKEN": TOKEN}) as served, \
            grpc.insecure_channel(served.address) as channel:
        runner = pb_grpc.RunnerStub(channel)
        status = pb.ExecutionStatus

        with pytest.raises(grpc.RpcError) as caught:  # no token
            runner.ListActions(pb.ListActionsRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        actions = runner.ListActions(pb.ListActionsRequest(), metadata=AUTH, timeout=10)
        assert {"log", "sleep", "store.set", "fail"} <= {action.id for action in actions.actions}

        request = pb.ExecuteRequest(
            execution_id="g1", workflow=WORKFLOW, store_json='{"from": "grpcio"}',
            metadata=pb.WorkflowMetadata(name="interop", version="1", labels={"via": "grpcio"}))
        events = list(runner.Execute(request, metadata=AUTH, timeout=30))
        assert events[0].kind == "workflow_started"
        assert events[-1].kind == "workflow_finished"
        assert events[-1].status == status.EXECUTION_STATUS_SUCCEEDED
        assert json.loads(events[-1].store_json) == {"from": "grpcio", "answer": 42}
        assert any(event.kind == "log" and "from grpcio" in event.message for event in events)

        info = runner.GetExecution(pb.GetExecutionRequest(execution_id="g1"), metadata=AUTH,
                                   timeout=10)
        assert (info.status, info.metadata.labels["via"]) == (
            status.EXECUTION_STATUS_SUCCEEDED, "grpcio")
        watched = list(runner.WatchExecution(
            pb.WatchExecutionRequest(execution_id="g1", after_seq=events[2].seq),
            metadata=AUTH, timeout=30))
        assert [event.seq for event in watched] == [event.seq for event in events[3:]]

        started = runner.ExecuteAsync(pb.ExecuteRequest(execution_id="g2", workflow=LONG),
                                      metadata=AUTH, timeout=10)
        assert (started.execution_id, started.status) == (
            "g2", status.EXECUTION_STATUS_RUNNING)
        _until(grpcio_stubs, runner, "g2", "action_started")
        paused = runner.PauseExecution(pb.ControlRequest(execution_id="g2", reason="r1"),
                                       metadata=AUTH, timeout=10)
        assert paused.status == status.EXECUTION_STATUS_PAUSED
        _until(grpcio_stubs, runner, "g2", "workflow_paused")
        resumed = runner.ResumeExecution(pb.ControlRequest(execution_id="g2"), metadata=AUTH,
                                         timeout=10)
        assert resumed.status == status.EXECUTION_STATUS_RUNNING
        runner.CancelExecution(pb.ControlRequest(execution_id="g2", reason="done"),
                               metadata=AUTH, timeout=10)
        end = _until(grpcio_stubs, runner, "g2", "workflow_finished")
        assert end.status == status.EXECUTION_STATUS_CANCELLED

        listed = runner.ListExecutions(pb.ListExecutionsRequest(page_size=1), metadata=AUTH,
                                       timeout=10)
        assert [info.execution_id for info in listed.executions] == ["g1"]
        rest = runner.ListExecutions(pb.ListExecutionsRequest(
            page_token=listed.next_page_token), metadata=AUTH, timeout=10)
        assert [info.execution_id for info in rest.executions] == ["g2"]

        errors = [
            (lambda: runner.GetExecution(pb.GetExecutionRequest(execution_id="nope"),
                                         metadata=AUTH, timeout=10),
             grpc.StatusCode.NOT_FOUND, "no execution 'nope'"),
            (lambda: runner.ResumeExecution(pb.ControlRequest(execution_id="g2"),
                                            metadata=AUTH, timeout=10),
             grpc.StatusCode.FAILED_PRECONDITION, "already ended (cancelled)"),
            (lambda: list(runner.Execute(pb.ExecuteRequest(workflow="id: [x"), metadata=AUTH,
                                         timeout=10)),
             grpc.StatusCode.INVALID_ARGUMENT, "not valid YAML"),
        ]
        for call, code, text in errors:
            with pytest.raises(grpc.RpcError) as caught:
                call()  # type: ignore[no-untyped-call]
            assert caught.value.code() == code and text in caught.value.details()


def test_a_grpcio_server_receives_the_progress_callbacks(
    grpcio_stubs: dict[str, ModuleType],
) -> None:
    pb, pb_grpc = grpcio_stubs["runner_pb2"], grpcio_stubs["runner_pb2_grpc"]
    control_pb, control_grpc = grpcio_stubs["control_pb2"], grpcio_stubs["control_pb2_grpc"]
    received: list[Any] = []
    tokens: set[str] = set()
    finished = threading.Event()

    class Control(control_grpc.ProgressControlServicer):  # type: ignore[misc, name-defined]
        def ReportProgress(self, event: Any, context: Any) -> Any:
            tokens.add(dict(context.invocation_metadata()).get("authorization", ""))
            received.append(event)
            if event.kind == "workflow_finished":
                finished.set()
            return control_pb.ProgressAck()

    endpoint = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    control_grpc.add_ProgressControlServicer_to_server(Control(), endpoint)
    port = endpoint.add_insecure_port("127.0.0.1:0")
    endpoint.start()
    try:
        with serve("--callback", f"127.0.0.1:{port}",
                   env={"ACTORSTAGE_CALLBACK_TOKEN": "cb"}) as served, \
                grpc.insecure_channel(served.address) as channel:
            runner = pb_grpc.RunnerStub(channel)
            events = list(runner.Execute(pb.ExecuteRequest(execution_id="cb", workflow=WORKFLOW),
                                         timeout=30))
            assert finished.wait(30)
    finally:
        endpoint.stop(None)
    assert [(event.seq, event.kind) for event in received] == [
        (event.seq, event.kind) for event in events]
    assert tokens == {"Bearer cb"}


def test_grpcio_streams_a_pipeline_with_process_nodes(
    grpcio_stubs: dict[str, ModuleType], tmp_path: Path,
) -> None:
    pb, pb_grpc = grpcio_stubs["pipeline_pb2"], grpcio_stubs["pipeline_pb2_grpc"]
    status = grpcio_stubs["runner_pb2"].ExecutionStatus
    manifest = speech_manifest(tmp_path).read_text()
    pieces = recording_pieces(tmp_path)
    sent: list[int] = []

    def requests() -> Iterator[Any]:
        yield pb.StreamPipelineRequest(start=pb.PipelineStart(manifest=manifest,
                                                              session_id="grpcio"))
        for piece in pieces:
            sent.append(len(piece))
            yield pb.StreamPipelineRequest(inputs=[pb.Item(data=piece)])

    with serve(env={"ACTORSTAGE_TOKEN": TOKEN}) as served, \
            grpc.insecure_channel(served.address) as channel:
        pipelines = pb_grpc.PipelinesStub(channel)
        with pytest.raises(grpc.RpcError) as caught:  # the runner's token guards it too
            pipelines.ExecutePipeline(pb.ExecutePipelineRequest(
                start=pb.PipelineStart(manifest=manifest)), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as caught:
            pipelines.ExecutePipeline(pb.ExecutePipelineRequest(
                start=pb.PipelineStart(manifest='{"version": "v2"}')), metadata=AUTH,
                timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "version" in (caught.value.details() or "")

        responses = list(pipelines.StreamPipeline(requests(), metadata=AUTH, timeout=60))
        started, *middle, last = responses
        pids = dict(started.started.pids)
        assert started.started.session_id == "grpcio" and set(pids) == {"resample", "vad"}
        assert not any(alive(pid) for pid in pids.values())  # they ended with the session
        outputs = [output for response in middle for output in response.outputs]
        assert [output.node_id for output in outputs] == ["report"]  # the collector's list
        check_segments(json.loads(outputs[0].item.json))
        summary = last.summary
        assert summary.status == status.EXECUTION_STATUS_SUCCEEDED
        assert summary.outputs == 1 and sum(sent) == sum(map(len, pieces))
        stats = {node.node_id: node for node in summary.nodes}
        assert stats["chunker"].items_in == len(pieces)
        assert stats["vad"].executor == "process" and stats["vad"].items_in > 150
    assert served.process.returncode == 0
