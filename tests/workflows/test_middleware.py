"""Broker middleware: transform, drop, enrich, metrics, encryption across processes, hooks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from actorstage import InvalidDefinitionError
from actorstage.workflows import (
    ActionDef,
    BrokerMessage,
    EncryptPayloads,
    ErrorInfo,
    Execution,
    LogMessages,
    MessageType,
    Metrics,
    Middleware,
    Runner,
    StageDef,
    Status,
    WorkflowDef,
    WorkflowResult,
)
from tests.transport.helpers import FAST
from tests.workflows import actions  # noqa: F401 - registers the test actions

pytestmark = pytest.mark.anyio

FLOW = WorkflowDef(id="mw-flow", stages=[StageDef(id="s", actions=[
    ActionDef(id="hello", action="test.greet", params={"name": "ada"}),
    ActionDef(id="emit", action="test.emit"),
])])


class Shout(Middleware):
    """Transforms greetings, drops log messages, enriches custom ones."""

    async def incoming(self, message: BrokerMessage) -> BrokerMessage | None:
        if message.message_type == MessageType.LOG:
            return None
        payload = message.payload
        if message.message_type == MessageType.STORE_PUT and payload["key"] == "greeting":
            return msgspec.structs.replace(message, payload={**payload,
                                                             "value": payload["value"].upper()})
        if message.message_type == "custom.note":
            return msgspec.structs.replace(message, payload={**payload, "seen_by": "shout"})
        return message


class Peek(Middleware):
    """Keeps what arrives before the rest of the chain; can corrupt it on request."""

    def __init__(self, corrupt: str = "") -> None:
        self.seen: list[BrokerMessage] = []
        self.corrupt = corrupt

    async def incoming(self, message: BrokerMessage) -> BrokerMessage | None:
        self.seen.append(message)
        if message.message_type == self.corrupt:
            blob = bytearray(message.payload["aesgcm"])
            blob[-1] ^= 1
            return msgspec.structs.replace(message, payload={"aesgcm": bytes(blob)})
        return message


class Hooks(Middleware):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def before_spawn(self, execution: Execution) -> None:
        self.calls.append(("before_spawn", execution.pid))

    async def after_spawn(self, execution: Execution) -> None:
        self.calls.append(("after_spawn", execution.pid))

    async def on_child_exit(self, execution: Execution, result: WorkflowResult) -> None:
        self.calls.append(("on_child_exit", result.status))

    async def on_error(self, execution: Execution, error: ErrorInfo) -> None:
        self.calls.append(("on_error", error.type_name))


@pytest.fixture
def key() -> Iterator[str]:
    os.environ["TEST_WORKFLOW_KEY"] = EncryptPayloads.generate_key()
    yield "TEST_WORKFLOW_KEY"
    del os.environ["TEST_WORKFLOW_KEY"]


async def test_a_chain_transforms_drops_and_enriches_in_order() -> None:
    seen: list[BrokerMessage] = []
    async with Runner() as runner:
        metrics = Metrics()
        runner.broker.use(Shout())
        runner.broker.use(metrics)  # after Shout: it never sees the dropped log messages
        runner.broker.register_handler("*", seen.append)
        execution = await runner.start(FLOW)
        result = await execution.result()
    assert result.store == {"greeting": "hello ada"}  # the workflow's own store is untouched
    assert execution.store == {"greeting": "HELLO ADA"}  # what the handlers were told
    assert not [m for m in seen if m.message_type == MessageType.LOG]
    assert runner.broker.dropped == 1
    note = next(m for m in seen if m.message_type == "custom.note")
    assert note.payload == {"from": "emit", "seen_by": "shout"}
    summary = metrics.summary()
    assert "log" not in summary["messages"]
    assert summary["messages"]["store.put"] == 2
    assert summary["progress"]["action_finished"] == 2
    assert summary["executions"][execution.id]["status"] == "succeeded"


@pytest.mark.parametrize("start", ["spawn", "forkserver"])
async def test_payloads_cross_encrypted_and_arrive_decrypted(key: str, start: str) -> None:
    peek = Peek()
    seen: list[BrokerMessage] = []
    async with Runner() as runner:
        runner.broker.use(peek)  # first: it sees what came over the wire
        runner.broker.use(EncryptPayloads(key_env=key))
        runner.broker.register_handler("*", seen.append)
        options = msgspec.structs.replace(FAST, start=start)  # the key reaches both ways
        execution = await runner.start(FLOW, process=options)
        result = await execution.result()
    assert result.status == Status.SUCCEEDED
    assert peek.seen and all(set(m.payload) == {"aesgcm"} for m in peek.seen)
    assert b"ada" not in b"".join(m.payload["aesgcm"] for m in peek.seen)
    assert execution.store == result.store == {"greeting": "hello ada"}
    note = next(m for m in seen if m.message_type == "custom.note")
    assert note.payload == {"from": "emit"}
    assert runner.broker.dropped == 0


async def test_a_payload_that_fails_authentication_is_dropped_and_logged(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Runner() as runner:
        runner.broker.use(Peek(corrupt="custom.note"))
        runner.broker.use(EncryptPayloads(key_env=key))
        seen: list[BrokerMessage] = []
        runner.broker.register_handler("custom.note", seen.append)
        result = await runner.spawn(FLOW, process=FAST)
    assert result.status == Status.SUCCEEDED
    assert seen == [] and runner.broker.dropped == 1
    assert "failed authentication" in caplog.text


async def test_lifecycle_hooks_run_around_a_spawned_workflow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actorstage.workflows.messages")
    hooks = Hooks()
    async with Runner() as runner:
        runner.broker.use(hooks)
        runner.broker.use(LogMessages())
        failing = WorkflowDef(id="fails", stages=[StageDef(id="s", actions=[
            ActionDef(id="boom", action="test.fail")])])
        execution = await runner.start(failing, process=FAST)
        result = await execution.result()
    assert result.status == Status.FAILED
    assert hooks.calls[0] == ("before_spawn", None)
    assert hooks.calls[1][0] == "after_spawn" and hooks.calls[1][1] not in (None, os.getpid())
    assert hooks.calls[2:] == [("on_child_exit", Status.FAILED), ("on_error", "RuntimeError")]
    text = caplog.text
    assert "spawning workflow 'fails'" in text and f"running in process {execution.pid}" in text
    assert "failed: RuntimeError" in text and "progress" in text


async def test_middleware_is_checked_when_it_is_added() -> None:
    async with Runner() as runner:
        with pytest.raises(InvalidDefinitionError, match="NO_SUCH_KEY holds no key"):
            runner.broker.use(EncryptPayloads(key_env="NO_SUCH_KEY"))
        with pytest.raises(InvalidDefinitionError, match="is not a Middleware"):
            runner.broker.use(print)  # type: ignore[arg-type]
