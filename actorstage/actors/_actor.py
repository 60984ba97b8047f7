"""The ``Actor`` base class and the ``Context`` it reaches the runtime through."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from actorstage.actors._ref import ActorRef, Args, Msg, Params, Receives, Reply
from actorstage.exceptions import InvalidDefinitionError

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell
    from actorstage.actors._system import ActorSystem
    from actorstage.actors._timers import Timer
    from actorstage.supervisors._supervisor import Supervisor, SupervisorRef
    from actorstage.supervisors._types import ParentPolicy
    from actorstage.transport._options import ProcessOptions

__all__ = ["Actor", "Context", "Spawner"]

A = TypeVar("A", bound="Actor")


class Actor:
    """Base class of every actor.

    Subclasses define ``async def receive(self, message)``; its return value
    is the reply to an ``ask`` (and is dropped for a ``tell``). Messages are
    handled one at a time, in the order they were queued. An exception in
    ``receive`` crashes the actor: the asker gets ``ActorCrashedError`` and
    the parent decides whether to restart it.

    The constructor receives the ``*args`` and ``**kwargs`` given to
    ``spawn``; ``self.context`` is available from ``on_start`` on.
    """

    __slots__ = ("_cell",)

    _cell: Cell
    _ref_class: ClassVar[type[ActorRef]] = ActorRef
    _owns_tasks: ClassVar[bool] = False  # supervisors own a task owner for their children
    # A stop cancels the message in hand at once, quietly, instead of giving it the
    # shutdown timeout: for actors whose one long message is work that cancelling ends.
    _cancel_on_stop: ClassVar[bool] = False
    # A traced message's handler runs in a span of its own (see _telemetry); the
    # runtime's own actors run theirs in the sender's context only, and make their spans.
    _traced: ClassVar[bool] = True

    async def receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an ``ask``."""
        raise NotImplementedError

    async def on_start(self) -> None:
        """Called before the first message; ``spawn`` returns after it. Raising fails the start."""

    async def on_stop(self) -> None:
        """Called when this incarnation ends (stop or restart), after its last message."""

    async def on_pause(self) -> None:
        """Called once the actor is paused and no handler of it runs."""

    async def on_resume(self) -> None:
        """Called when the actor resumes, before queued messages are delivered again."""

    @property
    def context(self) -> Context:
        """This actor's view of the runtime."""
        try:
            cell = self._cell
        except AttributeError:
            raise RuntimeError(
                f"{type(self).__name__}.context is available from on_start on, "
                "not in __init__; actors are created by spawn()"
            ) from None
        return Context(cell)

    def _policy(self) -> ParentPolicy:
        from actorstage.supervisors._default import DEFAULT_POLICY

        return DEFAULT_POLICY


def check_spawnable(factory: object) -> None:
    """Refuse what cannot be spawned, before anything starts."""
    if not (isinstance(factory, type) and issubclass(factory, Actor)):
        raise InvalidDefinitionError(f"{factory!r} is not an Actor subclass")
    if factory.receive is Actor.receive:
        raise InvalidDefinitionError(
            f"{factory.__qualname__} does not define `async def receive(self, message)`"
        )


def spawn_options(name: object, mailbox_size: object, process: object) -> tuple[str, ...]:
    """The names of the spawn options a call gave."""
    given = (("name", name), ("mailbox_size", mailbox_size), ("process", process))
    return tuple(option for option, value in given if value is not None)


_SIGNATURES: dict[type, inspect.Signature | None] = {}


def _signature(factory: type) -> inspect.Signature | None:
    try:
        return _SIGNATURES[factory]
    except KeyError:
        pass
    try:
        found: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):  # a signature Python cannot tell: the call will
        found = None
    _SIGNATURES[factory] = found
    return found


def check_arguments(factory: type, args: tuple[Any, ...], kwargs: dict[str, Any],
                    options: tuple[str, ...] = ()) -> None:
    """Refuse, before anything starts, constructor arguments the actor cannot take.

    ``options`` names the spawn options the caller gave (``name``,
    ``mailbox_size``, ``process``): spawn keeps those for itself, so a
    constructor parameter of the same name that the call leaves to its default
    is ambiguous, and refused rather than silently not given.
    """
    signature = _signature(factory)
    if signature is None:
        return
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        taken = [option for option in options if option in signature.parameters]
        hint = (f"; spawn() keeps {taken[0]}= for itself: pass the constructor's "
                f"{taken[0]!r} positionally") if taken else ""
        plain = signature.replace(  # the parameters as the user wrote them, minus annotations
            parameters=[parameter.replace(annotation=inspect.Parameter.empty)
                        for parameter in signature.parameters.values()],
            return_annotation=inspect.Signature.empty)
        raise InvalidDefinitionError(
            f"{factory.__qualname__}{plain} cannot take these arguments: {exc}{hint}"
        ) from None
    for option in options:
        if option in signature.parameters and option not in bound.arguments:
            raise InvalidDefinitionError(
                f"{factory.__qualname__}'s constructor has a parameter {option!r}, and spawn() "
                f"keeps {option}= for itself, so {option}=... is not given to the constructor; "
                f"pass the constructor's {option!r} positionally (or rename the parameter) "
                "to say which you mean")


class Spawner:
    """``spawn``, typed: what starts actors, the system (top-level actors) and an actor's
    context (its children). The subclass says under which cell they start."""

    __slots__ = ()

    def _spawn_parent(self) -> Cell:
        raise NotImplementedError

    @overload
    async def spawn(
        self, actor_cls: type[Supervisor], *, name: str | None = ...,
        mailbox_size: int | None = ..., process: bool | ProcessOptions | None = ...,
        **kwargs: Any,
    ) -> SupervisorRef: ...

    # The constructor's arguments are checked: positional ones with the spawn options,
    # keyword ones without them (a type checker cannot take keywords of both at once,
    # PEP 612); a call that mixes them is checked for what the ref takes only.
    @overload
    async def spawn(
        self, actor_cls: Callable[[*Args], Receives[Msg, Reply]], *args: *Args,
        name: str | None = ..., mailbox_size: int | None = ...,
        process: bool | ProcessOptions | None = ...,
    ) -> ActorRef[Msg, Reply]: ...

    @overload
    async def spawn(
        self, actor_cls: Callable[Params, Receives[Msg, Reply]], *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> ActorRef[Msg, Reply]: ...

    @overload
    async def spawn(
        self, actor_cls: Callable[..., Receives[Msg, Reply]], *args: Any, name: str | None,
        mailbox_size: int | None = ..., process: bool | ProcessOptions | None = ...,
        **kwargs: Any,
    ) -> ActorRef[Msg, Reply]: ...

    @overload
    async def spawn(
        self, actor_cls: Callable[..., Receives[Msg, Reply]], *args: Any,
        name: str | None = ..., mailbox_size: int | None,
        process: bool | ProcessOptions | None = ..., **kwargs: Any,
    ) -> ActorRef[Msg, Reply]: ...

    @overload
    async def spawn(
        self, actor_cls: Callable[..., Receives[Msg, Reply]], *args: Any,
        name: str | None = ..., mailbox_size: int | None = ...,
        process: bool | ProcessOptions | None, **kwargs: Any,
    ) -> ActorRef[Msg, Reply]: ...

    async def spawn(  # type: ignore[misc]
        self,
        actor_cls: Any,
        *args: Any,
        name: str | None = None,
        mailbox_size: int | None = None,
        process: bool | ProcessOptions | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start an actor (the system's: a top-level one; a context's: a child of its
        actor); returns once its ``on_start`` has finished.

        ``*args`` and ``**kwargs`` go to the actor's constructor. With
        ``process=True`` (or a ``ProcessOptions``) the actor runs in a child
        process of its own; the ref behaves the same. A crashed actor is
        restarted, at most 3 times within 5 s, then stopped; put actors under
        a ``Supervisor`` for other policies.

        Raises:
            ActorCrashedError: the constructor or ``on_start`` raised.
            InvalidDefinitionError: bad name, duplicate name, bad mailbox size,
                or ``actor_cls`` is not a usable ``Actor`` subclass.
        """
        from actorstage.actors._lifecycle import start_child

        parent = self._spawn_parent()
        child = await start_child(parent, actor_cls, args, kwargs, name=name,
                                  capacity=mailbox_size,
                                  shutdown_timeout=parent.system._shutdown_timeout,
                                  process=process,
                                  given_options=spawn_options(name, mailbox_size, process))
        return child.ref


class Context(Spawner):
    """What an actor can do with the runtime: its refs, children, timers, watches."""

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    def _spawn_parent(self) -> Cell:
        return self._cell

    @property
    def self_ref(self) -> ActorRef:
        """A ref to this actor (stable across restarts)."""
        return self._cell.ref

    @property
    def parent(self) -> ActorRef | None:
        """The parent's ref; ``None`` for an actor spawned by the system.

        In a child process the parent actor lives in the parent process:
        this ref sends it messages over the bridge, with the same
        backpressure as the other way. It is ``None`` there when the parent
        is the system or a supervisor (neither takes messages).
        """
        parent = self._cell.parent
        if parent is None or (parent.parent is None and parent.pump is None):
            return None  # (a child process's root has a pump when it stands for a parent actor)
        return parent.ref

    @property
    def system(self) -> ActorSystem:
        """The system this actor runs in."""
        return self._cell.system

    @property
    def path(self) -> str:
        """This actor's path, such as ``/user/sup/worker``."""
        return self._cell.path

    @property
    def restarts(self) -> int:
        """How many times this actor has been restarted."""
        return self._cell.restarts

    def watch(self, ref: ActorRef) -> None:
        """Receive ``Terminated(ref, reason)`` once when ``ref`` stops for good."""
        from actorstage.actors._watch import watch

        if not hasattr(ref, "_cell"):  # an actor of another process
            self._cell.system._node().watch(self._cell, ref.path)
            return
        watch(self._cell, ref._cell)

    def unwatch(self, ref: ActorRef) -> None:
        """Stop watching ``ref``."""
        from actorstage.actors._watch import unwatch

        if not hasattr(ref, "_cell"):
            self._cell.system._node().unwatch(self._cell, ref.path)
            return
        unwatch(self._cell, ref._cell)

    def stop(self) -> None:
        """End this actor normally after the current message (exit reason ``normal``).

        A ``Restart.PERMANENT`` child of a supervisor is started again; other
        children are not.
        """
        from actorstage.actors._cell import RUNNING, acting_cell

        cell = self._cell
        if (cell.draining and acting_cell() is cell) or cell.state != RUNNING:
            cell.exit_requested = True
        else:
            cell.exited_normally()

    def send_after(self, delay: float, message: Any) -> Timer:
        """Deliver ``message`` to this actor once, after ``delay`` seconds."""
        from actorstage.actors._timers import Timer

        return Timer(self._cell, message, delay, None)

    def send_every(self, interval: float, message: Any) -> Timer:
        """Deliver ``message`` every ``interval`` seconds until cancelled or the actor ends.

        Ticks do not pile up: while one is still queued (for example during a
        pause), the next ones are skipped.
        """
        from actorstage.actors._timers import Timer

        return Timer(self._cell, message, interval, interval)
