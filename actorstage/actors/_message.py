"""Message types: the user's base class and the records the runtime hands out."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from actorstage.actors._ref import ActorRef
    from actorstage.exceptions import ActorCrashedError

__all__ = ["DeadLetter", "ExitReason", "Message", "Terminated"]


class Message(msgspec.Struct, frozen=True, tag=True):
    """Base class for typed actor messages.

    Subclasses are frozen, tagged msgspec Structs, so they can cross a process
    boundary with msgspec's codecs (no pickle on the wire)::

        class Deposit(Message, frozen=True):
            account: str
            amount: int

    ``frozen=True`` is inherited at run time; spelling it out lets type
    checkers see it too.
    """


class ExitReason(enum.StrEnum):
    """Why an actor's incarnation ended.

    ``NORMAL``: the actor called ``context.stop()``. ``STOPPED``: someone
    stopped it on purpose (``system.stop``, ``terminate_child``).
    ``SHUTDOWN``: its parent stopped it while stopping itself. ``CRASHED``:
    a handler or hook raised. ``KILLED``: a brutal shutdown cancelled it.

    Two more appear only in the ``Terminated`` of an actor watched from
    another process: ``NOT_FOUND``, no actor had its path when the watch
    arrived; ``UNREACHABLE``, its process died or the way to it was lost for
    good.
    """

    NORMAL = "normal"
    STOPPED = "stopped"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    KILLED = "killed"
    NOT_FOUND = "not_found"
    UNREACHABLE = "unreachable"


class Terminated(msgspec.Struct, frozen=True):
    """Delivered once to each watcher when the watched actor has stopped for good.

    Attributes:
        ref: The actor that stopped.
        reason: How it ended.
        error: The crash that ended it, when ``reason`` is ``CRASHED``.
    """

    ref: ActorRef
    reason: ExitReason
    error: ActorCrashedError | None = None


class DeadLetter(msgspec.Struct, frozen=True):
    """A message that could not be delivered.

    Attributes:
        recipient: The actor it was addressed to.
        message: The message itself.
        reason: Why it was not delivered.
    """

    recipient: ActorRef
    message: Any
    reason: str
