"""Per-child backoff state: consecutive failures, and the reset after a quiet period."""

from __future__ import annotations

from collections.abc import Callable

from actorstage.supervisors._spec import Backoff

__all__ = ["BackoffState"]


class BackoffState:
    """Turns a child's failures into restart delays.

    ``next_delay(now)`` is called once per failure. When the child ran at
    least ``reset_after`` seconds since its last restart, the sequence starts
    over from ``initial``.
    """

    __slots__ = ("_attempt", "_draw", "_policy", "_restarted_at")

    def __init__(self, policy: Backoff, draw: Callable[[], float]) -> None:
        self._policy = policy
        self._draw = draw
        self._attempt = 0
        self._restarted_at: float | None = None

    @property
    def attempt(self) -> int:
        """Consecutive failures counted so far."""
        return self._attempt

    def next_delay(self, now: float) -> float:
        policy = self._policy
        if self._restarted_at is not None and now - self._restarted_at >= policy.reset_after:
            self._attempt = 0
        self._attempt += 1
        delay = policy.delay(self._attempt, self._draw())
        self._restarted_at = now + delay
        return delay
