"""Node.js's @grpc/grpc-js, loading our .proto files with @grpc/proto-loader, executes a
workflow on a running `actorstage serve` and reads its streamed progress, and streams a
pipeline's inputs and reads its outputs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.interop.conftest import PROTOS, serve
from tests.interop.pipeline_support import check_segments, recording_pieces, speech_manifest

WORKFLOW = """\
id: from-node
stages:
  - id: main
    actions:
      - {id: hello, action: log, params: {message: hello from node}}
      - {id: nap, action: sleep, params: {seconds: 0.05}}
      - {id: put, action: store.set, params: {key: answer, value: 42}}
"""


def test_a_node_client_executes_a_workflow_and_reads_its_progress(
    node_client: list[str], tmp_path: Path,
) -> None:
    definition = tmp_path / "flow.yaml"
    definition.write_text(WORKFLOW)
    with serve(env={"ACTORSTAGE_TOKEN": "node-token"}) as served:
        done = subprocess.run([*node_client, served.address, str(PROTOS), str(definition),
                               "node-token"], capture_output=True, text=True, timeout=60)
        refused = subprocess.run([*node_client, served.address, str(PROTOS), str(definition)],
                                 capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    *events, info = [json.loads(line) for line in done.stdout.splitlines()]
    assert [event["kind"] for event in events] == [
        "workflow_started", "stage_started", "action_started", "log", "action_finished",
        "action_started", "action_finished", "action_started", "action_finished",
        "stage_finished", "workflow_finished"]
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(set(seqs))
    assert events[3]["message"] == "INFO: hello from node"
    assert events[-1]["status"] == "EXECUTION_STATUS_SUCCEEDED"
    assert json.loads(events[-1]["store_json"]) == {"caller": "node", "answer": 42}
    assert info["status"] == "EXECUTION_STATUS_SUCCEEDED"
    assert info["metadata"]["labels"] == {"client": "node"}
    assert refused.returncode == 1
    assert "Execute failed: 16 missing credentials" in refused.stderr  # 16: UNAUTHENTICATED


def test_a_node_client_streams_a_pipeline_and_reads_its_outputs(
    node_client: list[str], tmp_path: Path,
) -> None:
    manifest = speech_manifest(tmp_path)
    inputs = tmp_path / "inputs.jsonl"
    pieces = recording_pieces(tmp_path)
    inputs.write_text("".join(json.dumps({"data": base64.b64encode(piece).decode()}) + "\n"
                              for piece in pieces))
    script = str(Path(node_client[1]).with_name("pipeline_client.js"))
    with serve(env={"ACTORSTAGE_TOKEN": "node-token"}) as served:
        done = subprocess.run([node_client[0], script, served.address, str(PROTOS),
                               str(manifest), str(inputs), "node-token"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    started, *middle, last = [json.loads(line) for line in done.stdout.splitlines()]
    assert started["started"]["session_id"] == "node"
    assert set(started["started"]["pids"]) == {"resample", "vad"}
    outputs = [output for response in middle for output in response["outputs"]]
    assert [output["node_id"] for output in outputs] == ["report"]
    check_segments(json.loads(outputs[0]["item"]["json"]))
    summary = last["summary"]
    assert summary["status"] == "EXECUTION_STATUS_SUCCEEDED", summary
    assert summary["outputs"] == 1
    chunker = next(node for node in summary["nodes"] if node["node_id"] == "chunker")
    assert chunker["items_in"] == len(pieces)


def test_a_node_remotemedia_client_calls_every_rpc_of_remotemedias_services(
    node_client: list[str], tmp_path: Path,
) -> None:
    """@grpc/grpc-js with proto-loader, from the remotemedia.v1 files actorstage ships."""
    client = [node_client[0], str(Path(node_client[1]).parent / "remotemedia_client.js")]
    held = tmp_path / "held"
    with serve("--import", "tests.pipelines.nodes",
               env={"ACTORSTAGE_TOKEN": "node-token"}) as served:
        done = subprocess.run([*client, served.address, str(PROTOS), "node-token"],
                              capture_output=True, text=True, timeout=90,
                              env={**os.environ, "HOLD_FILE": str(held)})
        refused = subprocess.run([*client, served.address, str(PROTOS), "wrong"],
                                 capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    calls: dict[str, list[Any]] = {}
    for line in lines:
        calls.setdefault(line["call"], []).append(line["value"])
    [version] = calls["version"]
    assert version["version_info"]["protocol_version"] == "v1" and version["compatible"]
    assert "VideoFlip" in version["version_info"]["supported_node_types"]
    [answer] = calls["execute"]
    assert answer["outcome"] == "result"
    assert answer["result"]["data_outputs"]["flip"]["video"]["pixel_data"] == [
        0, 0, 255, 255, 255, 255, 255, 0, 0, 0, 255, 0]
    assert answer["result"]["status"] == "EXECUTION_STATUS_SUCCESS"
    closing = calls["stream-COMMAND_CLOSE"]
    assert closing[0]["response"] == "ready" and closing[-1]["response"] == "closed"
    results = [(r["result"]["sequence"],
                json.loads(r["result"]["data_outputs"]["echo"]["json"]["json_payload"]))
               for r in closing if r["response"] == "result"]
    assert results == [(s, tick) for s in range(12) for tick in range(s % 3)]
    assert [m["metrics"]["chunks_processed"] for m in closing if m["response"] == "metrics"] \
        == [10]
    assert closing[-1]["closed"]["reason"] == "Client requested close"
    cancelling = calls["stream-COMMAND_CANCEL"]
    assert [r["response"] for r in cancelling] == ["ready", "closed"]
    assert cancelling[-1]["closed"]["reason"] == "Client requested cancel"
    assert held.read_text() == "3"  # the node had the chunk when the cancel came
    assert refused.returncode == 1
    assert "GetVersion failed: 16" in refused.stderr  # 16: UNAUTHENTICATED
