"""Workflow definitions: loading from JSON and YAML, and every problem reported before a run."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from actorstage import InvalidDefinitionError
from actorstage.workflows import (
    Action,
    ActionDef,
    StageDef,
    Workflow,
    WorkflowDef,
    load_workflow,
    parse_workflow,
    register_action,
)
from tests.workflows import actions  # noqa: F401 - registers the test actions

YAML = """
id: onboarding
name: Onboard a user
store: {count: 10}
stages:
  - id: greet
    actions:
      - {id: hello, action: test.greet, params: {name: ada}}
      - id: retry
        action: test.flaky
        params: {succeed_on: 2}
        max_attempts: 3
        backoff: 0.01
  - id: tally
    on_error: continue
    actions:
      - {id: one, action: test.count}
"""


def test_a_yaml_file_and_its_json_twin_load_to_the_same_definition(tmp_path: Path) -> None:
    yaml_file = tmp_path / "flow.yaml"
    yaml_file.write_text(YAML)
    defn = load_workflow(yaml_file)
    assert defn.id == "onboarding"
    assert defn.store == {"count": 10}
    assert defn.stages[0].actions[1].max_attempts == 3
    assert defn.stages[1].on_error == "continue"
    json_file = tmp_path / "flow.json"
    json_file.write_bytes(msgspec.json.encode(defn))
    assert load_workflow(json_file) == defn
    workflow = Workflow.from_def(defn)
    assert workflow.modules() == ["tests.workflows.actions"]


@pytest.mark.parametrize(("text", "fmt", "problem"), [
    ("id: x\nstages: [", "yaml", "not valid YAML"),
    ("{", "json", "not valid JSON"),
    ('{"id": "x", "stages": [], "colour": "red"}', "json", "unknown field `colour`"),
    ('{"id": "x", "stages": [{"id": "s", "on_error": "shrug", "actions": []}]}', "json",
     "on_error"),
])
def test_malformed_definitions_name_the_problem(text: str, fmt: str, problem: str) -> None:
    with pytest.raises(InvalidDefinitionError, match=r"invalid|not valid") as caught:
        parse_workflow(text, format=fmt)  # type: ignore[arg-type]
    assert problem in str(caught.value)


def test_an_action_without_action_is_gostages_unless_the_dialect_is_declared() -> None:
    text = '{"id": "x", "stages": [{"id": "s", "actions": [{"id": "log"}]}]}'
    with pytest.raises(InvalidDefinitionError, match="missing required field `action`"):
        parse_workflow(text, dialect="actorstage")
    defn = parse_workflow(text)  # gostage's: the id is the action to run
    assert (defn.stages[0].actions[0].id, defn.stages[0].actions[0].action) == ("log", "log")


def test_every_shape_problem_is_reported_at_once_with_its_place() -> None:
    defn = WorkflowDef(id="bad id!", stages=[
        StageDef(id="s", actions=[ActionDef(id="a", action="test.count", max_attempts=0),
                                  ActionDef(id="a", action="test.count", backoff=-1)]),
        StageDef(id="s", actions=[]),
    ])
    with pytest.raises(InvalidDefinitionError) as caught:
        Workflow.from_def(defn)
    text = str(caught.value)
    for expected in ("workflow id 'bad id!'", "stages[0] ('s').actions[0] ('a'): max_attempts",
                     "stages[0] ('s').actions[1] ('a'): duplicate action id",
                     "backoff must be a number >= 0", "stages[1] ('s'): duplicate stage id",
                     "stages[1] ('s'): the stage has no actions"):
        assert expected in text


def test_unknown_actions_and_bad_params_name_the_id_the_place_and_the_registered_ids() -> None:
    defn = WorkflowDef(id="w", stages=[StageDef(id="s", actions=[
        ActionDef(id="a", action="test.nope"),
        ActionDef(id="b", action="test.flaky", params={"succeed_on": "soon"}),
        ActionDef(id="c", action="test.greet", params={"name": 5}),
    ])])
    with pytest.raises(InvalidDefinitionError) as caught:
        Workflow.from_def(defn)
    text = str(caught.value)
    assert "stages[0] ('s').actions[0] ('a'): unknown action 'test.nope'" in text
    assert "test.greet" in text and "test.flaky" in text  # the registered ids are listed
    assert "actions[1] ('b'): bad params for action 'test.flaky'" in text
    assert "succeed_on" in text
    assert "actions[2] ('c')" in text


def test_registering_is_checked() -> None:
    with pytest.raises(InvalidDefinitionError, match="not an Action subclass"):
        register_action("test.not-an-action")(int)
    with pytest.raises(InvalidDefinitionError, match="already registered"):

        @register_action("test.greet")
        class Impostor(Action):
            pass


def test_a_file_that_is_not_a_workflow_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinitionError, match=r"\.json, \.yaml or \.yml"):
        load_workflow(tmp_path / "flow.txt")
    with pytest.raises(InvalidDefinitionError, match="cannot read"):
        load_workflow(tmp_path / "missing.yaml")
