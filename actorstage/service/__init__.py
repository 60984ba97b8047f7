"""The runner service: workflows executed, watched and controlled over gRPC, and
pipeline manifests run over gRPC (``Pipelines``), on one server.

``actorstage serve`` runs it; ``open_service`` embeds it. The protobuf
messages and the client stubs (``RunnerStub``, ``PipelinesStub``) are
re-exported here for Python clients; ``ProgressControlBase`` is the base of
a progress callback endpoint.
"""

from actorstage._proto.actorstage.v1 import (
    ActionInfo,
    ControlRequest,
    ErrorInfo,
    ExecuteAsyncResponse,
    ExecutePipelineRequest,
    ExecutePipelineResponse,
    ExecuteRequest,
    ExecutionInfo,
    ExecutionStatus,
    GetExecutionRequest,
    Isolation,
    Item,
    ListActionsRequest,
    ListActionsResponse,
    ListExecutionsRequest,
    ListExecutionsResponse,
    PipelineItemFailure,
    PipelineNodeStats,
    PipelineOutput,
    PipelinesBase,
    PipelinesStub,
    PipelineStart,
    PipelineStarted,
    PipelineSummary,
    ProgressAck,
    ProgressControlBase,
    ProgressControlStub,
    ProgressEvent,
    RunnerBase,
    RunnerStub,
    StreamPipelineRequest,
    StreamPipelineResponse,
    WatchExecutionRequest,
    WorkflowMetadata,
)
from actorstage.service._callbacks import CallbackSender
from actorstage.service._metrics import PipelineMetrics, ServiceMetrics
from actorstage.service._pipeline_service import PipelineService
from actorstage.service._runner_service import RunnerService
from actorstage.service._server import RunnerServer, ServiceConfig, open_service

__all__ = [
    "ActionInfo",
    "CallbackSender",
    "ControlRequest",
    "ErrorInfo",
    "ExecuteAsyncResponse",
    "ExecutePipelineRequest",
    "ExecutePipelineResponse",
    "ExecuteRequest",
    "ExecutionInfo",
    "ExecutionStatus",
    "GetExecutionRequest",
    "Isolation",
    "Item",
    "ListActionsRequest",
    "ListActionsResponse",
    "ListExecutionsRequest",
    "ListExecutionsResponse",
    "PipelineItemFailure",
    "PipelineMetrics",
    "PipelineNodeStats",
    "PipelineOutput",
    "PipelineService",
    "PipelineStart",
    "PipelineStarted",
    "PipelineSummary",
    "PipelinesBase",
    "PipelinesStub",
    "ProgressAck",
    "ProgressControlBase",
    "ProgressControlStub",
    "ProgressEvent",
    "RunnerBase",
    "RunnerServer",
    "RunnerService",
    "RunnerStub",
    "ServiceConfig",
    "ServiceMetrics",
    "StreamPipelineRequest",
    "StreamPipelineResponse",
    "WatchExecutionRequest",
    "WorkflowMetadata",
    "open_service",
]

_GENERATED = "actorstage._proto.actorstage.v1"  # generated classes keep their own module
for _name in __all__:
    if globals()[_name].__module__ != _GENERATED:
        globals()[_name].__module__ = __name__
del _name
