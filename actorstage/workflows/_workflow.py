"""``Workflow``: a definition checked against the action registry, ready to run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from actorstage._documents import DocumentError, load
from actorstage._suggest import unknown_name
from actorstage.exceptions import InvalidDefinitionError
from actorstage.workflows._defs import ActionDef, WorkflowDef, check_shape, workflow_of
from actorstage.workflows._registry import Action, Registered, lookup, registered_actions

if TYPE_CHECKING:
    from actorstage.serverless._execution import ServerlessWorkflow

__all__ = ["Workflow", "defaults_of", "read_workflow"]


@dataclass(frozen=True)
class _Step:
    defn: ActionDef
    registered: Registered
    params: Any

    def build(self) -> Action:
        action = self.registered.factory(self.params)
        if not isinstance(action, Action):
            raise TypeError(f"the factory of action {self.registered.id!r} returned "
                            f"{action!r}, which is not an Action")
        return action


class Workflow:
    """A ``WorkflowDef`` whose actions are all registered and whose params all fit.

    Build it with ``Workflow.from_def(defn)``; every problem is reported at
    once, before anything runs.
    """

    def __init__(self, defn: WorkflowDef, steps: dict[tuple[str, str], _Step]) -> None:
        self.defn = defn
        self._steps = steps

    @property
    def id(self) -> str:
        return self.defn.id

    @classmethod
    def from_def(cls, defn: WorkflowDef) -> Workflow:
        """Check ``defn`` against the registry; ``InvalidDefinitionError`` names each problem."""
        if not isinstance(defn, WorkflowDef):
            raise InvalidDefinitionError(f"Workflow.from_def takes a WorkflowDef, got {defn!r}")
        check_shape(defn)
        steps: dict[tuple[str, str], _Step] = {}
        problems: list[str] = []
        for s_index, stage in enumerate(defn.stages):
            for a_index, action in enumerate(stage.actions):
                place = (f"stages[{s_index}] ({stage.id!r}).actions[{a_index}] "
                         f"({action.id!r})")
                registered = lookup(action.action)
                if registered is None:
                    problems.append(
                        f"{place}: {unknown_name('action', action.action, registered_actions())}")
                    continue
                try:
                    params = registered.params(action.params)
                except msgspec.ValidationError as exc:
                    problems.append(f"{place}: bad params for action {action.action!r}: {exc}")
                    continue
                steps[(stage.id, action.id)] = _Step(action, registered, params)
        if problems:
            raise InvalidDefinitionError(f"invalid workflow {defn.id!r}: " + "; ".join(problems))
        return cls(defn, steps)

    def step(self, stage_id: str, action_id: str) -> _Step:
        return self._steps[(stage_id, action_id)]

    def position(self, stage_id: str, action_id: str) -> int:
        """Where an action stands in the order of all the workflow's actions (0-based)."""
        order = self.__dict__.get("_order")
        if order is None:
            order = self._order = {(stage.id, action.id): index for index, (stage, action) in
                                   enumerate((stage, action) for stage in self.defn.stages
                                             for action in stage.actions)}
        return int(order[(stage_id, action_id)])

    def modules(self) -> list[str]:
        """The modules that register this workflow's actions (a child imports them)."""
        return sorted({step.registered.module for step in self._steps.values()})


def read_workflow(data: bytes | str, *, format: str | None = None
                  ) -> Workflow | ServerlessWorkflow:
    """A checked workflow of either dialect from YAML or JSON text (JSON when it starts
    with ``{``, unless ``format`` says): a Serverless Workflow when it has
    ``document.dsl``, stages and actions (actorstage's or gostage's) otherwise.
    ``InvalidDefinitionError`` names every problem."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    fmt = format or ("json" if text.lstrip().startswith("{") else "yaml")
    try:
        raw = load(data, fmt, "the workflow definition")
    except DocumentError as exc:
        raise InvalidDefinitionError(str(exc)) from None
    from actorstage.serverless._definition import is_serverless

    if is_serverless(raw):
        from actorstage.serverless._definition import parse_definition
        from actorstage.serverless._execution import ServerlessWorkflow

        return ServerlessWorkflow(parse_definition(raw))
    return Workflow.from_def(workflow_of(raw))


def defaults_of(workflow: Workflow | ServerlessWorkflow) -> dict[str, Any]:
    """The store a workflow starts with before the caller's values: its definition's."""
    return dict(workflow.defn.store) if isinstance(workflow, Workflow) else {}
