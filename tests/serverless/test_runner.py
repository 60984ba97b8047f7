"""Serverless Workflows run by the Runner as stages workflows are: in this process or in a
child process of their own, with task progress events, pause, resume and cancel, and
through the runner service (either dialect, told apart by document.dsl)."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from actorstage.serverless import parse_definition
from actorstage.service import ExecuteRequest, ExecutionStatus, Isolation
from actorstage.workflows import BrokerMessage, ProgressEvent, Runner, Status, read_workflow
from tests.service.helpers import alive, run, serving

pytestmark = pytest.mark.anyio

ORDER = parse_definition("""
document: {dsl: '1.0.0', namespace: shop, name: order, version: '1.0.0'}
use:
  secrets: [SHOP_API_KEY]
do:
  - price:
      set: {total: '${ [.lines[].price] | add }', key: '${ $secrets.SHOP_API_KEY }'}
  - nap: {wait: {milliseconds: 300}}
  - label:
      switch:
        - big: {when: '${ .total > 100 }', then: expensive}
        - small: {then: cheap}
  - expensive: {set: {total: '${ .total }', key: '${ .key }', size: big}, then: end}
  - cheap: {set: {total: '${ .total }', size: small}}
""")


def _events(messages: list[BrokerMessage]) -> list[tuple[str, str]]:
    return [(message.payload.kind, message.payload.task) for message in messages
            if isinstance(message.payload, ProgressEvent)]


@pytest.mark.parametrize("process", [None, True], ids=["inline", "spawned"])
async def test_the_runner_runs_a_definition_here_or_in_a_child_process(
        process: bool | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_API_KEY", "k-123")  # a secret the definition uses
    async with Runner() as runner:
        execution = await runner.start(ORDER, store={"lines": [{"price": 60}, {"price": 70}]},
                                       process=process)
        async with execution.events() as stream:
            messages = [message async for message in stream]
        result = await execution.result()
    assert result.status == Status.SUCCEEDED
    assert result.output == result.store == {"total": 130, "key": "k-123", "size": "big"}
    assert (execution.pid is not None) == bool(process)
    assert _events(messages) == [
        ("workflow_started", ""),
        ("task_started", "/do/0/price"), ("task_finished", "/do/0/price"),
        ("task_started", "/do/1/nap"), ("task_finished", "/do/1/nap"),
        ("task_started", "/do/2/label"), ("task_finished", "/do/2/label"),
        ("task_started", "/do/3/expensive"), ("task_finished", "/do/3/expensive"),
        ("workflow_finished", "")]
    started = next(message.payload for message in messages
                   if isinstance(message.payload, ProgressEvent)
                   and message.payload.kind == "task_started")
    assert started.data == {"lines": [{"price": 60}, {"price": 70}]}  # the task's input


async def test_a_spawned_execution_pauses_inside_wait_resumes_and_is_cancelled() -> None:
    definition = parse_definition("""
document: {dsl: '1.0.0', namespace: shop, name: slow, version: '1.0.0'}
do:
  - nap: {wait: {milliseconds: 400}}
  - after: {set: {done: true}}
  - long: {wait: {seconds: 60}}
""")
    async with Runner() as runner:
        execution = await runner.start(definition, process=True)
        assert execution.pid is not None and alive(execution.pid)
        await anyio.sleep(0.1)
        await execution.pause()
        began = time.monotonic()
        await anyio.sleep(0.8)  # twice the nap: the pause holds the rest of it
        async with execution.events() as stream:
            seen = _events([message async for message in _until_idle(stream)])
        assert ("task_started", "/do/1/after") not in seen
        assert ("workflow_paused", "/do/0/nap") in seen
        await execution.resume()
        async with execution.events() as stream:
            async for message in stream:
                if isinstance(message.payload, ProgressEvent) and \
                        message.payload.task == "/do/2/long":
                    break
        assert time.monotonic() - began > 0.8
        await execution.cancel()
        with anyio.fail_after(10):
            result = await execution.result()
        assert result.status == Status.CANCELLED
        for _ in range(200):  # the child process ends with the execution
            if not alive(execution.pid):
                break
            await anyio.sleep(0.02)
        assert not alive(execution.pid)


async def _until_idle(stream: Any) -> Any:
    """The messages a subscription has now (it would wait for more)."""
    while True:
        with anyio.move_on_after(0.2) as idle:
            message = await stream.__anext__()
        if idle.cancelled_caught:
            return
        yield message


async def test_the_service_runs_either_dialect_and_watch_names_the_tasks() -> None:
    async with serving() as (_, stub):
        for isolation in (Isolation.INLINE, Isolation.PROCESS):
            events = await run(stub, ExecuteRequest(
                workflow="document: {dsl: '1.0.0', namespace: t, name: double, "
                         "version: '1'}\ndo:\n  - twice: {set: {n: '${ .n * 2 }'}}\n",
                store_json='{"n": 21}', isolation=isolation))
            assert events[-1].kind == "workflow_finished"
            assert events[-1].status == ExecutionStatus.SUCCEEDED
            assert json.loads(events[-1].store_json) == {"n": 42}
            started, finished = events[1], events[2]
            assert (started.kind, started.task, json.loads(started.data_json)) == (
                "task_started", "/do/0/twice", {"n": 21})
            assert (finished.kind, finished.task, json.loads(finished.data_json)) == (
                "task_finished", "/do/0/twice", {"n": 42})
            assert events[0].workflow_id == "double"


async def test_read_workflow_tells_the_dialects_apart() -> None:
    assert type(read_workflow("document: {dsl: '1.0.0', namespace: t, name: n, version: "
                              "'1'}\ndo:\n  - a: {set: {x: 1}}\n")).__name__ == \
        "ServerlessWorkflow"
    assert read_workflow('{"id": "w", "stages": [{"id": "s", "actions": [{"id": "a", '
                         '"action": "log", "params": {"message": "hi"}}]}]}').id == "w"
