"""``Supervisor``: an actor that starts children from specs and restarts them by policy."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import msgspec

from actorstage.actors._actor import Actor
from actorstage.actors._cell import SUSPENDED, Cell
from actorstage.actors._lifecycle import restart, shutdown, start_child, stop_children, suspend
from actorstage.actors._message import ExitReason
from actorstage.actors._ref import ActorRef
from actorstage.actors._tree import ActorStatus, _status
from actorstage.exceptions import (
    ActorCrashedError,
    ActorDeadError,
    InvalidDefinitionError,
    RestartIntensityError,
    UnknownChildError,
)
from actorstage.supervisors._backoff import BackoffState
from actorstage.supervisors._intensity import RestartIntensity
from actorstage.supervisors._spec import Backoff, ChildSpec, Restart, Strategy
from actorstage.supervisors._strategy import restart_group, should_restart

__all__ = ["ChildCount", "ChildInfo", "Supervisor", "SupervisorRef"]

log = logging.getLogger("actorstage")


class ChildInfo(msgspec.Struct, frozen=True):
    """One child in ``which_children()``: its id, ref, kind, restart type and status."""

    id: str
    ref: ActorRef
    kind: str
    restart: Restart
    status: ActorStatus


class ChildCount(msgspec.Struct, frozen=True):
    """``count_children()``: specs held, children running, and how many are supervisors."""

    specs: int
    active: int
    supervisors: int
    workers: int


class SupervisorRef(ActorRef):
    """The ref of a supervisor: manages children, takes no user messages."""

    __slots__ = ()

    def _refuse(self) -> NoReturn:
        raise TypeError(
            f"{self.path!r} is a supervisor and takes no user messages; "
            "send to its children (which_children(), system.lookup())"
        )

    async def tell(self, message: Any) -> None:
        self._refuse()

    def tell_nowait(self, message: Any) -> None:
        self._refuse()

    async def ask(self, message: Any) -> Any:
        self._refuse()

    def _supervisor(self) -> Supervisor:
        actor = self._cell.actor
        if not isinstance(actor, Supervisor):
            raise ActorDeadError(self.path, self._cell.dead_reason())
        return actor

    async def start_child(self, spec: ChildSpec) -> ActorRef:
        """Start a new child from ``spec`` and add it to the supervisor's children.

        Raises:
            InvalidDefinitionError: ``spec`` is not a ChildSpec, or its id is taken.
            ActorCrashedError: the child failed to start (it is not added).
        """
        if not isinstance(spec, ChildSpec):
            raise InvalidDefinitionError(f"start_child takes a ChildSpec, got {spec!r}")
        cell = self._cell

        async def start() -> ActorRef:
            return await self._supervisor()._add_child(spec)

        return await cell.system._in_lane(cell, start)

    async def terminate_child(self, child_id: str) -> None:
        """Stop the child ``child_id`` on purpose and forget its spec.

        Raises:
            UnknownChildError: there is no such child.
        """
        cell = self._cell

        async def terminate() -> None:
            child = cell.children.get(child_id)
            if child is None:
                raise UnknownChildError(cell.path, child_id, list(cell.children))
            await shutdown(child, ExitReason.STOPPED)

        await cell.system._in_lane(cell, terminate)

    def child(self, child_id: str) -> ActorRef:
        """The ref of the running child ``child_id``.

        Raises:
            UnknownChildError: no child of that id runs now (the error lists those that do).
        """
        child = self._cell.children.get(child_id)
        if child is None:
            raise UnknownChildError(self.path, child_id, list(self._cell.children))
        return child.ref

    def which_children(self) -> list[ChildInfo]:
        """The children, in start order."""
        supervisor = self._supervisor()
        infos = []
        for child_id, spec in supervisor._specs.items():
            child = self._cell.children.get(child_id)
            if child is not None:
                kind = "supervisor" if child.factory._owns_tasks else "worker"
                infos.append(ChildInfo(child_id, child.ref, kind, spec.restart, _status(child)))
        return infos

    def count_children(self) -> ChildCount:
        """How many specs and running children there are, by kind."""
        supervisor = self._supervisor()
        children = list(self._cell.children.values())
        supervisors = sum(1 for child in children if child.factory._owns_tasks)
        return ChildCount(specs=len(supervisor._specs), active=len(children),
                          supervisors=supervisors, workers=len(children) - supervisors)


class Supervisor(Actor):
    """Starts children from specs, in order, and restarts them by OTP rules.

    Spawn it like any actor::

        sup = await system.spawn(
            Supervisor,
            strategy=Strategy.ONE_FOR_ONE, max_restarts=3, within=5.0,
            children=[ChildSpec("db", Database), ChildSpec("web", Server)],
        )

    When more than ``max_restarts`` restarts happen within ``within``
    seconds, it stops its children (the last started first) and fails with
    ``RestartIntensityError``, which its own parent handles as a crash.

    Args:
        strategy: Which children a failure restarts.
        max_restarts: Restarts allowed within the window (0 forbids any).
        within: The window, in seconds.
        backoff: Delays between restarts of a failing child; none by default.
        children: The children to start, in order.
        clock: Monotonic time source, for tests.
        draw: Random source in [0, 1) for backoff jitter, for tests.
    """

    __slots__ = ("_backoff", "_backoffs", "_clock", "_draw", "_intensity", "_specs", "_strategy")

    _ref_class = SupervisorRef
    _owns_tasks = True

    def __init__(
        self,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        children: Iterable[ChildSpec] = (),
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise InvalidDefinitionError(f"strategy must be a Strategy, got {strategy!r}")
        if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or max_restarts < 0:
            raise InvalidDefinitionError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        if not isinstance(within, int | float) or not within > 0:
            raise InvalidDefinitionError(f"within must be > 0 seconds, got {within!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidDefinitionError(f"backoff must be a Backoff or None, got {backoff!r}")
        self._specs: dict[str, ChildSpec] = {}
        for spec in children:
            if not isinstance(spec, ChildSpec):
                raise InvalidDefinitionError(f"children must be ChildSpecs, got {spec!r}")
            if spec.id in self._specs:
                raise InvalidDefinitionError(f"two children have the id {spec.id!r}")
            self._specs[spec.id] = spec
        self._strategy = strategy
        self._intensity = RestartIntensity(max_restarts, within)
        self._backoff = backoff
        self._backoffs: dict[str, BackoffState] = {}
        self._clock = clock
        self._draw = draw

    async def receive(self, message: Any) -> Any:
        raise TypeError("supervisors take no user messages")

    async def on_start(self) -> None:
        for spec in list(self._specs.values()):
            try:
                await self._start(spec)
            except ActorCrashedError:
                await stop_children(self._cell)
                raise

    async def _start(self, spec: ChildSpec) -> Cell:
        return await start_child(
            self._cell, spec.actor, spec.args, dict(spec.kwargs), name=spec.id,
            capacity=spec.mailbox_size, shutdown_timeout=spec.shutdown, process=spec.process,
        )

    async def _add_child(self, spec: ChildSpec) -> ActorRef:
        if spec.id in self._specs or spec.id in self._cell.children:
            raise InvalidDefinitionError(
                f"supervisor {self._cell.path!r} already has a child {spec.id!r}"
            )
        child = await self._start(spec)
        self._specs[spec.id] = spec
        return child.ref

    def _policy(self) -> Supervisor:
        return self

    # -- ParentPolicy ----------------------------------------------------------

    async def child_exited(
        self, parent: Cell, child: Cell, reason: ExitReason, error: ActorCrashedError | None
    ) -> None:
        spec = self._specs.get(child.name)
        if spec is None or not should_restart(spec.restart, reason):
            await shutdown(child, reason, error)
            return
        now = self._clock()
        if self._intensity.record(now):
            await self._escalate(child, reason, error)
            return
        group = restart_group(self._strategy, list(self._specs), child.name)
        for child_id in reversed(group):
            sibling = parent.children.get(child_id)
            if sibling is None:
                continue
            if sibling is not child and self._specs[child_id].restart is Restart.TEMPORARY:
                await shutdown(sibling, ExitReason.SHUTDOWN)
            else:
                await suspend(sibling)
        ids = [child_id for child_id in group if child_id in parent.children]
        delay = self._delay(child.name, now)
        if delay <= 0:
            await self._restart(ids)
            return

        parent.call_later(delay, lambda: parent.post(lambda: self._restart(ids)))

    def child_removed(self, parent: Cell, child: Cell) -> None:
        self._specs.pop(child.name, None)
        self._backoffs.pop(child.name, None)

    def _delay(self, child_id: str, now: float) -> float:
        if self._backoff is None:
            return 0.0
        state = self._backoffs.get(child_id)
        if state is None:
            state = self._backoffs[child_id] = BackoffState(self._backoff, self._draw)
        return state.next_delay(now)

    async def _restart(self, ids: list[str]) -> None:
        children = self._cell.children
        for child_id in ids:
            child = children.get(child_id)
            if child is not None and child.state == SUSPENDED and not await restart(child):
                break  # its failure is queued as a new exit, which restarts the group again

    async def _escalate(
        self, child: Cell, reason: ExitReason, error: ActorCrashedError | None
    ) -> None:
        cell = self._cell
        what = f"child {child.name!r} {reason}"
        if error is not None:
            what += f": {error.type_name}: {error.error_message}"
        intensity = self._intensity
        failure = RestartIntensityError(cell.path, intensity.max_restarts, intensity.within, what)
        log.error("%s", failure)
        await stop_children(cell)
        cell.crashed(failure)
