"""Which children to restart, and whether to: OTP's rules as plain functions."""

from __future__ import annotations

from collections.abc import Sequence

from actorstage.actors._message import ExitReason
from actorstage.supervisors._spec import Restart, Strategy

__all__ = ["restart_group", "should_restart"]


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """Whether a child of this restart type is restarted after exiting for ``reason``."""
    if reason is ExitReason.CRASHED:
        return restart is not Restart.TEMPORARY
    if reason is ExitReason.NORMAL:
        return restart is Restart.PERMANENT
    return False  # stopped, shutdown or killed on purpose


def restart_group(strategy: Strategy, order: Sequence[str], failed: str) -> list[str]:
    """The children to restart after ``failed`` failed, in start order."""
    if strategy is Strategy.ONE_FOR_ONE:
        return [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(order)
    return list(order[order.index(failed):])
