"""Workflows: stages of actions, run as supervised actors, here or in a child process."""

from actorstage.workflows import _builtin  # noqa: F401  (registers log, sleep, store.set, fail)
from actorstage.workflows._context import ActionContext, ActionLog, Store
from actorstage.workflows._defs import (
    ActionDef,
    StageDef,
    WorkflowDef,
    load_workflow,
    parse_workflow,
)
from actorstage.workflows._events import (
    ActionResult,
    BrokerMessage,
    ErrorInfo,
    MessageType,
    ProgressEvent,
    StageResult,
    Status,
    WorkflowResult,
)
from actorstage.workflows._middleware import EncryptPayloads, LogMessages, Metrics, Middleware
from actorstage.workflows._registry import Action, register_action, registered_actions
from actorstage.workflows._runner import Broker, Execution, Runner
from actorstage.workflows._state import PostgresState, SqliteState, StateError, StateStore
from actorstage.workflows._workflow import Workflow, read_workflow

__all__ = [
    "Action",
    "ActionContext",
    "ActionDef",
    "ActionLog",
    "ActionResult",
    "Broker",
    "BrokerMessage",
    "EncryptPayloads",
    "ErrorInfo",
    "Execution",
    "LogMessages",
    "MessageType",
    "Metrics",
    "Middleware",
    "PostgresState",
    "ProgressEvent",
    "Runner",
    "SqliteState",
    "StageDef",
    "StageResult",
    "StateError",
    "StateStore",
    "Status",
    "Store",
    "Workflow",
    "WorkflowDef",
    "WorkflowResult",
    "load_workflow",
    "parse_workflow",
    "read_workflow",
    "register_action",
    "registered_actions",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
