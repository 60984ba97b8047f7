"""Timers that send an actor messages; they die with the actor's incarnation.

A timer is an event-loop callback, not a task. A repeating timer keeps at
most one tick in the mailbox: while a tick waits (a pause, a slow handler),
the next ones are skipped rather than piling up.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from actorstage.exceptions import InvalidDefinitionError

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell

__all__ = ["Timer"]


class Timer:
    """A scheduled message; ``cancel()`` stops it."""

    __slots__ = ("_cell", "_handle", "_interval", "_message", "_queued")

    def __init__(self, cell: Cell, message: Any, delay: float, interval: float | None) -> None:
        if not delay >= 0 or (interval is not None and not interval > 0):
            raise InvalidDefinitionError(
                f"timer delay must be >= 0 and interval > 0, got delay={delay!r}, "
                f"interval={interval!r}"
            )
        self._cell = cell
        self._message = message
        self._interval = interval
        self._queued = False
        self._handle: asyncio.TimerHandle | None = cell.system._loop.call_later(delay, self._fire)
        if cell.timers is None:
            cell.timers = set()
        cell.timers.add(self)

    @property
    def active(self) -> bool:
        """Whether the timer will still fire."""
        return self._handle is not None

    def cancel(self) -> None:
        """Stop the timer; a tick already queued is still delivered."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._cell.timers is not None:
            self._cell.timers.discard(self)

    def _fire(self) -> None:
        cell = self._cell
        if self._interval is None:
            self._handle = None
            if cell.timers is not None:
                cell.timers.discard(self)
        else:
            self._handle = cell.system._loop.call_later(self._interval, self._fire)
            if self._queued:
                return
        if cell.put_nowait(self._message, self):
            self._queued = True
        else:
            cell.dead_letter(self._message, None, "mailbox full when the timer fired")

    def delivered(self) -> None:
        self._queued = False

