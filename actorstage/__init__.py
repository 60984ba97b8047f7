"""actorstage: supervised asyncio actors, in one process or in child processes."""

from actorstage._run import run
from actorstage.actors import (
    Actor,
    ActorRef,
    ActorStatus,
    ActorSystem,
    Context,
    DeadLetter,
    ExitReason,
    Message,
    Terminated,
    TreeNode,
)
from actorstage.exceptions import (
    ActorCrashedError,
    ActorDeadError,
    ActorstageError,
    InvalidDefinitionError,
    MailboxFullError,
    MessageEncodingError,
    RestartIntensityError,
    TransportError,
    UnknownChildError,
)
from actorstage.supervisors import (
    Backoff,
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorRef,
)
from actorstage.transport import JoinPlacement, ProcessOptions, child_main, join_main

__all__ = [
    "Actor",
    "ActorCrashedError",
    "ActorDeadError",
    "ActorRef",
    "ActorStatus",
    "ActorSystem",
    "ActorstageError",
    "Backoff",
    "ChildSpec",
    "Context",
    "DeadLetter",
    "ExitReason",
    "InvalidDefinitionError",
    "JoinPlacement",
    "MailboxFullError",
    "Message",
    "MessageEncodingError",
    "ProcessOptions",
    "Restart",
    "RestartIntensityError",
    "Strategy",
    "Supervisor",
    "SupervisorRef",
    "Terminated",
    "TransportError",
    "TreeNode",
    "UnknownChildError",
    "child_main",
    "join_main",
    "run",
]

__version__ = "0.1.0"

run.__module__ = __name__
