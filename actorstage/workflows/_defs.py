"""Workflow definitions: msgspec Structs, loadable from JSON and YAML.

No ``from __future__ import annotations`` here: the Structs are re-exported
from ``actorstage.workflows`` under that module name, so msgspec must not
have to look their annotations up by name later.
"""

import logging
import math
import re
from pathlib import Path
from typing import Any, Literal

import msgspec

from actorstage._documents import check_json, load, text_of
from actorstage.exceptions import InvalidDefinitionError

__all__ = ["ActionDef", "StageDef", "WorkflowDef", "from_gostage", "is_gostage",
           "load_workflow", "parse_workflow"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
log = logging.getLogger("actorstage.workflows")


class ActionDef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One step of a stage.

    Attributes:
        id: Unique within its stage.
        action: The registered action id to run (``@register_action``).
        params: Checked against the action's ``Params`` type before anything runs.
        max_attempts: Attempts before the action counts as failed (1: no retry).
        backoff: Seconds before the second attempt; doubled for each further
            one, up to ``max_backoff``.
        max_backoff: The longest wait between two attempts.
    """

    id: str
    action: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    max_attempts: int = 1
    backoff: float = 0.0
    max_backoff: float = 30.0
    name: str = ""
    description: str = ""
    tags: list[str] = msgspec.field(default_factory=list)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))


class StageDef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A sequence of actions.

    Attributes:
        id: Unique within the workflow.
        actions: Run in order.
        on_error: ``"fail"`` ends the workflow as failed when an action fails
            for good; ``"continue"`` records the failure and goes on with the
            next action.
    """

    id: str
    actions: list[ActionDef]
    on_error: Literal["fail", "continue"] = "fail"
    name: str = ""
    description: str = ""
    tags: list[str] = msgspec.field(default_factory=list)


class WorkflowDef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A workflow: stages run in order, each a sequence of actions.

    Attributes:
        id: The workflow's id.
        name: A label for people (``description`` and ``tags`` too, on
            workflows, stages and actions alike).
        stages: Run in order.
        store: The store's initial values.
    """

    id: str
    stages: list[StageDef]
    name: str = ""
    store: dict[str, Any] = msgspec.field(default_factory=dict)
    description: str = ""
    tags: list[str] = msgspec.field(default_factory=list)


Dialect = Literal["auto", "actorstage", "gostage"]


def parse_workflow(data: bytes | str, *, format: Literal["json", "yaml"] = "json",
                   dialect: Dialect = "auto") -> WorkflowDef:
    """A ``WorkflowDef`` from JSON or YAML text; ``InvalidDefinitionError`` naming the problem.

    ``dialect``: ``"gostage"`` reads gostage's ``SubWorkflowDef`` (see
    ``from_gostage``); ``"auto"`` (the default) takes a definition as gostage's
    when it has ``initialStore`` or an action with no ``action`` key.

    The text is untrusted: its size, encoding, nesting and YAML aliases are
    bounded (``actorstage._documents``) before anything is built from it.
    """
    what = "the workflow definition"
    try:
        if format == "json":
            text = text_of(data, what)
            check_json(text, what)
            raw = msgspec.json.decode(text)
        else:
            raw = load(data, format, what)
    except msgspec.DecodeError as exc:
        raise InvalidDefinitionError(f"workflow definition is not valid JSON: {exc}") from None
    return workflow_of(raw, dialect)


def workflow_of(raw: Any, dialect: Dialect = "auto") -> WorkflowDef:
    """A ``WorkflowDef`` from a decoded definition (see ``parse_workflow``)."""
    try:
        if dialect == "gostage" or (dialect == "auto" and is_gostage(raw)):
            raw = from_gostage(raw)
        defn = msgspec.convert(raw, WorkflowDef)
    except msgspec.ValidationError as exc:
        raise InvalidDefinitionError(f"invalid workflow definition: {exc}") from None
    check_shape(defn)
    return defn


def is_gostage(raw: Any) -> bool:
    """Whether a decoded definition is gostage's ``SubWorkflowDef``: it has
    ``initialStore``, or an action with an ``id`` and no ``action``."""
    if not isinstance(raw, dict):
        return False
    if "initialStore" in raw:
        return True
    stages = raw.get("stages")
    actions = [action for stage in (stages if isinstance(stages, list) else [])
               if isinstance(stage, dict) and isinstance(stage.get("actions"), list)
               for action in stage["actions"]]
    return any(isinstance(action, dict) and "id" in action and "action" not in action
               for action in actions)


_GOSTAGE_KEYS = {
    "workflow": {"id", "name", "description", "tags", "stages", "initialStore"},
    "stage": {"id", "name", "description", "tags", "actions"},
    "action": {"id", "name", "description", "tags", "params"},
}


def from_gostage(raw: Any) -> Any:
    """gostage's ``SubWorkflowDef`` as actorstage's definition (decoded, not yet checked).

    As gostage builds it: an action's ``id`` is the registry key of the action
    to run (a second use of the same action in a stage gets the id
    ``<id>.2``, and so on: ids are unique here); each action param is also put
    in the store as ``param:<action id>:<key>``, where gostage's actions read
    them; ``initialStore`` seeds the store; ``name``, ``description`` and
    ``tags`` are kept. Keys gostage does not have are logged and dropped.
    """
    if not isinstance(raw, dict):
        return raw
    _unknown(raw, "workflow", "")
    store = dict(raw.get("initialStore") or {})
    stages = []
    for s_index, stage in enumerate(raw.get("stages") or []):
        if not isinstance(stage, dict):
            stages.append(stage)  # (the conversion names what is wrong)
            continue
        _unknown(stage, "stage", f"stages[{s_index}]")
        uses: dict[str, int] = {}
        actions = []
        for a_index, action in enumerate(stage.get("actions") or []):
            if not isinstance(action, dict):
                actions.append(action)
                continue
            _unknown(action, "action", f"stages[{s_index}].actions[{a_index}]")
            key = action.get("id")
            params = action.get("params") or {}
            if isinstance(key, str):
                uses[key] = uses.get(key, 0) + 1
                if isinstance(params, dict):
                    store.update({f"param:{key}:{name}": value
                                  for name, value in params.items()})
            count = uses.get(key, 1) if isinstance(key, str) else 1
            actions.append({**_labels(action), "id": key if count == 1 else f"{key}.{count}",
                            "action": key, "params": params})
        stages.append({**_labels(stage), "id": stage.get("id"), "actions": actions})
    return {**_labels(raw), "id": raw.get("id"), "stages": stages, "store": store}


def _labels(part: dict[str, Any]) -> dict[str, Any]:
    return {key: part[key] for key in ("name", "description", "tags")
            if part.get(key) is not None}


def _unknown(part: dict[str, Any], kind: str, where: str) -> None:
    extra = sorted(set(part) - _GOSTAGE_KEYS[kind])
    if extra:
        log.warning("gostage definition: %s has %s, which gostage's %s does not: not used",
                    where or "the workflow", ", ".join(extra), kind)


def load_workflow(path: str | Path) -> WorkflowDef:
    """A ``WorkflowDef`` from a ``.json``, ``.yaml`` or ``.yml`` file."""
    data, fmt = read_definition_file(path)
    try:
        return parse_workflow(data, format=fmt)
    except InvalidDefinitionError as exc:
        raise InvalidDefinitionError(f"{path}: {exc}") from None


def read_definition_file(path: str | Path) -> tuple[bytes, Literal["json", "yaml"]]:
    """The bytes of a definition file and their format (by its suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise InvalidDefinitionError(
            f"{path}: a workflow file ends in .json, .yaml or .yml, not {suffix or 'nothing'!r}")
    try:
        return path.read_bytes(), "json" if suffix == ".json" else "yaml"
    except OSError as exc:
        raise InvalidDefinitionError(f"{path}: cannot read the workflow file: {exc}") from None


def valid_id(text: str) -> bool:
    """Whether ``text`` is a usable id: 1-128 letters, digits or ``_.:-``, not starting
    with punctuation (workflow, stage, action and execution ids)."""
    return isinstance(text, str) and _ID.match(text) is not None


def check_shape(defn: WorkflowDef) -> None:
    """Ids, uniqueness and numbers; every problem at once, each with its place."""
    problems: list[str] = []
    if not valid_id(defn.id):
        problems.append(f"workflow id {defn.id!r} must be 1-128 letters, digits or _.:- "
                        "(starting with a letter or digit)")
    if not defn.stages:
        problems.append("the workflow has no stages")
    stage_ids: set[str] = set()
    for s_index, stage in enumerate(defn.stages):
        where = f"stages[{s_index}] ({stage.id!r})"
        if not valid_id(stage.id):
            problems.append(f"{where}: the stage id must be 1-128 letters, digits or _.:-")
        if stage.id in stage_ids:
            problems.append(f"{where}: duplicate stage id")
        stage_ids.add(stage.id)
        if not stage.actions:
            problems.append(f"{where}: the stage has no actions")
        action_ids: set[str] = set()
        for a_index, action in enumerate(stage.actions):
            place = f"{where}.actions[{a_index}] ({action.id!r})"
            if not valid_id(action.id):
                problems.append(f"{place}: the action id must be 1-128 letters, digits or _.:-")
            if action.id in action_ids:
                problems.append(f"{place}: duplicate action id in stage {stage.id!r}")
            action_ids.add(action.id)
            if not isinstance(action.max_attempts, int) or action.max_attempts < 1:
                problems.append(f"{place}: max_attempts must be >= 1, got {action.max_attempts}")
            for name in ("backoff", "max_backoff"):
                value = getattr(action, name)
                if not (math.isfinite(value) and value >= 0):
                    problems.append(f"{place}: {name} must be a number >= 0, got {value}")
    if problems:
        raise InvalidDefinitionError(
            f"invalid workflow {defn.id!r}: " + "; ".join(problems))
