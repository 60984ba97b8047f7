"""``ActorRef``: the handle through which everyone talks to an actor."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Generic, Protocol

from typing_extensions import ParamSpec, TypeVar, TypeVarTuple

from actorstage._sends import register as wrapped_sends
from actorstage.exceptions import ActorstageError, MailboxFullError

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell

__all__ = ["ActorRef", "Receives"]

# What an actor takes and what it answers: read by type checkers from `receive`.
M = TypeVar("M", contravariant=True, default=Any)
R = TypeVar("R", covariant=True, default=Any)

# For spawn's overloads: what the actor takes and answers, its constructor's arguments.
Msg = TypeVar("Msg")
Reply = TypeVar("Reply")
Args = TypeVarTuple("Args")
Params = ParamSpec("Params")


class Receives(Protocol[M, R]):
    """Anything with ``async def receive(self, message: M) -> R``: an actor, to a type
    checker. ``spawn`` reads ``M`` and ``R`` from it to type the ref it returns."""

    async def receive(self, message: M, /) -> R: ...


class ActorRef(Generic[M, R]):
    """A handle to a running actor, obtained from ``spawn`` or ``lookup``.

    Refs are cheap, hashable and stay valid across restarts of the actor.
    After the actor has stopped, ``tell`` sends to dead letters and ``ask``
    raises ``ActorDeadError``.

    To a type checker, a ref is ``ActorRef[M, R]``: the actor takes messages
    of type ``M`` and answers an ask with an ``R``, as its ``receive``
    declares (``ActorRef`` alone is ``ActorRef[Any, Any]``). ``spawn``
    infers both, so ``mypy --strict`` rejects a message the actor does not
    take and knows what ``ask`` returns.
    """

    __slots__ = ("_cell",)

    _cell: Cell

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "ActorRef objects come from spawn() or lookup(); they cannot be constructed"
        )

    @classmethod
    def _from_cell(cls, cell: Cell) -> ActorRef[Any, Any]:
        ref = object.__new__(cls)
        ref._cell = cell
        return ref

    @property
    def path(self) -> str:
        """The actor's path, such as ``/user/sup/worker``."""
        return self._cell.path

    @property
    def name(self) -> str:
        """The last part of the path."""
        return self._cell.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._cell.path}>"

    async def tell(self, message: M) -> None:
        """Send ``message``; waits while the mailbox is full (backpressure).

        Like ``asyncio.Queue.put``, it returns without yielding when there is
        room. A message to a stopped actor becomes a dead letter.
        """
        cell = self._cell
        queue = cell.queue
        if queue is not None and cell.accepting and not cell.waiters and (
            len(queue) < cell.capacity
        ):
            queue.append((message, None))
            if cell.deliverable and not cell.draining:
                cell.schedule()
            return
        await cell.put(message, None)

    def tell_nowait(self, message: M) -> None:
        """Send ``message`` now or raise ``MailboxFullError``.

        A message to a stopped actor becomes a dead letter.
        """
        cell = self._cell
        if not cell.put_nowait(message, None):
            raise MailboxFullError(cell.path, cell.capacity)

    async def ask(self, message: M) -> R:
        """Send ``message`` and wait for the reply (the return value of ``receive``).

        Raises:
            ActorCrashedError: the handler raised.
            ActorDeadError: the actor is not running, or stopped before replying.
            TimeoutError: the caller's deadline (``anyio.fail_after``,
                ``asyncio.timeout``) passed. A message whose asker gave up
                before it was delivered is not delivered.
        """
        from actorstage.actors._cell import acting_cell

        cell = self._cell
        if acting_cell() is cell:
            raise ActorstageError(
                f"actor {cell.path!r} asked itself; that would wait forever "
                "(it handles one message at a time): use tell, or do the work inline"
            )
        reply: asyncio.Future[R] = cell.system._loop.create_future()
        if not cell.put_nowait(message, reply):
            try:
                await cell.put(message, reply)
            except BaseException:
                reply.cancel()  # queued just as we were cancelled: nobody will read the reply
                raise
        return await reply


wrapped_sends(ActorRef)  # (tracing and metrics wrap its sends when on: see _sends)
