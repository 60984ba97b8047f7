"""One way to observe: subscriptions to every execution or to one, bounded and counted,
and one payload type for middlewares, handlers and subscribers alike."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actorstage import ProcessOptions
from actorstage.workflows import (
    ActionDef,
    BrokerMessage,
    EncryptPayloads,
    MessageType,
    Middleware,
    Runner,
    StageDef,
    WorkflowDef,
)
from tests.workflows import actions  # noqa: F401 - registers the test actions

pytestmark = pytest.mark.anyio


def _flow(name: str = "watched") -> WorkflowDef:
    return WorkflowDef(id=name, stages=[StageDef(id="s", actions=[
        ActionDef(id="say", action="log", params={"message": "hi"}),
        ActionDef(id="put", action="store.set", params={"key": "k", "value": [1, 2]})])])


async def test_execution_events_give_every_message_from_the_start_and_end_with_it() -> None:
    async with Runner() as runner:
        execution = await runner.start(_flow())
        await execution.result()  # subscribing late loses nothing: the history is kept
        async with execution.events() as messages:
            seen = [message async for message in messages]  # ends by itself
        assert messages.missed == 0
    kinds = [m.payload.kind for m in seen if m.message_type == MessageType.PROGRESS]
    assert kinds[0] == "workflow_started" and kinds[-1] == "workflow_finished"
    assert [m.seq for m in seen] == list(range(1, len(seen) + 1))
    assert {"log", "store.put", "final_store"} <= {m.message_type for m in seen}


async def test_a_runner_subscription_sees_every_execution_and_counts_what_it_missed() -> None:
    async with Runner() as runner, runner.subscribe() as everything, \
            runner.subscribe(max_buffer=3) as few:
        first = await runner.start(_flow("one"))
        second = await runner.start(_flow("two"))
        await first.result()
        await second.result()
        got: list[BrokerMessage] = []
        with anyio.move_on_after(0.5):
            async for message in everything:
                got.append(message)
                finished = [m for m in got if m.message_type == MessageType.PROGRESS
                            and m.payload.kind == "workflow_finished"]
                if len(finished) == 2:
                    break
        assert {m.workflow_id for m in got} == {"one", "two"}
        assert few.missed == len(got) - 3  # bounded: the newest ones were dropped
        assert everything.missed == 0


class Record(Middleware):
    def __init__(self) -> None:
        self.types: set[tuple[str, str, str]] = set()

    async def outgoing(self, message: BrokerMessage) -> BrokerMessage:
        self.types.add(("outgoing", message.message_type, type(message.payload).__name__))
        return message

    async def incoming(self, message: BrokerMessage) -> BrokerMessage:
        self.types.add(("incoming", message.message_type, type(message.payload).__name__))
        return message


@pytest.mark.parametrize("process", [None, ProcessOptions()])
async def test_middlewares_handlers_and_subscribers_see_the_same_payload_types(
    process: ProcessOptions | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTORSTAGE_WORKFLOW_KEY", EncryptPayloads.generate_key())
    before, after = Record(), Record()
    handled: set[tuple[str, str]] = set()
    async with Runner() as runner:
        runner.broker.use(before)
        runner.broker.use(EncryptPayloads())  # sealed in between, opened before `after`
        runner.broker.use(after)

        def handler(message: BrokerMessage) -> None:
            handled.add((message.message_type, type(message.payload).__name__))

        runner.broker.register_handler("*", handler)
        execution = await runner.start(_flow(), process=process)
        async with execution.events() as messages:
            subscribed = {(m.message_type, type(m.payload).__name__) async for m in messages}
    expected: set[tuple[str, Any]] = {
        ("progress", "ProgressEvent"), ("log", "dict"), ("store.put", "dict"),
        ("final_store", "dict")}
    assert handled == subscribed == expected
    assert {(kind, name) for step, kind, name in after.types if step == "incoming"} == expected
    if process is None:  # (a spawned execution's outgoing steps ran in the child, sealed)
        assert {(kind, name) for step, kind, name in before.types
                if step == "outgoing"} == expected
