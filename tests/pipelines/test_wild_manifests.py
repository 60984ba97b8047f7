"""Manifests as other systems write them: RemoteMedia's v1 files carry many keys actorstage
does not use. Written here after the shapes of the 35 v1 manifests in RemoteMedia's
repository (every key path they use, in JSON and YAML): none is refused for such keys;
each is kept and named; ``strict`` refuses them."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import yaml

from actorstage.pipelines import ManifestError, Pipeline, check_manifest, parse_manifest
from tests.pipelines.helpers import manifest_doc

pytestmark = pytest.mark.anyio

# The YAML family (RemoteMedia's CLI and shared pipelines, its Docker examples).
CLI_STYLE = """
version: v1
metadata:
  name: transcribe-and-caption
  description: speech to captions
  category: transcription
  author: someone
  created_at: "2025-01-01"
  cli_defaults: {sample_rate: 16000, channels: 1, stream: true}
python_env: {python_version: "3.11"}
config:
  execution_mode: streaming
  enable_caching: true
  cache_ttl_seconds: 60
  enable_metrics: true
  metrics_port: 9100
  max_concurrent_sessions: 4
  log_level: info
  metrics: {}
  cost_optimization: {}
defaults: {sample_rate: 16000, channels: 1}
nodes:
  - id: input
    node_type: PassThrough
    is_streaming: true
    description: the microphone
    comment: first
    params: {}
  - id: stt
    node_type: PassThrough
    is_streaming: true
    runtime_hint: cpython
    python_deps: [numpy]
    docker:
      python_version: "3.11"
      python_packages: [torch]
      system_dependencies: [ffmpeg]
      env: {PYTHONUNBUFFERED: "1"}
      resource_limits: {cpu_cores: 2, memory_mb: 2048, gpu_devices: ["0"]}
      security: {user: "1000", group: "1000", read_only_rootfs: true, cap_drop: [ALL],
                 cap_add: [], security_opt: [], tmpfs_mounts: [], enable_apparmor: false,
                 apparmor_profile: ""}
    params: {model: base, language: en, device: cpu}
connections:
  - {from: input, to: stt, from_port: default, to_port: default, type: audio,
     params: {buffer_size: 4, condition: any, filter_silence: true},
     comment: speech, description: to the recogniser}
"""

# The JSON family (its web app and remote-pipeline examples), camelCase in places.
JSON_STYLE = {
    "version": "v1",
    "metadata": {"name": "speech-to-speech", "description": "s2s", "createdAt": "2025-02-02",
                 "expectedLatency": "300ms", "optimization": "latency", "version": "1.0",
                 "references": ["a"], "note": "n"},
    "nodes": [
        {"id": "vad", "node_type": "EchoNode", "isStreaming": True,
         "params": {"samplingRate": 16000, "minSpeechDurationMs": 250}},
        {"id": "tts", "node_type": "PassthroughNode", "params": {"voice": "af"}},
    ],
    "connections": [{"from": "vad", "to": "tts"}],
}

NODE_TYPE_CAMEL = {"version": "v1", "metadata": {"name": "camel", "description": ""},
                   "nodes": [{"id": "n", "nodeType": "PassThrough", "params": {}}],
                   "connections": []}


async def test_a_manifest_full_of_keys_actorstage_does_not_use_parses_and_keeps_them(
        caplog: pytest.LogCaptureFixture) -> None:
    manifest = parse_manifest(CLI_STYLE, format="yaml")
    assert {"python_env", "config", "defaults", "metadata.category", "metadata.author",
            "metadata.created_at", "metadata.cli_defaults", "nodes[0].is_streaming",
            "nodes[0].comment", "nodes[1].runtime_hint", "nodes[1].python_deps",
            "nodes[1].docker", "connections[0].type", "connections[0].params",
            "connections[0].comment"} <= set(manifest.unused)
    assert manifest.unused["nodes[1].docker"]["resource_limits"]["memory_mb"] == 2048
    assert manifest.nodes[1].params == {"model": "base", "language": "en", "device": "cpu"}
    assert "nodes[0].description" in manifest.unused  # (a node has no description here)
    connection = manifest.connections[0]
    assert (connection.from_port, connection.to_port) == ("default", "default")
    assert [str(problem) for problem in manifest.warnings()][:1] == [
        "python_env: not used by actorstage (kept as it is)"]
    with caplog.at_level(logging.WARNING, logger="actorstage.pipelines"):
        Pipeline(manifest)  # runs: only unused keys
    assert "manifest keys are not used by actorstage (kept): python_env" in caplog.text

    json_manifest = parse_manifest(json.dumps(JSON_STYLE))
    assert {"metadata.createdAt", "metadata.expectedLatency", "nodes[0].isStreaming",
            "metadata.version"} <= set(json_manifest.unused)
    check_manifest(json_manifest)


async def test_strict_refuses_every_unused_key_with_its_place() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(CLI_STYLE, format="yaml", strict=True)
    places = {problem.location.split(" ")[0] for problem in caught.value.problems}
    assert {"python_env", "config", "defaults", "metadata", "nodes[0]", "nodes[1]",
            "connections[0]"} <= {place.split(".")[0] for place in places}
    assert len(caught.value.problems) >= 10


async def test_node_type_spelled_node_type_in_camel_case_is_refused_for_that_only() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(json.dumps(NODE_TYPE_CAMEL))
    [problem] = caught.value.problems
    assert problem.location == "nodes[0].node_type"
    assert "spells it `nodeType`" in problem.message and "write `node_type`" in problem.message


async def test_a_port_other_than_default_is_a_problem_naming_the_node() -> None:
    doc = manifest_doc([{"id": "a", "node_type": "PassThrough"},
                        {"id": "b", "node_type": "PassThrough"}], [("a", "b")])
    doc["connections"][0]["from_port"] = "left"
    with pytest.raises(ManifestError, match=r"connections\[0\]\.from_port: 'left' is no "
                                            r"output of node 'a'"):
        Pipeline(parse_manifest(json.dumps(doc)))


async def test_real_problems_are_still_reported_all_at_once_beside_unused_keys() -> None:
    doc: dict[str, Any] = yaml.safe_load(CLI_STYLE)
    doc["nodes"][1]["node_type"] = "SileroVAD"
    doc["connections"].append({"from": "stt", "to": "ghost", "comment": "x"})
    with pytest.raises(ManifestError) as caught:
        Pipeline(parse_manifest(yaml.safe_dump(doc), format="yaml"))
    text = str(caught.value)
    assert "unknown node type 'SileroVAD'" in text and "no node has the id 'ghost'" in text
