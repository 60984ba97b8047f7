"""The ``.proto`` files of actorstage's gRPC services, shipped inside the package.

They live under ``actorstage_proto/v1/``, so that the code a client generates
the standard way lands in a ``actorstage_proto`` package, next to an installed
``actorstage`` and never inside it; the protobuf package (and so every service
and method name on the wire) is ``actorstage.v1``. Generate a client with::

    python -m grpc_tools.protoc -I "$(actorstage protos)" --python_out=. \\
        --grpc_python_out=. actorstage_proto/v1/runner.proto actorstage_proto/v1/control.proto

then ``from actorstage_proto.v1 import runner_pb2, runner_pb2_grpc``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["SERVICES", "include_dir", "read"]

# The files a client needs, by service (bridge.proto is the parent-child protocol).
SERVICES = {
    "actorstage.v1.Runner": "actorstage_proto/v1/runner.proto",
    "actorstage.v1.ProgressControl": "actorstage_proto/v1/control.proto",
    "actorstage.v1.Pipelines": "actorstage_proto/v1/pipeline.proto",
    # RemoteMedia's own contract, served beside actorstage's (docs/guides/compatibility.md).
    "remotemedia.v1.PipelineExecutionService": "remotemedia/v1/execution.proto",
    "remotemedia.v1.StreamingPipelineService": "remotemedia/v1/streaming.proto",
    # Stigmer's workflow runner contract, and the status callback it calls.
    "ai.stigmer.agentic.workflowrunner.v1.WorkflowRunnerServiceController":
        "ai/stigmer/agentic/workflowrunner/v1/interface.proto",
    "ai.stigmer.agentic.workflowexecution.v1.WorkflowExecutionCommandController":
        "ai/stigmer/agentic/workflowexecution/v1/command.proto",
}


def include_dir() -> Path:
    """The directory to give ``protoc -I`` (or grpc-js's ``includeDirs``)."""
    return Path(str(files(__name__)))


def read(name: str) -> str:
    """The text of one file, such as ``"actorstage_proto/v1/runner.proto"``."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
