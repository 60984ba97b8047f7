"""gostage's definitions and messages: its SubWorkflowDef runs here, in-process and spawned,
through the scenarios of gostage's own spawn tests (written anew for actorstage)."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from actorstage import InvalidDefinitionError
from actorstage.workflows import (
    BrokerMessage,
    Middleware,
    Runner,
    Status,
    WorkflowDef,
    WorkflowResult,
    parse_workflow,
)
from tests.workflows import gostage_actions  # noqa: F401 - registers the actions

pytestmark = pytest.mark.anyio


def sub_workflow(workflow_id: str, *action_ids: str, **fields: Any) -> WorkflowDef:
    """A gostage SubWorkflowDef, as its JSON reads, parsed by actorstage."""
    doc = {"id": workflow_id, "stages": [
        {"id": f"{workflow_id}-stage", "actions": [{"id": key} for key in action_ids]}],
        **fields}
    return parse_workflow(json.dumps(doc))


class Parent:
    """What gostage's spawn tests register on the parent's broker: a store fed by
    store_put messages, and every log message."""

    def __init__(self, runner: Runner) -> None:
        self.store: dict[str, Any] = {}
        self.logs: list[str] = []
        self.final: dict[str, Any] | None = None
        self.events: list[str] = []
        broker = runner.broker
        broker.register_handler("store_put", self._put)
        broker.register_handler("log", lambda message: self.logs.append(
            message.payload["message"]))
        broker.register_handler("final_store", self._final)
        broker.register_handler("workflow_start", lambda m: self.events.append("start"))
        broker.register_handler("workflow_result", lambda m: self.events.append("result"))

    def _put(self, message: BrokerMessage) -> None:
        self.store[message.payload["key"]] = message.payload["value"]

    def _final(self, message: BrokerMessage) -> None:
        self.final = dict(message.payload)

    def logs_of(self, word: str) -> list[str]:
        return [line for line in self.logs if word in line]


async def test_a_sub_workflow_def_keeps_gostages_fields_and_conventions() -> None:
    defn = parse_workflow(json.dumps({
        "id": "wf", "name": "Workflow", "description": "about it", "tags": ["a", "b"],
        "initialStore": {"count": 1},
        "stages": [{"id": "s", "name": "Stage", "description": "d", "tags": ["t"],
                    "actions": [{"id": "store-modifier-action", "name": "Modify",
                                 "description": "x", "tags": ["u"],
                                 "params": {"greeting": "hi"}},
                                {"id": "store-modifier-action"}]}]}))
    assert (defn.name, defn.description, defn.tags) == ("Workflow", "about it", ["a", "b"])
    stage = defn.stages[0]
    assert (stage.name, stage.description, stage.tags) == ("Stage", "d", ["t"])
    first, second = stage.actions
    assert (first.id, first.action, first.name, first.tags) == (
        "store-modifier-action", "store-modifier-action", "Modify", ["u"])
    assert (second.id, second.action) == ("store-modifier-action.2", "store-modifier-action")
    assert defn.store == {"count": 1, "param:store-modifier-action:greeting": "hi"}
    async with Runner() as runner:  # in this process
        result = await runner.execute(defn)
    assert result.status == Status.SUCCEEDED
    assert result.store["greeting_seen"] == "hi" and result.store["item2"] == 42


@pytest.mark.parametrize("where", ["in-process", "spawned"])
async def test_success_sends_store_updates_and_logs_to_the_parent(where: str) -> None:
    async with Runner() as runner:
        parent = Parent(runner)
        defn = sub_workflow("child-workflow", "spawn-test-action")
        result = await (runner.spawn(defn) if where == "spawned" else runner.execute(defn))
    assert result.status == Status.SUCCEEDED, result.error
    assert parent.store == {"item1": "value1", "item2": 42}
    assert parent.logs_of("SpawnTestAction") == ["SpawnTestAction is executing.",
                                                 "SpawnTestAction has finished."]
    assert parent.events == ["start", "result"]


async def test_an_action_error_fails_the_spawn_and_its_log_still_arrives() -> None:
    async with Runner() as runner:
        parent = Parent(runner)
        result = await runner.spawn(sub_workflow("failing-child-workflow",
                                                 "error-test-action"))
    assert result.status == Status.FAILED and result.error is not None
    assert "intentional action failure" in result.error.message
    assert parent.logs_of("designed to fail") == ["This action is designed to fail."]


async def test_the_store_round_trips_with_an_initial_store() -> None:
    initial = {"parent_message": "Hello from parent", "initial_count": 100,
               "shared_data": {"x": 1, "y": 2}}
    async with Runner() as runner:
        parent = Parent(runner)
        result = await runner.spawn(sub_workflow("store-test-workflow", "store-modifier-action",
                                                 initialStore=initial))
    assert result.status == Status.SUCCEEDED, result.error
    final = parent.final
    assert final is not None and final == result.store
    assert {key: final[key] for key in initial} == initial
    assert (final["item1"], final["item2"]) == ("value1", 42)


async def test_a_panic_in_the_child_fails_the_spawn_after_the_log_before_it() -> None:
    async with Runner() as runner:
        parent = Parent(runner)
        result = await runner.spawn(sub_workflow("panicking-child-workflow",
                                                 "panic-test-action"))
    assert result.status == Status.FAILED and result.error is not None
    assert parent.logs_of("about to panic") == ["PanicTestAction is about to panic."]


async def test_a_two_second_timeout_ends_a_slow_child() -> None:
    async with Runner() as runner:
        parent = Parent(runner)
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            with anyio.fail_after(2):
                await runner.spawn(sub_workflow("slow-child-workflow", "slow-test-action"))
        assert time.monotonic() - began < 10  # cancelled, not waited out
    assert parent.logs_of("long operation") == ["SlowTestAction is starting long operation."]


async def test_an_unknown_action_id_and_an_empty_workflow_are_refused() -> None:
    async with Runner() as runner:
        with pytest.raises(InvalidDefinitionError, match="non-existent-action-id"):
            await runner.spawn(sub_workflow("malformed-workflow", "non-existent-action-id"))
        with pytest.raises(InvalidDefinitionError, match="no stages"):
            await runner.spawn(parse_workflow(json.dumps(
                {"id": "empty-workflow", "stages": [], "initialStore": {}})))


async def test_the_first_failure_stops_the_stage() -> None:
    async with Runner() as runner:
        parent = Parent(runner)
        result = await runner.spawn(sub_workflow(
            "multi-failure-workflow", "error-test-action", "panic-test-action"))
    assert result.status == Status.FAILED
    assert parent.logs_of("designed to fail") and not parent.logs_of("about to panic")


class Rewrite(Middleware):
    """gostage's BeforeSpawn and AfterSpawn: change the definition, see how it ended."""

    def __init__(self) -> None:
        self.ended: list[WorkflowResult] = []

    async def spawn_definition(self, defn: WorkflowDef) -> WorkflowDef:
        if defn.id == "refused":
            raise ValueError("not this one")
        return WorkflowDef(id=defn.id, stages=defn.stages,
                           description=defn.description or "Modified by middleware",
                           store={**defn.store, "spawned_by": "middleware"})

    async def on_child_exit(self, execution: Any, result: WorkflowResult) -> None:
        self.ended.append(result)


async def test_spawn_middleware_rewrites_the_definition_and_sees_the_exit_error() -> None:
    rewrite = Rewrite()
    async with Runner() as runner:
        runner.broker.use(rewrite)
        good = await runner.spawn(sub_workflow("ok", "store-modifier-action"))
        bad = await runner.spawn(sub_workflow("bad", "error-test-action"))
        with pytest.raises(InvalidDefinitionError, match="Rewrite refused the spawn: not "
                                                         "this one"):
            await runner.spawn(sub_workflow("refused", "store-modifier-action"))
        in_process = await runner.execute(sub_workflow("here", "store-modifier-action"))
    assert good.store["spawned_by"] == "middleware" and "spawned_by" not in in_process.store
    assert bad.status == Status.FAILED
    assert [result.status for result in rewrite.ended] == [Status.SUCCEEDED, Status.FAILED]
    assert rewrite.ended[1].error is not None
    assert "intentional action failure" in rewrite.ended[1].error.message
