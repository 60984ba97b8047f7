"""Restart intensity, as OTP counts it: more than N restarts within T seconds."""

from __future__ import annotations

from collections import deque

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """Remembers restart times and says when they exceed the allowed intensity.

    ``record(now)`` notes one restart at ``now`` and returns True when more
    than ``max_restarts`` restarts (this one included) fall within the last
    ``within`` seconds, the window's two ends included, as in OTP.
    """

    __slots__ = ("_times", "max_restarts", "within")

    def __init__(self, max_restarts: int, within: float) -> None:
        self.max_restarts = max_restarts
        self.within = within
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        times = self._times
        times.append(now)
        while times and now - times[0] > self.within:
            times.popleft()
        return len(times) > self.max_restarts

    def recent(self, now: float) -> int:
        """How many restarts fall within the window ending at ``now``."""
        return sum(1 for t in self._times if now - t <= self.within)
