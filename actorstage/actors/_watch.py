"""Death watch: ``Terminated`` delivered once to each watcher of an actor that ended."""

from __future__ import annotations

from actorstage.actors._cell import STOPPED, Cell
from actorstage.actors._message import ExitReason, Terminated

__all__ = ["notify_watchers", "unwatch", "unwatch_all", "watch"]


def watch(watcher: Cell, target: Cell) -> None:
    """Deliver ``Terminated`` to ``watcher`` once, when ``target`` stops (or now, if it has)."""
    if target.state == STOPPED:
        watcher.put_forced(Terminated(target.ref, target.exit_reason or ExitReason.STOPPED,
                                      target.exit_error))
        return
    if target.watchers is None:
        target.watchers = {}
    target.watchers[watcher] = None
    if watcher.watching is None:
        watcher.watching = {}
    watcher.watching[target] = None


def unwatch(watcher: Cell, target: Cell) -> None:
    if target.watchers is not None:
        target.watchers.pop(watcher, None)
    if watcher.watching is not None:
        watcher.watching.pop(target, None)


def unwatch_all(cell: Cell) -> None:
    for target in list(cell.watching or ()):
        unwatch(cell, target)


def notify_watchers(cell: Cell) -> None:
    watchers, cell.watchers = cell.watchers, None
    if not watchers:
        return
    notice = Terminated(cell.ref, cell.exit_reason or ExitReason.STOPPED, cell.exit_error)
    for watcher in watchers:
        if watcher.watching is not None:
            watcher.watching.pop(cell, None)
        watcher.put_forced(notice)
