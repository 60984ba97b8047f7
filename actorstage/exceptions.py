"""Every exception actorstage raises, in one flat module.

Deadlines are not here: a caller's deadline raises the built-in
:class:`TimeoutError`, as anyio and asyncio do.
"""

from __future__ import annotations

import traceback as _traceback

__all__ = [
    "ActorCrashedError",
    "ActorDeadError",
    "ActorstageError",
    "InvalidDefinitionError",
    "MailboxFullError",
    "MessageEncodingError",
    "RestartIntensityError",
    "TransportError",
    "UnknownChildError",
]


class ActorstageError(Exception):
    """Base class of every actorstage error."""


class ActorCrashedError(ActorstageError):
    """An actor's handler (or its start) raised.

    Raised to the caller of :meth:`ActorRef.ask` whose message crashed the
    actor, and by ``spawn`` when the actor fails to start. The fields carry
    the original error as text, so the same error can cross a process
    boundary.

    Attributes:
        path: The crashed actor's path.
        type_name: Qualified name of the original exception type.
        error_message: ``str()`` of the original exception.
        traceback: The formatted traceback of the original exception.
    """

    def __init__(
        self,
        path: str,
        type_name: str,
        error_message: str,
        traceback: str = "",
        *,
        during: str = "",
    ) -> None:
        self.path = path
        self.type_name = type_name
        self.error_message = error_message
        self.traceback = traceback
        self.during = during
        where = f" {during}" if during else ""
        super().__init__(f"actor {path!r} crashed{where}: {type_name}: {error_message}")

    @classmethod
    def from_exception(
        cls, path: str, exc: BaseException, *, during: str = ""
    ) -> ActorCrashedError:
        """Describe ``exc``, raised inside the actor at ``path``."""
        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", "__main__"):
            name = f"{kind.__module__}.{name}"
        text = "".join(_traceback.format_exception(exc))
        return cls(path, name, str(exc), text, during=during)

    def with_cause(self, exc: BaseException) -> ActorCrashedError:
        """A copy of this error whose ``__cause__`` is ``exc`` (each asker gets its own)."""
        copy = ActorCrashedError(
            self.path, self.type_name, self.error_message, self.traceback, during=self.during
        )
        copy.__cause__ = exc
        return copy

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_crashed,
            (self.path, self.type_name, self.error_message, self.traceback, self.during),
        )


def _rebuild_crashed(
    path: str, type_name: str, error_message: str, traceback: str, during: str
) -> ActorCrashedError:
    return ActorCrashedError(path, type_name, error_message, traceback, during=during)


class ActorDeadError(ActorstageError):
    """The target actor is not running: it stopped, or stopped while handling the message.

    Attributes:
        path: The dead actor's path.
        reason: Why it is not running (``"stopped"``, ``"shutdown"``, ...).
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"actor {path!r} is not running ({reason}); messages sent to it go to dead letters"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.reason))


class MailboxFullError(ActorstageError):
    """``tell_nowait`` found the mailbox full.

    Attributes:
        path: The actor whose mailbox is full.
        capacity: The mailbox's bound.
    """

    def __init__(self, path: str, capacity: int) -> None:
        self.path = path
        self.capacity = capacity
        super().__init__(
            f"mailbox of {path!r} is full ({capacity} messages); "
            "use `await ref.tell(...)` to wait for room, or raise mailbox_size"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.capacity))


class InvalidDefinitionError(ActorstageError, ValueError):
    """A spec, option or name is invalid; raised before anything starts."""


class UnknownChildError(ActorstageError, LookupError):
    """A supervisor was asked about a child id it does not have.

    Attributes:
        supervisor: The supervisor's path.
        child_id: The id asked for.
        known: The ids the supervisor has.
    """

    def __init__(self, supervisor: str, child_id: str, known: list[str]) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        self.known = known
        super().__init__(
            f"supervisor {supervisor!r} has no child {child_id!r}; its children are {known!r}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.supervisor, self.child_id, self.known))


class RestartIntensityError(ActorstageError):
    """A supervisor saw more restarts than it allows and gave up.

    This is the reason a supervisor fails with, so its parent sees it as
    the crash's type.

    Attributes:
        path: The supervisor's path.
        max_restarts: Restarts allowed within ``within`` seconds.
        within: The window, in seconds.
        last_failure: A description of the child failure that tipped it over.
    """

    def __init__(self, path: str, max_restarts: int, within: float, last_failure: str) -> None:
        self.path = path
        self.max_restarts = max_restarts
        self.within = within
        self.last_failure = last_failure
        super().__init__(
            f"supervisor {path!r} exceeded its restart intensity "
            f"(more than {max_restarts} restarts within {within:g}s); "
            f"last failure: {last_failure}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.max_restarts, self.within, self.last_failure))


class MessageEncodingError(ActorstageError, TypeError):
    """A message for another process cannot be encoded, or a received one decoded.

    Messages that cross a process boundary are msgspec Structs (subclasses of
    ``actorstage.Message``) or plain msgspec-encodable values.

    Attributes:
        path: The actor the message was for.
        type_name: The message's type (``module:QualName``), or ``""`` when unknown.
        problem: What msgspec reported, with the path of the failing field.
    """

    def __init__(self, path: str, type_name: str, problem: str) -> None:
        self.path = path
        self.type_name = type_name
        self.problem = problem
        what = f"message of type {type_name!r}" if type_name else "message"
        super().__init__(
            f"{what} for {path!r} cannot cross the process boundary: {problem}; "
            "messages to process actors must be msgspec Structs (actorstage.Message) "
            "or plain msgspec-encodable values"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.type_name, self.problem))


class TransportError(ActorstageError):
    """The bridge to a child process failed: refused, lost, or given bad frames.

    Attributes:
        path: The process actor concerned.
        problem: What went wrong.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"bridge of process actor {path!r}: {problem}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.problem))
