"""The dead-letter stream: every message that could not be delivered, counted."""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from actorstage.actors._message import DeadLetter
from actorstage.actors._subscription import Subscription

if TYPE_CHECKING:
    from actorstage.actors._ref import ActorRef

__all__ = ["DeadLetterSubscription", "DeadLetters"]

log = logging.getLogger("actorstage.deadletters")


class DeadLetters:
    """Counts undeliverable messages and streams them to subscribers.

    The count is exact. A subscriber that falls more than its buffer behind
    misses records, and its ``missed`` says how many.
    """

    def __init__(self) -> None:
        self._count = 0
        self._by_reason: Counter[str] = Counter()
        self._subscribers: list[Subscription[DeadLetter]] = []

    @property
    def count(self) -> int:
        """How many messages could not be delivered since the system started."""
        return self._count

    def by_reason(self) -> dict[str, int]:
        """The count split by reason (a snapshot)."""
        return dict(self._by_reason)

    def subscribe(self, max_buffer: int = 1000) -> DeadLetterSubscription:
        """Follow dead letters as they happen::

            async with system.dead_letters.subscribe() as letters:
                async for letter in letters:
                    ...
        """
        return DeadLetterSubscription(self._subscribers, max_buffer)

    def _publish(self, recipient: ActorRef, message: Any, reason: str) -> None:
        self._count += 1
        self._by_reason[reason] += 1
        log.debug("dead letter to %s (%s): %r", recipient.path, reason, message)
        if self._subscribers:
            letter = DeadLetter(recipient, message, reason)
            for subscriber in self._subscribers:
                subscriber._offer(letter)


class DeadLetterSubscription(Subscription[DeadLetter]):
    """An async iterator of ``DeadLetter`` records; use it as an async context manager."""
