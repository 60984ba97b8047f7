"""``emit`` and ``listen`` over an in-process CloudEvents bus.

Every execution of a process shares one ``EventBus`` (``default_bus()``)
unless given its own: an ``emit`` publishes there, a ``listen`` waits there,
and Python code (a webhook handler, a test) can ``publish`` into it. There
is no broker: events do not leave the process (an execution spawned into a
child process has that process's bus), are not stored, and reach only the
listeners waiting when they are published.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["EventBus", "cloud_event", "default_bus"]

REQUIRED = ("source", "type")
MAX_WAITING = 10_000  # events a listener holds before it takes them (then the oldest go)


def cloud_event(attributes: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvent (spec 1.0) from ``emit.event.with``: ``id``, ``time`` and
    ``specversion`` are filled in when missing; ``ValueError`` when ``source`` or
    ``type`` is."""
    missing = [name for name in REQUIRED if not attributes.get(name)]
    if missing:
        raise ValueError(f"an event needs {' and '.join(missing)}")
    event = {"specversion": "1.0", "id": uuid.uuid4().hex,
             "time": datetime.datetime.now(datetime.UTC).isoformat(
                 timespec="milliseconds").replace("+00:00", "Z")}
    event.update({key: value for key, value in attributes.items() if value is not None})
    if "data" in event and "datacontenttype" not in event:
        event["datacontenttype"] = "application/json"
    return event


class EventBus:
    """Delivers each published event to every listener subscribed at the time."""

    def __init__(self) -> None:
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self.published = 0

    @property
    def listeners(self) -> int:
        """Listeners waiting now."""
        return len(self._listeners)

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Publish a CloudEvent (``cloud_event`` completes it); returns it."""
        event = cloud_event(event)
        self.published += 1
        for queue in self._listeners:
            if queue.full():
                queue.get_nowait()  # a listener far behind loses its oldest
            queue.put_nowait(event)
        return event

    @contextmanager
    def listen(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """The events published while the block runs, in order."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_WAITING)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)


_DEFAULT = EventBus()


def default_bus() -> EventBus:
    """The bus this process's executions share unless given their own."""
    return _DEFAULT


def matches(expected: Any, actual: Any, check: Any) -> bool:
    """Whether an event attribute passes a filter's value: a runtime expression
    (``check(expression, actual)`` is truthy), a regular expression or equal text, or an
    equal value."""
    if isinstance(expected, str):
        if expected.strip().startswith("${"):
            result = check(expected, actual)
            return result is not None and result is not False
        if not isinstance(actual, str):
            return False
        if expected == actual:
            return True
        try:
            return re.fullmatch(expected, actual) is not None
        except re.error:
            return False
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(key in actual and matches(value, actual[key], check)
                   for key, value in expected.items())
    return bool(expected == actual)
