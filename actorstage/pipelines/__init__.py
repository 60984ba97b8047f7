"""Pipelines: manifests of nodes and connections, each node in this process or its own.

A manifest (JSON or YAML, ``version: "v1"``) names nodes (registered
``Node`` types with typed params) and the connections between them. Each
node is an actor; each connection a bounded channel with backpressure.
Nodes with ``executor: process`` run in child processes, their large
binary payloads moving through shared memory.
"""

from actorstage.pipelines import _builtin, _media_nodes, _remote  # register the node types
from actorstage.pipelines._adapter import register_remotemedia_node
from actorstage.pipelines._audio import (
    Audio,
    AudioChunk,
    SpeechSegment,
    read_wav,
    write_wav,
)
from actorstage.pipelines._builtin import (
    AudioChunkerNode,
    CallableNode,
    CollectorNode,
    GainNode,
    IdentityNode,
    JsonMapperNode,
    ResamplerNode,
    VadNode,
)
from actorstage.pipelines._config import RuntimeConfig, Settings, load_runtime_config
from actorstage.pipelines._manifest import (
    Connection,
    Manifest,
    ManifestError,
    Metadata,
    MultiprocessSettings,
    NodeSpec,
    Placement,
    Problem,
    RaySpec,
    load_manifest,
    parse_manifest,
)
from actorstage.pipelines._media import Control, FileRef, Tensor, VideoFrame
from actorstage.pipelines._pipeline import Pipeline
from actorstage.pipelines._plan import Plan, check_manifest
from actorstage.pipelines._registry import Node, RegisteredNode, register_node, registered_nodes
from actorstage.pipelines._session import (
    ItemFailure,
    NodeStats,
    Output,
    PipelineError,
    PipelineResult,
    PipelineSession,
)

__all__ = [
    "Audio",
    "AudioChunk",
    "AudioChunkerNode",
    "CallableNode",
    "CollectorNode",
    "Connection",
    "Control",
    "FileRef",
    "GainNode",
    "IdentityNode",
    "ItemFailure",
    "JsonMapperNode",
    "Manifest",
    "ManifestError",
    "Metadata",
    "MultiprocessSettings",
    "Node",
    "NodeSpec",
    "NodeStats",
    "Output",
    "Pipeline",
    "PipelineError",
    "PipelineResult",
    "PipelineSession",
    "Placement",
    "Plan",
    "Problem",
    "RaySpec",
    "RegisteredNode",
    "ResamplerNode",
    "RuntimeConfig",
    "Settings",
    "SpeechSegment",
    "Tensor",
    "VadNode",
    "VideoFrame",
    "check_manifest",
    "load_manifest",
    "load_runtime_config",
    "parse_manifest",
    "read_wav",
    "register_node",
    "register_remotemedia_node",
    "registered_nodes",
    "write_wav",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _builtin, _media_nodes, _remote, _name
