"""What a running workflow reports: broker messages, progress events, results.

No ``from __future__ import annotations`` here (see ``_defs``).
"""

import enum
from typing import Any

import msgspec

from actorstage.actors._message import Message

__all__ = [
    "ActionResult",
    "BrokerMessage",
    "ErrorInfo",
    "MessageType",
    "ProgressEvent",
    "StageResult",
    "Status",
    "WorkflowResult",
]


class MessageType(enum.StrEnum):
    """The kinds of broker messages the runtime sends; any other string is a custom kind."""

    LOG = "log"
    STORE_PUT = "store.put"
    STORE_DELETE = "store.delete"
    FINAL_STORE = "final_store"
    PROGRESS = "progress"
    # For a durable runner's state: the end of a running sleep, and a Serverless Workflow's
    # step boundaries (its next top-level task, its data and context).
    TIMER = "timer"
    CHECKPOINT = "checkpoint"


# gostage's names of the same messages (its broker's MessageType values): handlers may be
# registered under them, and ctx.send may use them.
GOSTAGE_TYPES: dict[str, str] = {"store_put": MessageType.STORE_PUT,
                                 "store_delete": MessageType.STORE_DELETE}
# ... and gostage's start and result messages: the progress events that say so.
GOSTAGE_PROGRESS: dict[str, str] = {"workflow_start": "workflow_started",
                                    "workflow_result": "workflow_finished"}


def canonical(message_type: str) -> str:
    """actorstage's name of a message type given in gostage's spelling (or as it is)."""
    return GOSTAGE_TYPES.get(message_type, message_type)


class Status(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why something failed, as text that can cross a process boundary."""

    type_name: str
    message: str
    traceback: str = ""
    stage_id: str = ""
    action_id: str = ""


class ProgressEvent(Message, frozen=True, kw_only=True):
    """A workflow, stage or action started, ended, or is retried.

    ``kind`` is one of ``workflow_started``, ``workflow_finished``,
    ``workflow_paused``, ``workflow_resumed``, ``stage_started``,
    ``stage_finished``, ``action_started``, ``action_finished``,
    ``action_retry``. ``seq`` increases by one per event of an execution.
    """

    seq: int
    kind: str
    execution_id: str
    workflow_id: str
    stage_id: str = ""
    action_id: str = ""
    status: str = ""
    attempt: int = 0
    time: float = 0.0  # seconds since the epoch
    error: ErrorInfo | None = None
    task: str = ""
    data: Any = None


class BrokerMessage(Message, frozen=True, kw_only=True):
    """One message from a running workflow to the broker's handlers."""

    message_type: str
    payload: Any
    execution_id: str
    workflow_id: str
    stage_id: str = ""
    action_id: str = ""
    seq: int = 0  # per execution, in the order the broker received them
    time: float = 0.0


class ActionResult(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    action: str
    status: Status
    attempts: int
    started_at: float
    duration: float  # seconds
    error: ErrorInfo | None = None


class StageResult(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: Status
    started_at: float
    duration: float
    actions: list[ActionResult]


class WorkflowResult(msgspec.Struct, frozen=True, kw_only=True):
    """How an execution ended: its status, final store, timings, and the error if any;
    ``output`` is a Serverless Workflow's output."""

    execution_id: str
    workflow_id: str
    status: Status
    store: dict[str, Any]
    stages: list[StageResult]
    started_at: float
    duration: float
    error: ErrorInfo | None = None
    output: Any = None


def typed(message: BrokerMessage) -> BrokerMessage:
    """``message`` with its documented payload type: a progress payload becomes a
    ``ProgressEvent`` (numbered as the message), whatever form it travelled in."""
    if message.message_type != MessageType.PROGRESS:
        return message
    payload = message.payload
    if isinstance(payload, ProgressEvent):
        if payload.seq == message.seq:
            return message
        payload = msgspec.structs.replace(payload, seq=message.seq)
    elif isinstance(payload, dict) and "kind" in payload:  # it crossed a process boundary
        payload = msgspec.convert(
            {**payload, "seq": message.seq, "execution_id": message.execution_id,
             "workflow_id": message.workflow_id}, ProgressEvent)
    else:
        return message  # sealed by a middleware (EncryptPayloads) until it is opened
    return msgspec.structs.replace(message, payload=payload)
