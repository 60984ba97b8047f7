"""What an action sees while it runs: ``ActionContext``, the store, pause and cancel."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, overload

import anyio
import msgspec

from actorstage.workflows._events import MessageType, canonical

__all__ = ["ActionContext", "ActionLog", "Control", "Store"]

T = TypeVar("T")

Emit = Callable[[str, Any, str, str], Awaitable[None]]  # (type, payload, stage_id, action_id)

_encoder = msgspec.msgpack.Encoder()


class Control:
    """Pause and cancel of one execution, shared by its workflow and stage actors."""

    def __init__(self) -> None:
        self.paused = False
        self.cancelled = False
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.pause_requested = asyncio.Event()
        self.cancel_requested = asyncio.Event()
        self.running: asyncio.Task[Any] | None = None  # the action's task, to cancel it

    def pause(self) -> None:
        if not self.cancelled:
            self.paused = True
            self.resumed.clear()
            self.pause_requested.set()

    def resume(self) -> None:
        self.paused = False
        self.pause_requested.clear()
        self.resumed.set()

    def cancel(self) -> None:
        self.cancelled = True
        self.cancel_requested.set()
        self.resume()  # a paused workflow ends at once
        if self.running is not None and not self.running.done():
            self.running.cancel()


class Store:
    """The workflow's key/value store. Values are msgspec-encodable.

    ``put`` and ``delete`` are awaited: each is reported to the broker (and,
    for a workflow in a child process, to the parent's copy of the store).
    """

    def __init__(self, values: dict[str, Any], emit: Callable[[str, Any], Awaitable[None]]) -> None:
        self._values = values
        self._emit = emit

    @overload
    def get(self, key: str, default: Any = None) -> Any: ...

    @overload
    def get(self, key: str, default: Any = None, *, type: type[T]) -> T: ...

    def get(self, key: str, default: Any = None, *, type: Any = None) -> Any:
        """The value under ``key`` (``default`` when missing), converted to ``type`` if given.

        A value that does not fit ``type`` raises ``msgspec.ValidationError``.
        """
        if key not in self._values:
            return default
        value = self._values[key]
        return value if type is None else msgspec.convert(value, type)

    async def put(self, key: str, value: Any) -> None:
        """Set ``key``; ``TypeError`` if the value cannot be encoded (nothing is stored)."""
        if not isinstance(key, str):
            raise TypeError(f"store keys are str, got {key!r}")
        try:
            _encoder.encode(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"store value for {key!r} cannot be encoded: {exc}") from None
        self._values[key] = value
        await self._emit(MessageType.STORE_PUT, {"key": key, "value": value})

    async def delete(self, key: str) -> None:
        """Remove ``key`` (nothing happens when it is missing)."""
        if self._values.pop(key, _MISSING) is not _MISSING:
            await self._emit(MessageType.STORE_DELETE, {"key": key})

    def keys(self) -> list[str]:
        return list(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values))

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


_MISSING = object()


class ActionLog:
    """``ctx.log``: records go to Python logging and, as ``LOG`` messages, to the broker."""

    def __init__(self, logger: logging.Logger, emit: Callable[[str, Any], Awaitable[None]]) -> None:
        self._logger = logger
        self._emit = emit

    async def log(self, level: int, message: str) -> None:
        self._logger.log(level, "%s", message)
        await self._emit(MessageType.LOG, {"level": logging.getLevelName(level),
                                           "message": message})

    async def debug(self, message: str) -> None:
        await self.log(logging.DEBUG, message)

    async def info(self, message: str) -> None:
        await self.log(logging.INFO, message)

    async def warning(self, message: str) -> None:
        await self.log(logging.WARNING, message)

    async def error(self, message: str) -> None:
        await self.log(logging.ERROR, message)


class ActionContext:
    """What ``Action.execute`` gets: ids, the store, the broker, a log, and checkpoints."""

    def __init__(
        self, *, execution_id: str, workflow_id: str, stage_id: str, action_id: str,
        attempt: int, values: dict[str, Any], pause_point: Callable[[], Awaitable[None]],
        emit: Emit, control: Control | None = None, timers: dict[str, float] | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.stage_id = stage_id
        self.action_id = action_id
        self.attempt = attempt  # 1 for the first attempt
        self._timers = timers if timers is not None else {}  # sleeps' ends, by sleep
        self._sleeps = 0
        self._pause_point = pause_point
        self._emit = emit
        self._control = control if control is not None else Control()
        scoped = self._scoped
        self.store = Store(values, scoped)
        self.log = ActionLog(logging.getLogger(f"actorstage.workflows.{workflow_id}"), scoped)

    async def _scoped(self, message_type: str, payload: Any) -> None:
        await self._emit(message_type, payload, self.stage_id, self.action_id)

    async def send(self, message_type: str, payload: Any) -> None:
        """Send a message of your own kind (any str) to the broker's handlers.

        gostage's ``store_put`` and ``store_delete`` are actorstage's ``store.put``
        and ``store.delete``: their payload (``{"key", "value"}``, ``{"key"}``) goes to
        the parent's copy of the store and to the handlers of either name."""
        if not isinstance(message_type, str) or not message_type:
            raise TypeError(f"a message type is a non-empty str, got {message_type!r}")
        message_type = canonical(message_type)
        try:
            _encoder.encode(payload)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"payload of {message_type!r} cannot be encoded: {exc}") from None
        await self._emit(message_type, payload, self.stage_id, self.action_id)

    async def checkpoint(self) -> None:
        """A point where a pause takes effect (and a cancel lands) inside a long action."""
        await asyncio.sleep(0)
        await self._pause_point()

    @property
    def attempt_key(self) -> str:
        """A key that names this attempt of this action of this execution, the same when a
        durable runner runs the attempt again after a crash: for idempotent side effects
        (an idempotency key of a payment API, a row's unique key)."""
        return f"{self.execution_id}/{self.stage_id}/{self.action_id}/{self.attempt}"

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of running time: a pause holds the sleep, a cancel ends it.

        A pause requested during the sleep takes effect at once (as at a
        checkpoint); the rest of the sleep runs after the resume. Under a durable
        runner, a sleep interrupted by a crash sleeps only what was left of it.
        """
        key = f"{self.stage_id}/{self.action_id}/{self._sleeps}"
        self._sleeps += 1
        remaining = float(seconds)
        if key in self._timers:  # resumed after a crash: what is left of it
            remaining = max(0.0, self._timers[key] - time.time())
        requested = self._control.pause_requested
        while remaining > 0:
            self._timers[key] = time.time() + remaining
            await self._emit(MessageType.TIMER, {"timers": dict(self._timers)},
                             self.stage_id, self.action_id)
            started = time.monotonic()
            with anyio.move_on_after(remaining):
                await requested.wait()
            remaining -= time.monotonic() - started
            await self.checkpoint()
