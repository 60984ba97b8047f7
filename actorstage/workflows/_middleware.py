"""Broker middleware: an ordered chain over every message, and lifecycle hooks.

A middleware sees each message twice at most: ``outgoing`` where the
workflow runs, before the message leaves (in the child process, for a
spawned workflow), and ``incoming`` in the parent, before the handlers.
Either may return the message as is, a changed copy, or ``None`` to drop it
(the broker counts drops). Middlewares that are msgspec Structs are sent to
the child process and run their ``outgoing`` there; others run both steps
in the parent.

Payloads have one documented type everywhere, for middlewares, handlers and
subscriptions alike: a progress message carries a ``ProgressEvent`` (its
``seq`` is 0 until the parent numbers it, so ``outgoing`` steps see 0), a
``log`` message ``{"level", "message"}``, ``store.put`` ``{"key", "value"}``,
``store.delete`` ``{"key"}``, ``final_store`` the store, and a custom kind
what ``ctx.send`` was given. Only between an encrypting ``outgoing`` and the
matching ``incoming`` is a payload sealed (``EncryptPayloads``).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import msgspec

from actorstage.exceptions import InvalidDefinitionError
from actorstage.workflows._events import (
    BrokerMessage,
    ErrorInfo,
    ProgressEvent,
    WorkflowResult,
    typed,
)

if TYPE_CHECKING:
    from actorstage.workflows._defs import WorkflowDef
    from actorstage.workflows._runner import Execution

__all__ = ["EncryptPayloads", "LogMessages", "Metrics", "Middleware"]

log = logging.getLogger("actorstage.workflows")


class Middleware:
    """Subclass and override what you need; every method's default does nothing."""

    async def outgoing(self, message: BrokerMessage) -> BrokerMessage | None:
        """Where the workflow runs, before the message leaves; ``None`` drops it."""
        return message

    async def incoming(self, message: BrokerMessage) -> BrokerMessage | None:
        """In the parent, before the handlers; ``None`` drops it."""
        return message

    def child_env(self) -> dict[str, str]:
        """Environment variables a spawned child needs (never its command line)."""
        return {}

    def check(self) -> None:
        """Raise, naming the problem, if this middleware cannot work (``Broker.use`` asks)."""

    async def spawn_definition(self, defn: WorkflowDef) -> WorkflowDef:
        """A workflow is to start in a child process: the definition it runs (``defn``,
        or a changed copy, which is checked again). Raising refuses the spawn, with an
        ``InvalidDefinitionError`` that names this middleware (gostage's ``BeforeSpawn``)."""
        return defn

    async def before_spawn(self, execution: Execution) -> None:
        """A workflow is about to start in a child process."""

    async def after_spawn(self, execution: Execution) -> None:
        """Its child process runs (``execution.pid``)."""

    async def on_child_exit(self, execution: Execution, result: WorkflowResult) -> None:
        """A spawned workflow's child process has ended, with this result (its ``error``
        says why it failed, also when the process died: gostage's ``AfterSpawn``)."""

    async def on_error(self, execution: Execution, error: ErrorInfo) -> None:
        """An execution failed (here or in a child)."""


class Metrics(Middleware):
    """Counts messages by type (and progress by kind) and times executions.

    ``summary()`` returns the figures: messages by type and progress events
    by kind (a message dropped by a middleware earlier in the chain is not
    counted); the delay from a message's creation to its arrival here (mean
    and max, seconds); each execution's status and duration; how many were
    spawned and how many failed.
    """

    def __init__(self) -> None:
        self.by_type: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.delays: list[float] = []
        self.executions: dict[str, tuple[str, float]] = {}
        self.errors = 0
        self.spawned = 0

    async def incoming(self, message: BrokerMessage) -> BrokerMessage | None:
        self.by_type[message.message_type] += 1
        event = message.payload
        if isinstance(event, ProgressEvent):
            self.by_kind[event.kind] += 1
            if event.kind == "workflow_finished":
                started = self.executions.get(message.execution_id, ("", message.time))[1]
                self.executions[message.execution_id] = (event.status,
                                                         message.time - started)
            elif event.kind == "workflow_started":
                self.executions[message.execution_id] = ("running", message.time)
        if message.time:
            self.delays.append(max(time.time() - message.time, 0.0))
        return message

    async def after_spawn(self, execution: Execution) -> None:
        self.spawned += 1

    async def on_error(self, execution: Execution, error: ErrorInfo) -> None:
        self.errors += 1

    def summary(self) -> dict[str, Any]:
        delays = self.delays
        return {
            "messages": dict(self.by_type),
            "progress": dict(self.by_kind),
            "delivery_delay_mean_s": sum(delays) / len(delays) if delays else 0.0,
            "delivery_delay_max_s": max(delays, default=0.0),
            "executions": {key: {"status": status, "seconds": round(seconds, 4)}
                           for key, (status, seconds) in self.executions.items()},
            "spawned": self.spawned,
            "errors": self.errors,
        }


class LogMessages(Middleware):
    """Logs each message as it arrives (type, place, payload) at ``level``, and the
    lifecycle hooks (spawn, child exit, error) at ``hooks_level``, with Python logging."""

    def __init__(self, logger: str = "actorstage.workflows.messages",
                 level: int = logging.INFO, hooks_level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger)
        self.level = level
        self.hooks_level = hooks_level

    async def incoming(self, message: BrokerMessage) -> BrokerMessage | None:
        if self.logger.isEnabledFor(self.level):
            where = "/".join(part for part in (message.stage_id, message.action_id) if part)
            self.logger.log(self.level, "%s #%d %s %s: %r", message.execution_id[:8],
                            message.seq, message.message_type, where or "-", message.payload)
        return message

    async def before_spawn(self, execution: Execution) -> None:
        self.logger.log(self.hooks_level, "%s: spawning workflow %r", execution.id[:8],
                        execution.workflow_id)

    async def after_spawn(self, execution: Execution) -> None:
        self.logger.log(self.hooks_level, "%s: running in process %s", execution.id[:8],
                        execution.pid)

    async def on_child_exit(self, execution: Execution, result: WorkflowResult) -> None:
        self.logger.log(self.hooks_level, "%s: child process ended, workflow %s", execution.id[:8],
                        result.status)

    async def on_error(self, execution: Execution, error: ErrorInfo) -> None:
        self.logger.log(max(self.hooks_level, logging.WARNING), "%s: failed: %s: %s",
                        execution.id[:8], error.type_name, error.message)


class EncryptPayloads(Middleware, msgspec.Struct, frozen=True, kw_only=True):
    """Authenticated encryption (AES-256-GCM) of payloads between child and parent.

    The key (32 bytes, urlsafe base64) is read from the environment variable
    ``key_env`` in both processes; a spawned child gets it through its
    environment, never its command line. The message's type, ids and number
    are bound to the ciphertext as associated data: a payload moved to
    another message, altered or forged fails to decrypt and is dropped (and
    logged). Needs the ``cryptography`` package (``actorstage[crypto]``).
    """

    key_env: str = "ACTORSTAGE_WORKFLOW_KEY"

    @staticmethod
    def generate_key() -> str:
        """A new random key, as the environment variable's value."""
        return base64.urlsafe_b64encode(os.urandom(32)).decode()

    def _cipher(self) -> Any:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise InvalidDefinitionError(
                "EncryptPayloads needs the cryptography package: "
                "pip install 'actorstage[crypto]'") from None
        text = os.environ.get(self.key_env)
        if not text:
            raise InvalidDefinitionError(
                f"EncryptPayloads: the environment variable {self.key_env} holds no key; "
                "set it to EncryptPayloads.generate_key()")
        try:
            key = base64.urlsafe_b64decode(text)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise InvalidDefinitionError(
                f"EncryptPayloads: {self.key_env} must hold 32 bytes in urlsafe base64")
        return AESGCM(key)

    def check(self) -> None:
        """Raise now (naming the problem) if there is no usable key."""
        self._cipher()

    @staticmethod
    def _bound(message: BrokerMessage) -> bytes:
        return (f"{message.execution_id}|{message.workflow_id}|{message.message_type}|"
                f"{message.stage_id}|{message.action_id}").encode()

    async def outgoing(self, message: BrokerMessage) -> BrokerMessage | None:
        nonce = os.urandom(12)
        sealed = self._cipher().encrypt(nonce, msgspec.msgpack.encode(message.payload),
                                        self._bound(message))
        return msgspec.structs.replace(message, payload={"aesgcm": nonce + sealed})

    async def incoming(self, message: BrokerMessage) -> BrokerMessage | None:
        payload = message.payload
        if not (isinstance(payload, dict) and set(payload) == {"aesgcm"}):
            log.error("EncryptPayloads: dropped an unencrypted %r message of execution %s",
                      message.message_type, message.execution_id)
            return None
        blob = payload["aesgcm"]
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._cipher().decrypt(blob[:12], blob[12:], self._bound(message))
        except (InvalidTag, TypeError, ValueError):
            log.error("EncryptPayloads: dropped a %r message of execution %s that failed "
                      "authentication", message.message_type, message.execution_id)
            return None
        return typed(msgspec.structs.replace(message, payload=msgspec.msgpack.decode(plain)))

    def child_env(self) -> dict[str, str]:
        return {self.key_env: os.environ.get(self.key_env, "")}

