"""Lifecycle transitions of a cell: start, restart, stop, pause, resume.

Locks are taken top-down only (a parent's lane holds the parent's lock while
it stops or restarts a child, which takes the child's lock to stop the
grandchildren); exits travel bottom-up as posted operations, never as lock
acquisitions, so the tree cannot deadlock on itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from actorstage._metrics import restarted, stopped
from actorstage._telemetry import span
from actorstage.actors._actor import Actor, check_arguments, check_spawnable
from actorstage.actors._cell import (
    RUNNING,
    STOPPED,
    STOPPING,
    SUSPENDED,
    Cell,
    act_as,
    acting_cell,
)
from actorstage.actors._message import ExitReason
from actorstage.actors._tasks import TaskOwner
from actorstage.actors._watch import notify_watchers, unwatch_all
from actorstage.exceptions import ActorCrashedError, ActorDeadError, InvalidDefinitionError

__all__ = [
    "pause",
    "restart",
    "resume",
    "shutdown",
    "start_child",
    "stop_children",
    "suspend",
    "walk",
]

log = logging.getLogger("actorstage")

_CANCEL_GRACE = 1.0  # after cancelling a handler, how long to wait before abandoning it
_HOOK_TIMEOUT = 5.0  # bound on on_stop when the actor has no shutdown timeout of its own


_BASE_HOOKS = {name: getattr(Actor, name) for name in
               ("on_start", "on_stop", "on_pause", "on_resume")}


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not name or "/" in name or name != name.strip():
        raise InvalidDefinitionError(
            f"invalid actor name {name!r}: a name is a non-empty string "
            "without '/' or surrounding spaces"
        )
    return name


async def start_child(
    parent: Cell,
    factory: type[Actor],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    name: str | None,
    capacity: int | None,
    shutdown_timeout: float | None,
    process: object = None,
    given_options: tuple[str, ...] = (),
) -> Cell:
    """Create, start and register a child of ``parent``; returns when it is ready.

    With ``process`` (``True`` or a ``ProcessOptions``) the actor runs in a
    child process and the cell holds its ``ProcessHost``. ``given_options`` names
    the spawn options the caller gave (see ``check_arguments``).
    """
    if not parent.accepting:
        raise ActorDeadError(parent.path, parent.dead_reason())
    system = parent.system
    check_spawnable(factory)
    check_arguments(factory, args, kwargs, given_options)
    options = None
    if process is not None and process is not False:
        from actorstage.transport._host import check_importable
        from actorstage.transport._options import options_for

        options = options_for(process, system.process_defaults)
        if options is not None and factory._owns_tasks:
            raise InvalidDefinitionError(
                f"{factory.__qualname__} is a supervisor, which cannot run in a child process "
                "yet; give its children's ChildSpecs process=..., or run an actor in the "
                "child process that spawns its own children there"
            )
        check_importable(factory)
    if name is None:
        name = system._auto_name(factory)
    else:
        validate_name(name)
    starting = parent.starting
    if name in parent.children or (starting is not None and name in starting):
        raise InvalidDefinitionError(
            f"an actor named {name!r} already runs under {parent.path!r}; "
            "names are unique among siblings"
        )
    if capacity is None:
        capacity = system._mailbox_size
    elif not isinstance(capacity, int) or capacity < 1:
        raise InvalidDefinitionError(f"mailbox_size must be a positive int, got {capacity!r}")
    cell = Cell(system, parent, name, factory, args, kwargs, capacity, shutdown_timeout,
                parent.child_owner)
    if factory._owns_tasks and options is None:
        cell.child_owner = TaskOwner(system._loop, system._fatal)
    if options is not None:
        from actorstage.transport._host import ProcessRef, encode_args

        encode_args(cell.path, args, kwargs)  # refuse what cannot cross before starting anything
        cell.process = options
        if not factory._owns_tasks:
            cell.ref = ProcessRef._from_cell(cell)
    if starting is None:
        starting = parent.starting = {}
    starting[name] = cell  # (found there by messages routed to it from other processes)
    try:
        await start_instance(cell, "starting")
    finally:
        del starting[name]
    if not parent.accepting:
        await shutdown(cell, ExitReason.SHUTDOWN)
        raise ActorDeadError(parent.path, parent.dead_reason())
    parent.add_child(name, cell)
    started(cell)
    return cell


def started(cell: Cell) -> None:
    """A new incarnation is up: honour a stop asked for in on_start, or deliver."""
    cell.set_state(RUNNING)
    cell.system.tree_events.publish(cell, "restarted" if cell.restarts else "started")
    if cell.exit_requested:
        cell.exited_normally()
    elif cell.deliverable and cell.queue and not cell.draining:
        cell.schedule()


async def start_instance(cell: Cell, during: str) -> None:
    """Construct the actor and run ``on_start``; raises ``ActorCrashedError`` on failure."""
    cell.incarnation += 1
    token = act_as(cell)
    try:
        if cell.process is None:
            args, kwargs = cell.arguments
            actor = cell.factory(*args, **kwargs) if kwargs else cell.factory(*args)
        else:
            from actorstage.transport._host import ProcessHost

            actor = ProcessHost()
        actor._cell = cell
        cell.actor = actor
        await actor.on_start()
    except Exception as exc:
        cell.cancel_timers()
        await stop_children(cell)
        constructed, cell.actor = cell.actor is not None, None
        if isinstance(exc, ActorCrashedError) and exc.path == cell.path and cell.process:
            raise  # the child process reported its own failure, with its traceback
        if isinstance(exc, InvalidDefinitionError) and not constructed and cell.incarnation == 1:
            raise  # the constructor refused its arguments: a definition error, as documented
        error = ActorCrashedError.from_exception(cell.path, exc, during=during)
        raise error from exc
    finally:
        token.var.reset(token)


async def suspend(cell: Cell) -> None:
    """End the running incarnation for a restart, keeping the mailbox."""
    if cell.state < SUSPENDED:
        cell.set_state(SUSPENDED)
        cell.incarnation += 1
    if cell.children:
        async with cell.get_lock():
            await stop_children(cell)
    await teardown(cell, graceful=True)


async def restart(cell: Cell) -> bool:
    """Replace the incarnation; a failed start is reported to the parent as a crash."""
    if cell.state >= STOPPING:
        return False
    await suspend(cell)
    if cell.state >= STOPPING:
        return False
    cell.restarts += 1  # an attempt counts, and on_start sees its own number
    restarted(cell)
    with span(f"restart {cell.path}", {
            "actorstage.actor.path": cell.path,
            "actorstage.actor.class": cell.factory.__qualname__,
            "actorstage.restarts": cell.restarts}) as traced:
        try:
            await start_instance(cell, "restarting")
        except ActorCrashedError as error:
            traced.failed(error.error_message)
            log.warning("%s", error)
            cell.exited(ExitReason.CRASHED, error)
            return False
    started(cell)
    return True


async def stop_children(cell: Cell) -> None:
    """Stop every child, the last started first."""
    children = cell.children
    while children:  # again, if a child was added meanwhile
        for child in reversed(list(children.values())):
            await shutdown(child, ExitReason.SHUTDOWN)  # which removes it from children


async def shutdown(
    cell: Cell, reason: ExitReason, error: ActorCrashedError | None = None
) -> None:
    """Stop ``cell`` for good: its children first, then its handler, then its mailbox."""
    if cell.state >= STOPPING:
        await wait_stopped(cell)
        return
    cell.set_state(STOPPING)
    cell.incarnation += 1
    cell.exit_reason = reason
    cell.exit_error = error
    try:
        if cell.children or cell.lock is not None:
            async with cell.get_lock():
                await stop_children(cell)
        brutal = reason is ExitReason.KILLED or cell.shutdown_timeout is None
        await teardown(cell, graceful=not brutal)
    finally:
        cell.set_state(STOPPED)
        stopped(cell)  # (its handled messages stay counted)
        cell.system.tree_events.publish(cell, "stopped", reason=reason.value)
        flush(cell)
        if cell.child_owner is not cell.owner:
            await cell.child_owner.aclose()
        unwatch_all(cell)
        notify_watchers(cell)
        parent = cell.parent
        if parent is not None and parent.children.get(cell.name) is cell:
            del parent.children[cell.name]
            if parent.actor is not None:
                parent.actor._policy().child_removed(parent, cell)
        cell.wake("stop_waiters")


async def wait_stopped(cell: Cell) -> None:
    """Wait until ``cell`` has stopped for good (someone else is stopping it)."""
    if cell.state != STOPPED:
        await cell.add_waiter("stop_waiters")


async def teardown(cell: Cell, *, graceful: bool) -> None:
    """End the current instance: wait for (then cancel) its handler, run on_stop."""
    cell.cancel_timers()
    if cell.process is not None:  # the instance is a child process: stop it over there
        cell.pump = None
        host, cell.actor = cell.actor, None
        if host is not None:
            await host.close(graceful)  # type: ignore[attr-defined]
        return
    if cell.draining:
        quick = cell.actor is not None and type(cell.actor)._cancel_on_stop
        timeout = cell.shutdown_timeout if graceful and not quick else 0.0
        if timeout:
            try:
                async with asyncio.timeout(timeout):
                    await cell.wait_idle()
            except TimeoutError:
                log.warning("actor %s did not finish its message within %gs; cancelling it",
                            cell.path, timeout)
        await cancel_drain(cell)
    actor = cell.actor
    if actor is None:
        return
    cell.actor = None
    if graceful:
        bound = cell.shutdown_timeout or _HOOK_TIMEOUT
        await run_hook(cell, actor, "on_stop", bound, report=False)


async def cancel_drain(cell: Cell) -> None:
    """Cancel a running handler; repeat while it swallows the cancellation."""
    loop = cell.system._loop
    deadline = loop.time() + _CANCEL_GRACE
    while cell.draining and cell.drain_task is not None:
        task = cell.drain_task
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("actor %s ignores cancellation; its handler is abandoned", cell.path)
            cell.draining = False
            cell.drain_task = None
            return
        await asyncio.wait({task}, timeout=min(remaining, 0.05))


async def run_hook(
    cell: Cell, actor: Actor, hook: str, bound: float | None = None, *, report: bool = True
) -> bool:
    """Run a lifecycle hook; a raising hook crashes the actor (or is logged, when ending)."""
    if getattr(type(actor), hook) is _BASE_HOOKS[hook]:
        return True  # not overridden: nothing to run
    token = act_as(cell)
    try:
        if bound is None:
            await getattr(actor, hook)()
        else:
            async with asyncio.timeout(bound):
                await getattr(actor, hook)()
    except Exception as exc:
        if report:
            cell.crashed(exc, during=f"in {hook}")
        else:
            log.warning("actor %s raised in %s: %r", cell.path, hook, exc)
        return False
    finally:
        token.var.reset(token)
    return True


def flush(cell: Cell) -> None:
    """Turn everything still queued for a stopped cell into dead letters."""
    reason = cell.dead_reason()
    queue, cell.queue = cell.queue, None
    for message, reply in queue or ():
        cell.dead_letter(message, reply, reason)
    waiters, cell.waiters = cell.waiters, None
    for waiter, (message, reply) in waiters or ():
        if not waiter.done():
            cell.dead_letter(message, reply, reason)
            waiter.set_result(False)
    cell.wake("idle_waiters")


def walk(cell: Cell) -> Iterator[Cell]:
    """``cell`` and its descendants, parents before children."""
    yield cell
    for child in list(cell.children.values()):
        yield from walk(child)


async def pause(cell: Cell) -> None:
    """Stop delivering user messages to the subtree, after the messages in hand."""
    cells = [c for c in walk(cell) if not c.paused and c.state < STOPPING]
    for c in cells:
        c.set_paused(True)
    me = acting_cell()
    for c in cells:
        if c is not me:
            await c.wait_idle()
    for c in cells:
        if c.state == RUNNING and c.actor is not None:
            await run_hook(c, c.actor, "on_pause")
        c.system.tree_events.publish(c, "paused")


async def resume(cell: Cell) -> None:
    """Deliver again what queued up during the pause, in order."""
    cells = [c for c in walk(cell) if c.paused and c.state < STOPPING]
    for c in cells:
        if c.state == RUNNING and c.actor is not None:
            await run_hook(c, c.actor, "on_resume")
        c.set_paused(False)
        c.system.tree_events.publish(c, "resumed")
