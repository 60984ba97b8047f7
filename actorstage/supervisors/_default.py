"""How a plain actor (and the system) treats its children: restart crashes, within limits.

Each child on its own may be restarted 3 times within 5 seconds; one more
crash stops it (its watchers get ``Terminated`` with the error). A child
that exits normally is not restarted. Nothing escalates: for strategies,
escalation and backoff, put the children under a ``Supervisor``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from actorstage.actors._lifecycle import restart, shutdown
from actorstage.actors._message import ExitReason
from actorstage.supervisors._intensity import RestartIntensity

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell
    from actorstage.exceptions import ActorCrashedError

__all__ = ["DEFAULT_POLICY", "TEMPORARY_POLICY", "DefaultPolicy", "TemporaryPolicy"]

log = logging.getLogger("actorstage")

MAX_RESTARTS = 3
WITHIN = 5.0


class DefaultPolicy:
    """Restart a crashed child unless it crashed too often; stop it otherwise."""

    async def child_exited(
        self, parent: Cell, child: Cell, reason: ExitReason, error: ActorCrashedError | None
    ) -> None:
        if reason is ExitReason.CRASHED:
            intensity = child.restart_log
            if intensity is None:
                intensity = child.restart_log = RestartIntensity(MAX_RESTARTS, WITHIN)
            if not intensity.record(time.monotonic()):
                await restart(child)
                return
            log.error("actor %s crashed more than %d times within %gs; stopping it",
                      child.path, MAX_RESTARTS, WITHIN)
        await shutdown(child, reason, error)

    def child_removed(self, parent: Cell, child: Cell) -> None:
        pass


DEFAULT_POLICY = DefaultPolicy()


class TemporaryPolicy:
    """Never restart: a child that ends, for any reason, is over (its watchers learn why)."""

    async def child_exited(
        self, parent: Cell, child: Cell, reason: ExitReason, error: ActorCrashedError | None
    ) -> None:
        await shutdown(child, reason, error)

    def child_removed(self, parent: Cell, child: Cell) -> None:
        pass


TEMPORARY_POLICY = TemporaryPolicy()
