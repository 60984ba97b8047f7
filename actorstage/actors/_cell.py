"""The actor cell: one actor's state, mailbox and delivery loop.

A cell outlives the actor instances it hosts: a restart replaces the
instance and keeps the cell, its mailbox and every ``ActorRef`` to it.

The mailbox is a bounded deque of ``(message, reply)`` envelopes, where
``reply`` is ``None`` for a tell, a future for an ask, or a timer. It is
allocated on first use and released when drained, so an idle actor costs
neither a task nor a deque. While it has work, one task ("the drain") owned
by the nearest supervisor delivers envelopes one at a time; after the last
one it yields once before it exits, so a caller that asks again at once
finds it still running.

Senders that find the mailbox full wait in FIFO order; a freed slot is
handed to the first waiter directly, so order per sender holds and nobody
overtakes a waiter.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from actorstage._telemetry import STATE as TRACING
from actorstage._telemetry import Traced
from actorstage._telemetry import dead_letter as traced_dead_letter
from actorstage._telemetry import handler as traced_handler
from actorstage.actors._message import ExitReason
from actorstage.actors._timers import Timer
from actorstage.exceptions import ActorCrashedError, ActorDeadError

if TYPE_CHECKING:
    from actorstage.actors._actor import Actor
    from actorstage.actors._ref import ActorRef
    from actorstage.actors._system import ActorSystem
    from actorstage.actors._tasks import TaskOwner

__all__ = [
    "RUNNING", "STARTING", "STOPPED", "STOPPING", "SUSPENDED", "Answer", "Cell", "Outgoing",
    "Receipt", "act_as", "acting_cell",
]

log = logging.getLogger("actorstage")

STARTING, RUNNING, SUSPENDED, STOPPING, STOPPED = range(5)

_YIELD_EVERY = 256  # messages handled in a row before the drain lets others run

# The actor whose handler or hook a task runs, with that task: tasks the handler starts
# inherit the variable, but they are not the actor, and must not be treated as it.
_acting: contextvars.ContextVar[tuple[Cell, asyncio.Task[Any] | None] | None] = (
    contextvars.ContextVar("actorstage_acting", default=None)
)


def act_as(cell: Cell) -> contextvars.Token[tuple[Cell, asyncio.Task[Any] | None] | None]:
    """Mark the current task as running ``cell``'s handler or hook."""
    return _acting.set((cell, asyncio.current_task()))


def acting_cell() -> Cell | None:
    """The actor whose handler or hook the current task is running, if any."""
    entry = _acting.get()
    if entry is not None and entry[1] is asyncio.current_task():
        return entry[0]
    return None

Envelope = tuple[Any, Any]

def _rare(cell: Cell) -> _Rare:
    rare = cell.rare
    if rare is None:
        rare = cell.rare = _Rare()
    return rare


# What most actors have: no children, no constructor arguments. Shared, read-only: an idle
# actor costs hundreds of bytes, and an empty dict alone is 64 of them.
_NO_CHILDREN: dict[str, Cell] = MappingProxyType({})  # type: ignore[assignment]
_NO_KWARGS: dict[str, Any] = MappingProxyType({})  # type: ignore[assignment]
_NO_ARGUMENTS: tuple[tuple[Any, ...], dict[str, Any]] = ((), _NO_KWARGS)


class Receipt:
    """A tell's reply slot that wants to know when the message leaves the mailbox.

    The bridge uses it to hand a credit back to the sending process. With
    ``when_dropped``, a message that is dead-lettered instead is counted as
    gone too (a routed tell's sender keeps nothing to dead-letter itself).
    """

    __slots__ = ("delivered", "when_dropped")

    def __init__(self, delivered: Callable[[], None], *, when_dropped: bool = False) -> None:
        self.delivered = delivered
        self.when_dropped = when_dropped


class Answer(asyncio.Future[Any]):
    """The reply slot of an ask from another process: ``then(self)`` runs once it is settled.

    It runs in the step that settles it (a result, an error or a cancellation),
    not a loop iteration later as a done callback would, so the bridge sends
    the reply on its way before the handler's task goes on.
    """

    __slots__ = ("then",)

    def __init__(self, then: Callable[[Answer], None], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self.then = then

    def set_result(self, result: Any, /) -> None:
        super().set_result(result)
        self.then(self)

    def set_exception(self, exception: type | BaseException, /) -> None:
        super().set_exception(exception)
        self.then(self)

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self.then(self)
        return True


class Outgoing:
    """A message for an actor in another process, already encoded by the sender."""

    __slots__ = ("ask_id", "body", "message", "shared", "timeout", "type")

    def __init__(self, message: Any, type: str, body: bytes, timeout: float = 0.0) -> None:
        self.message = message
        self.type = type
        self.body = body
        self.timeout = timeout  # the asker's deadline, in loop time; 0 when it has none
        self.ask_id = 0
        self.shared = False  # its body names payloads in shared memory (read once only)


class _Rare:
    """The part of a cell that most actors never use: made the first time one is set.

    An idle actor is a few hundred bytes, so every slot a cell keeps counts.
    """

    __slots__ = ("abandoned", "child_owner", "exit_error", "exit_reason", "idle_waiters", "lane",
                 "lane_running", "lock", "process", "restart_log", "restarts",
                 "shutdown_timeout", "starting", "stop_waiters", "timers", "watchers",
                 "watching")

    # (What Cell's _RareFields and properties read; the hottest paths read them directly.)
    abandoned: Any
    child_owner: TaskOwner | None
    exit_error: ActorCrashedError | None
    exit_reason: ExitReason | None
    idle_waiters: list[asyncio.Future[None]] | None
    lane: deque[Callable[[], Awaitable[None]]] | None
    lane_running: bool
    lock: asyncio.Lock | None
    process: Any
    restart_log: Any
    restarts: int
    shutdown_timeout: Any
    starting: dict[str, Cell] | None
    stop_waiters: list[asyncio.Future[None]] | None
    timers: set[Timer | asyncio.TimerHandle] | None
    watchers: dict[Cell, None] | None
    watching: dict[Cell, None] | None

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, _RARE_DEFAULTS.get(name))


_SYSTEMS = object()  # a shutdown timeout that is the system's
_RARE_DEFAULTS: dict[str, Any] = {"lane_running": False, "restarts": 0,
                                  "shutdown_timeout": _SYSTEMS}
_T = TypeVar("_T")


class _RareField(Generic[_T]):
    """A cell attribute kept in its ``_Rare`` part (read as its default until set)."""

    __slots__ = ("default", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.default = _RARE_DEFAULTS.get(name)

    @overload
    def __get__(self, cell: None, owner: type[Cell]) -> _RareField[_T]: ...

    @overload
    def __get__(self, cell: Cell, owner: type[Cell]) -> _T: ...

    def __get__(self, cell: Cell | None, owner: type[Cell]) -> Any:
        if cell is None:
            return self
        rare = cell.rare
        return self.default if rare is None else getattr(rare, self.name)

    def __set__(self, cell: Cell, value: _T) -> None:
        rare = cell.rare
        if rare is None:
            if value is self.default:
                return
            rare = cell.rare = _Rare()
        setattr(rare, self.name, value)


class Cell:
    """One actor's runtime state. Internal: users hold an ``ActorRef``."""

    __slots__ = (
        "accepting",
        "actor",
        "arguments",
        "capacity",
        "children",
        "current",
        "deliverable",
        "drain_task",
        "draining",
        "exit_requested",
        "factory",
        "handled",
        "incarnation",
        "name",
        "owner",
        "parent",
        "path",
        "paused",
        "pump",
        "queue",
        "rare",
        "ref",
        "state",
        "system",
        "waiters",
    )

    # Kept in the cell's _Rare part, made when one of them is first set.
    exit_error: _RareField[ActorCrashedError | None] = _RareField("exit_error")
    exit_reason: _RareField[ExitReason | None] = _RareField("exit_reason")
    idle_waiters: _RareField[list[asyncio.Future[None]] | None] = _RareField("idle_waiters")
    stop_waiters: _RareField[list[asyncio.Future[None]] | None] = _RareField("stop_waiters")
    lane: _RareField[deque[Callable[[], Awaitable[None]]] | None] = _RareField("lane")
    lane_running: _RareField[bool] = _RareField("lane_running")
    lock: _RareField[asyncio.Lock | None] = _RareField("lock")
    # children whose start has not completed (they join ``children`` once it has)
    starting: _RareField[dict[str, Cell] | None] = _RareField("starting")
    restart_log: _RareField[Any] = _RareField("restart_log")
    restarts: _RareField[int] = _RareField("restarts")
    timers: _RareField[set[Timer | asyncio.TimerHandle] | None] = _RareField("timers")
    watchers: _RareField[dict[Cell, None] | None] = _RareField("watchers")
    watching: _RareField[dict[Cell, None] | None] = _RareField("watching")
    # ProcessOptions, for an actor that lives in a child process
    process: _RareField[Any] = _RareField("process")
    # an ask whose handler is being cancelled (its deadline passed)
    abandoned: _RareField[Any] = _RareField("abandoned")

    @property
    def shutdown_timeout(self) -> float | None:
        """The time its stop gives it to finish (``None``: none, it is killed)."""
        rare = self.rare
        if rare is None or rare.shutdown_timeout is _SYSTEMS:
            return self.system._shutdown_timeout
        timeout: float | None = rare.shutdown_timeout
        return timeout

    @shutdown_timeout.setter
    def shutdown_timeout(self, value: float | None) -> None:
        _rare(self).shutdown_timeout = value

    @property
    def child_owner(self) -> TaskOwner:
        """Owns its children's tasks: its own owner, unless it is a supervisor."""
        rare = self.rare
        owner = None if rare is None else rare.child_owner
        return self.owner if owner is None else owner

    @child_owner.setter
    def child_owner(self, value: TaskOwner) -> None:
        _rare(self).child_owner = value

    def __init__(
        self,
        system: ActorSystem,
        parent: Cell | None,
        name: str,
        factory: type[Actor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        capacity: int,
        shutdown_timeout: float | None,
        owner: TaskOwner,
    ) -> None:
        self.system = system
        self.parent = parent
        self.name = name  # (the same str as its key in the parent's children: 8 bytes here)
        self.path: str = f"{parent.path}/{name}" if parent is not None else f"/{name}"
        self.factory = factory
        # The constructor's arguments; most actors take none, and share one pair for it.
        self.arguments: tuple[tuple[Any, ...], dict[str, Any]] = \
            (args, kwargs) if args or kwargs else _NO_ARGUMENTS
        self.capacity = capacity
        self.owner = owner
        self.rare: _Rare | None = None  # what few actors ever use; see _Rare
        if shutdown_timeout != system._shutdown_timeout:  # (None: none, a brutal kill)
            self.shutdown_timeout = shutdown_timeout
        self.actor: Actor | None = None
        self.queue: deque[Envelope] | None = None
        self.waiters: deque[tuple[asyncio.Future[bool], Envelope]] | None = None
        self.state = STARTING
        self.paused: bool = parent.paused if parent is not None else False
        self.accepting = True
        self.deliverable = False
        self.draining = False
        self.drain_task: asyncio.Task[None] | None = None
        self.incarnation = 0
        self.handled = 0  # messages its handler took, added up as each drain run ends
        self.exit_requested = False
        self.children: dict[str, Cell] = _NO_CHILDREN  # a dict of its own from the first
        self.pump: Callable[[], None] | None = None  # sends queued messages to that process
        self.current: Any = None  # the reply slot of the ask in hand
        self.ref: ActorRef = factory._ref_class._from_cell(self)

    def __repr__(self) -> str:
        return f"<Cell {self.path} state={self.state}>"

    def add_child(self, name: str, child: Cell) -> None:
        children = self.children
        if children is _NO_CHILDREN:
            children = self.children = {}
        children[name] = child

    # -- state -------------------------------------------------------------

    def set_state(self, state: int) -> None:
        self.state = state
        self.accepting = state < STOPPING
        self.deliverable = state == RUNNING and not self.paused

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.deliverable = self.state == RUNNING and not paused
        if self.deliverable and self.queue and not self.draining:
            self.schedule()

    def get_lock(self) -> asyncio.Lock:
        rare = _rare(self)  # (read directly: restarts come this way, and every bit counts)
        lock: asyncio.Lock | None = rare.lock
        if lock is None:
            lock = rare.lock = asyncio.Lock()
        return lock

    # -- enqueueing --------------------------------------------------------

    def has_room(self) -> bool:
        queue = self.queue
        return not self.waiters and (queue is None or len(queue) < self.capacity)

    def append(self, message: Any, reply: Any) -> None:
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        queue.append((message, reply))
        if self.deliverable and not self.draining:
            self.schedule()

    async def put(self, message: Any, reply: Any) -> bool:
        """Enqueue, waiting for room; False when the actor is gone (dead-lettered)."""
        if not self.accepting:
            self.dead_letter(message, reply, self.dead_reason())
            return False
        if self.has_room():
            self.append(message, reply)
            return True
        waiter: asyncio.Future[bool] = self.system._loop.create_future()
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = deque()
        waiters.append((waiter, (message, reply)))
        return await waiter

    def put_nowait(self, message: Any, reply: Any) -> bool:
        """Enqueue if there is room now; False when full. Dead actor: dead letter, True."""
        if not self.accepting:
            self.dead_letter(message, reply, self.dead_reason())
        elif self.has_room():
            self.append(message, reply)
        else:
            return False
        return True

    def put_forced(self, message: Any) -> None:
        """Enqueue past the bound: for runtime notices (``Terminated``) that must not be lost."""
        if self.accepting:
            self.append(message, None)
        else:
            self.dead_letter(message, None, self.dead_reason())

    def hand_off(self) -> None:
        """Move waiting senders' envelopes into freed slots, oldest first."""
        waiters = self.waiters
        queue = self.queue
        assert waiters is not None and queue is not None
        while waiters and len(queue) < self.capacity:
            waiter, envelope = waiters.popleft()
            if waiter.done():  # the sender gave up
                continue
            queue.append(envelope)
            waiter.set_result(True)

    def dead_reason(self) -> str:
        return str(self.exit_reason or ExitReason.STOPPED)

    def dead_letter(self, message: Any, reply: Any, reason: str) -> None:
        if isinstance(reply, asyncio.Future) and not reply.done():
            reply.set_exception(ActorDeadError(self.path, reason))
        elif reply.__class__ is Receipt and reply.when_dropped:
            reply.delivered()
        if message.__class__ is Outgoing:
            message = message.message
        if message.__class__ is Traced:
            traced_dead_letter(self.path, message, reason)
            message = message.message
        self.system.dead_letters._publish(self.ref, message, reason)

    # -- delivery ----------------------------------------------------------

    def schedule(self) -> None:
        pump = self.pump
        if pump is not None:  # the actor lives in another process: send, do not handle
            pump()
            return
        self.draining = True
        self.drain_task = self.owner.start(self._drain())

    async def _drain(self) -> None:
        act_as(self)
        actor = self.actor
        assert actor is not None
        receive = actor.receive
        incarnation = self.incarnation
        handled = 0
        lingered = False
        traced = TRACING.tracing  # (read once: off, a message costs no more than this)
        try:
            while self.deliverable and self.incarnation == incarnation:
                queue = self.queue
                if not queue:
                    if lingered:
                        break
                    lingered = True
                    await asyncio.sleep(0)
                    continue
                lingered = False
                message, reply = queue.popleft()
                if self.waiters:
                    self.hand_off()
                handle: Callable[[Any], Awaitable[Any]] = receive
                if traced and message.__class__ is Traced:
                    handle = traced_handler(self, receive, message, reply is not None and
                                            reply.__class__ is not Timer and
                                            reply.__class__ is not Receipt)
                    message = message.message
                if reply is None or reply.__class__ is Timer or reply.__class__ is Receipt:
                    if reply is not None:  # a timer's tick, or a tell from another process
                        reply.delivered()
                    try:
                        await handle(message)
                    except Exception as exc:
                        self._handler_failed(exc, incarnation)
                        return
                elif not reply.done():  # an ask whose caller still waits
                    self.current = reply
                    try:
                        result = await handle(message)
                    except asyncio.CancelledError:
                        self.current = None
                        if self.abandoned is not reply:
                            if not reply.done():
                                reply.set_exception(
                                    ActorDeadError(self.path, "stopped while handling"))
                            raise
                        self.abandoned = None  # only that ask was cancelled: go on
                        asyncio.current_task().uncancel()  # type: ignore[union-attr]
                        if not reply.done():
                            reply.set_exception(TimeoutError("the asker's deadline passed"))
                        continue
                    except Exception as exc:
                        error = ActorCrashedError.from_exception(self.path, exc)
                        if not reply.done():
                            reply.set_exception(error.with_cause(exc))
                        self._handler_failed(exc, incarnation, error)
                        return
                    except BaseException as exc:
                        # (SystemExit in a process actor's handler ends its process: the ask
                        # from the parent stays unanswered, and the parent reports how it ended)
                        if not reply.done() and (reply.__class__ is not Answer or
                                                 isinstance(exc, asyncio.CancelledError)):
                            reply.set_exception(ActorDeadError(self.path, "stopped while handling"))
                        raise
                    self.current = None
                    rare = self.rare
                    if rare is not None and rare.abandoned is reply:  # it swallowed the cancel
                        rare.abandoned = None
                        asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    if not reply.done():
                        reply.set_result(result)
                if self.exit_requested and self.incarnation == incarnation:
                    self.exited_normally()
                    return
                handled += 1
                if handled >= _YIELD_EVERY:
                    self.handled += handled
                    handled = 0
                    await asyncio.sleep(0)
        finally:
            self.handled += handled
            self.draining = False
            self.drain_task = None
            self.current = None
            rare = self.rare
            if rare is not None:
                rare.abandoned = None
            if self.queue is not None and not self.queue and not self.waiters:
                self.queue = None
            if rare is not None and rare.idle_waiters:
                self.wake("idle_waiters")

    def add_waiter(self, slot: str) -> asyncio.Future[None]:
        """A future resolved by ``wake(slot)``; ``slot`` names a lazily made list."""
        waiter: asyncio.Future[None] = self.system._loop.create_future()
        waiters = getattr(self, slot)
        if waiters is None:
            waiters = []
            setattr(self, slot, waiters)
        waiters.append(waiter)
        return waiter

    def wake(self, slot: str) -> None:
        waiters = getattr(self, slot)
        setattr(self, slot, None)
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def abandon(self, reply: Any) -> None:
        """The asker behind ``reply`` gave up: skip it, or cancel its running handler."""
        if self.current is reply and self.drain_task is not None and self.abandoned is None:
            self.abandoned = reply
            self.drain_task.cancel()
        elif not reply.done():
            reply.cancel()

    async def wait_idle(self) -> None:
        """Wait until no handler of this cell runs (its drain has exited)."""
        if self.draining:
            await self.add_waiter("idle_waiters")

    # -- exits, reported to the parent -------------------------------------

    def _handler_failed(
        self, exc: Exception, incarnation: int, error: ActorCrashedError | None = None
    ) -> None:
        if self.incarnation == incarnation:
            self.crashed(exc, error=error)
        else:  # it was being stopped or restarted anyway; the error must still be seen
            log.warning("actor %s raised while being stopped: %r", self.path, exc)

    def crashed(
        self, exc: BaseException, during: str = "", error: ActorCrashedError | None = None
    ) -> None:
        """The current incarnation raised: suspend, and tell the parent."""
        if error is None:
            error = ActorCrashedError.from_exception(self.path, exc, during=during)
        log.warning("actor %s crashed%s: %r", self.path, f" {during}" if during else "", exc,
                    exc_info=exc)
        self.exited(ExitReason.CRASHED, error)

    def exited_normally(self) -> None:
        self.exit_requested = False
        self.exited(ExitReason.NORMAL, None)

    def exited(self, reason: ExitReason, error: ActorCrashedError | None) -> None:
        if self.state >= STOPPING:
            return
        self.set_state(SUSPENDED)
        if error is not None:
            self.system.tree_events.publish(
                self, "crashed", error=f"{error.type_name}: {error.error_message}",
                traceback=error.traceback)
        self.incarnation += 1
        self.cancel_timers()
        parent = self.parent
        assert parent is not None
        ended = self.incarnation
        parent.post(lambda: parent.child_exited(self, reason, error, ended))

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` seconds unless this incarnation ends first."""

        def fire() -> None:
            if self.timers is not None:
                self.timers.discard(handle)
            callback()

        handle = self.system._loop.call_later(delay, fire)
        if self.timers is None:
            self.timers = set()
        self.timers.add(handle)

    def cancel_timers(self) -> None:
        rare = self.rare
        timers = rare.timers if rare is not None else None
        if timers:
            rare.timers = None  # type: ignore[union-attr]  # (timers implies rare)
            for timer in timers:
                timer.cancel()

    # -- the control lane --------------------------------------------------

    def post(self, operation: Callable[[], Awaitable[None]]) -> None:
        """Queue a control operation; they run one at a time, in order, under the lock."""
        rare = _rare(self)
        lane = rare.lane
        if lane is None:
            lane = rare.lane = deque()
        lane.append(operation)
        if not rare.lane_running:
            rare.lane_running = True
            self.owner.start(self._run_lane())

    async def _run_lane(self) -> None:
        rare = _rare(self)
        lane = rare.lane
        assert lane is not None
        try:
            while lane:
                operation = lane.popleft()
                async with self.get_lock():
                    await operation()
        finally:
            rare.lane_running = False

    async def child_exited(
        self, child: Cell, reason: ExitReason, error: ActorCrashedError | None, ended: int
    ) -> None:
        if self.state >= STOPPING or self.children.get(child.name) is not child:
            return  # we are going down (and take the child along), or it is gone already
        if child.incarnation != ended:
            return  # that incarnation was already replaced (a group restart came first)
        actor = self.actor
        if actor is None:
            return
        await actor._policy().child_exited(self, child, reason, error)

