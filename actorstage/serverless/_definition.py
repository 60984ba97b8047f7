"""Serverless Workflow DSL 1.x definitions: read, and checked before anything runs.

A definition is kept as the mapping it was read as; ``check`` walks it and
reports every problem at once, each with its JSON pointer (``/do/2/fetch/for``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from actorstage._documents import DocumentError, load
from actorstage.exceptions import InvalidDefinitionError

__all__ = ["TASK_KINDS", "Definition", "DefinitionError", "Task", "is_serverless",
           "parse_definition"]

TASK_KINDS = ("call", "do", "emit", "for", "fork", "listen", "raise", "run", "set", "switch",
              "try", "wait")
# A workflow's properties (schedule is read, not acted on: executions start when asked).
TOP = ("document", "input", "use", "do", "timeout", "output", "schedule", "evaluate")
USES = ("authentications", "errors", "extensions", "functions", "retries", "secrets",
        "timeouts", "catalogs")
COMMON = frozenset({"if", "input", "output", "export", "timeout", "then", "metadata"})
FLOW = frozenset({"continue", "exit", "end"})
_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")  # the DSL's names: kebab-case
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_UNITS = {"days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0,
          "milliseconds": 0.001}


class DefinitionError(InvalidDefinitionError):
    """A definition that cannot run; ``problems`` lists every one as (pointer, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {where or '/'}: {why}" for where, why in problems)
        count = len(problems)
        super().__init__(f"invalid Serverless Workflow definition ({count} problem"
                         f"{'s' if count != 1 else ''}):\n{lines}")


@dataclass(frozen=True)
class Task:
    """One task: its name, its kind, its definition, where it is (a JSON pointer), and the
    task lists inside it, read once with it: ``do`` (of ``do`` and ``for``), ``try``,
    ``catch`` (``catch.do``) and ``branches`` (of ``fork``)."""

    name: str
    kind: str
    body: dict[str, Any]
    pointer: str
    lists: dict[str, list[Task]] = field(default_factory=dict)


@dataclass
class Definition:
    """A checked definition: ``document``, its top-level ``tasks``, the rest as read."""

    raw: dict[str, Any]
    tasks: list[Task] = field(default_factory=list)

    @property
    def document(self) -> dict[str, Any]:
        return dict(self.raw["document"])

    @property
    def name(self) -> str:
        return str(self.raw["document"]["name"])


def is_serverless(raw: Any) -> bool:
    """Whether a decoded definition is a Serverless Workflow one (it has ``document.dsl``)."""
    return isinstance(raw, dict) and isinstance(raw.get("document"), dict) and \
        "dsl" in raw["document"]


def parse_definition(data: bytes | str | dict[str, Any], *, format: str = "yaml"
                     ) -> Definition:
    """A checked ``Definition`` from YAML or JSON text (or a decoded mapping);
    ``DefinitionError`` lists every problem."""
    if isinstance(data, dict):
        raw: Any = data
    else:
        try:
            raw = load(data, format, "the workflow definition")
        except DocumentError as exc:
            raise DefinitionError([("", str(exc))]) from None
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise DefinitionError([("", f"a definition is a mapping, got {type(raw).__name__}")])
    _document(raw.get("document"), problems)
    for key in raw:
        if key not in TOP:
            problems.append((f"/{key}", f"unknown property of a workflow: it has "
                                        f"{', '.join(TOP)}"))
    use = raw.get("use")
    if use is not None and not isinstance(use, dict):
        problems.append(("/use", "must be a mapping"))
    elif isinstance(use, dict):
        for key, value in use.items():
            if key not in USES:
                problems.append((f"/use/{key}", f"unknown: use has {', '.join(USES)}"))
            elif key == "secrets" and not (isinstance(value, list) and
                                           all(isinstance(name, str) for name in value)):
                problems.append(("/use/secrets", "a list of secret names"))
            elif key != "secrets" and not isinstance(value, dict):
                problems.append((f"/use/{key}", "a mapping of names to definitions"))
    tasks = _task_list(raw.get("do"), "/do", problems, required=True)
    for key in ("input", "output"):
        if key in raw and not isinstance(raw[key], dict):
            problems.append((f"/{key}", "must be a mapping"))
        elif key in raw:
            _check_schema(raw[key].get("schema"), f"/{key}/schema", problems)
    if problems:
        raise DefinitionError(problems)
    return Definition(raw, tasks)


def _document(document: Any, problems: list[tuple[str, str]]) -> None:
    if not isinstance(document, dict):
        problems.append(("/document", "missing: a definition starts with `document` (dsl, "
                                      "namespace, name, version)"))
        return
    for key in ("dsl", "namespace", "name", "version"):
        if not isinstance(document.get(key), str) or not document.get(key):
            problems.append((f"/document/{key}", "missing, or not a string"))
    dsl = document.get("dsl")
    if isinstance(dsl, str) and not re.match(r"^1\.\d+(\.\d+)?(-[\w.]+)?$", dsl):
        problems.append(("/document/dsl", f"version {dsl!r} is not one this runtime runs: "
                                          "it runs DSL 1.x"))
    for key in ("namespace", "name"):
        value = document.get(key)
        if isinstance(value, str) and value and not _NAME.match(value):
            problems.append((f"/document/{key}", f"{value!r} must be lowercase letters, "
                                                 "digits and hyphens"))


def _task_list(value: Any, where: str, problems: list[tuple[str, str]], *,
               required: bool = False) -> list[Task]:
    if not isinstance(value, list) or (required and not value):
        problems.append((where, "must be a non-empty list of tasks, each a mapping of its "
                                "name to its definition"))
        return []
    tasks: list[Task] = []
    names: set[str] = set()
    for index, entry in enumerate(value):
        place = f"{where}/{index}"
        if not isinstance(entry, dict) or len(entry) != 1:
            problems.append((place, "must be a mapping of one task name to its definition"))
            continue
        [(name, body)] = entry.items()
        pointer = f"{place}/{name}"
        if name in names:
            problems.append((pointer, f"a second task named {name!r} in this list"))
        names.add(name)
        if not isinstance(body, dict):
            problems.append((pointer, "a task's definition is a mapping"))
            continue
        kinds = [key for key in body if key in TASK_KINDS]
        if "for" in kinds and "do" in kinds:  # a for task's `do` is its body, not a kind
            kinds.remove("do")
        unknown = [key for key in body if key not in TASK_KINDS and key not in COMMON
                   and not _belongs(kinds, key)]
        if len(kinds) != 1:
            problems.append((pointer, f"a task has exactly one of {', '.join(TASK_KINDS)}; "
                                      f"this one has {', '.join(kinds) or 'none'}"))
            continue
        kind = kinds[0]
        for key in unknown:
            problems.append((f"{pointer}/{key}", f"unknown property of a {kind} task"))
        task = Task(str(name), kind, body, pointer)
        for key in ("input", "output", "export"):
            if isinstance(body.get(key), dict):
                _check_schema(body[key].get("schema"), f"{pointer}/{key}/schema", problems)
        _check_task(task, problems)
        tasks.append(task)
    for task in tasks:  # a `then` names a task of the same list
        then = task.body.get("then")
        if then is not None and (not isinstance(then, str) or
                                 (then not in FLOW and then not in names)):
            problems.append((f"{task.pointer}/then", f"{then!r} is not continue, exit, end "
                                                     "or the name of a task of this list"))
    return tasks


def _belongs(kinds: list[str], key: str) -> bool:
    """Properties a task kind has beside its own key (``with`` of call, ``do`` of for...)."""
    extra = {"call": {"with"}, "for": {"while", "do"}, "try": {"catch"}, "run": set(),
             "listen": {"foreach"}}
    return any(key in extra.get(kind, set()) for kind in kinds)


def _check_task(task: Task, problems: list[tuple[str, str]]) -> None:
    kind, body, pointer = task.kind, task.body, task.pointer
    here = f"{pointer}/{kind}"
    value = body[kind]
    if kind == "call":
        _check_call(value, body.get("with"), pointer, problems)
    elif kind == "set" and not isinstance(value, dict | str):
        problems.append((here, "must be a mapping of values, or an expression"))
    elif kind == "do":
        task.lists["do"] = _task_list(value, here, problems, required=True)
    elif kind == "switch":
        if not isinstance(value, list) or not value:
            problems.append((here, "must be a non-empty list of cases"))
            return
        for index, case in enumerate(value):
            if not isinstance(case, dict) or len(case) != 1:
                problems.append((f"{here}/{index}", "a case is a mapping of its name to "
                                                    "`when` and `then`"))
                continue
            [(name, spec)] = case.items()
            if not isinstance(spec, dict) or not isinstance(spec.get("then"), str):
                problems.append((f"{here}/{index}/{name}/then", "missing: where to go"))
    elif kind == "for":
        if not isinstance(value, dict) or not isinstance(value.get("in"), str):
            problems.append((f"{here}/in", "missing: the expression of the collection"))
        task.lists["do"] = _task_list(body.get("do"), f"{pointer}/do", problems,
                                      required=True)
    elif kind == "raise":
        error = value.get("error") if isinstance(value, dict) else None
        if isinstance(error, dict):
            for key in ("type", "status"):
                if key not in error:
                    problems.append((f"{here}/error/{key}", "missing"))
        elif not isinstance(error, str):
            problems.append((f"{here}/error", "an error (type, status, title, detail) or "
                                              "the name of one in use.errors"))
    elif kind == "wait":
        try:
            duration_seconds(value)
        except ValueError as exc:
            problems.append((here, str(exc)))
    elif kind == "try":
        task.lists["try"] = _task_list(value, here, problems, required=True)
        catch = body.get("catch")
        if not isinstance(catch, dict):
            problems.append((f"{pointer}/catch", "missing: which errors to catch, and how"))
            return
        if "do" in catch:
            task.lists["catch"] = _task_list(catch["do"], f"{pointer}/catch/do", problems,
                                             required=True)
        retry = catch.get("retry")
        if isinstance(retry, dict):
            for key in ("delay",):
                if key in retry:
                    try:
                        duration_seconds(retry[key])
                    except ValueError as exc:
                        problems.append((f"{pointer}/catch/retry/{key}", str(exc)))
        elif retry is not None and not isinstance(retry, str):
            problems.append((f"{pointer}/catch/retry", "a retry policy, or the name of one in "
                                                      "use.retries"))
    elif kind == "fork":
        branches = value.get("branches") if isinstance(value, dict) else None
        task.lists["branches"] = _task_list(branches, f"{here}/branches", problems,
                                            required=True)
    elif kind == "emit":
        event = value.get("event") if isinstance(value, dict) else None
        attributes = event.get("with") if isinstance(event, dict) else None
        if not isinstance(attributes, dict):
            problems.append((f"{here}/event/with", "missing: the event's attributes"))
            return
        for key in ("source", "type"):
            if not attributes.get(key):
                problems.append((f"{here}/event/with/{key}", "missing: an emitted event has "
                                                             "a source and a type"))
    elif kind == "listen":
        _check_listen(task, value, here, problems)
    elif kind == "run":
        _check_run(value, body, here, problems)


def _check_schema(schema: Any, where: str, problems: list[tuple[str, str]]) -> None:
    """A data schema: JSON Schema, given inline as ``document`` (checked as a schema)."""
    if schema is None:
        return
    if not isinstance(schema, dict) or schema.get("format", "json") != "json" or \
            not isinstance(schema.get("document"), dict):
        problems.append((where, "a schema here is {format: json, document: <a JSON Schema>}"
                                " (schemas by reference, resource, are not read)"))
        return
    try:
        from jsonschema import Draft202012Validator, SchemaError
    except ImportError:  # checked when it runs, with the extra installed
        return
    try:
        Draft202012Validator.check_schema(schema["document"])
    except SchemaError as exc:
        problems.append((f"{where}/document", f"not a valid JSON Schema: {exc.message}"))


CALLS = ("grpc", "http", "openapi")


def _check_call(value: Any, spec: Any, pointer: str, problems: list[tuple[str, str]]) -> None:
    if value not in CALLS:
        problems.append((f"{pointer}/call", f"call {value!r} is not supported by this runtime;"
                                            f" it calls {', '.join(CALLS)}"))
        return
    if not isinstance(spec, dict):
        problems.append((f"{pointer}/with", "missing: the call's arguments"))
        return
    needs = {"http": ("endpoint",), "openapi": ("document", "operationId"),
             "grpc": ("proto", "service", "method")}[value]
    for key in needs:
        if key not in spec:
            problems.append((f"{pointer}/with/{key}", f"missing: a {value} call needs "
                                                      f"{', '.join(needs)}"))
    if value == "http" and "endpoint" in spec and \
            str(spec.get("method", "get")).lower() not in _METHODS:
        problems.append((f"{pointer}/with/method", f"{spec.get('method')!r} is not an "
                                                    "HTTP method"))
    if spec.get("output", "content") not in ("content", "response", "raw"):
        problems.append((f"{pointer}/with/output", "content, response or raw"))


def _check_run(value: Any, body: dict[str, Any], here: str,
               problems: list[tuple[str, str]]) -> None:
    processes = [key for key in ("container", "script", "shell", "workflow")
                 if isinstance(value, dict) and key in value]
    if len(processes) != 1:
        problems.append((here, "a run task runs one of container, script, shell or workflow"))
        return
    which, spec = processes[0], value[processes[0]]
    if which in ("container", "workflow"):
        problems.append((f"{here}/{which}", f"run: {which} is not supported by this runtime: "
                                            "it runs shell commands and python or js scripts "
                                            "(where the runner allows them)"))
    elif not isinstance(spec, dict):
        problems.append((f"{here}/{which}", "must be a mapping"))
    elif which == "shell" and not isinstance(spec.get("command"), str):
        problems.append((f"{here}/shell/command", "missing: the command to run"))
    elif which == "script":
        if spec.get("language") not in ("python", "js", "javascript"):
            problems.append((f"{here}/script/language", f"{spec.get('language')!r}: scripts "
                                                        "are python or js"))
        if "code" not in spec and "source" not in spec:
            problems.append((f"{here}/script", "missing: code, or its source"))
    returned = value.get("return", "stdout") if isinstance(value, dict) else "stdout"
    if returned not in ("stdout", "stderr", "code", "all", "none"):
        problems.append((f"{here}/return", f"{returned!r} is not stdout, stderr, code, all or "
                                           "none"))


def _check_listen(task: Task, value: Any, here: str, problems: list[tuple[str, str]]) -> None:
    to = value.get("to") if isinstance(value, dict) else None
    if not isinstance(to, dict) or not {"all", "any", "one"} & set(to):
        problems.append((f"{here}/to", "missing: the events to wait for (all, any or one)"))
        return
    for key, filters in to.items():
        if key in ("all", "any") and not isinstance(filters, list):
            problems.append((f"{here}/to/{key}", "must be a list of event filters"))
        elif key == "one" and not isinstance(filters, dict):
            problems.append((f"{here}/to/one", "must be an event filter (with)"))
    read = value.get("read", "data")
    if read not in ("data", "envelope", "raw"):
        problems.append((f"{here}/read", f"{read!r} is not data, envelope or raw"))
    foreach = task.body.get("foreach")
    if isinstance(foreach, dict) and "do" in foreach:
        task.lists["foreach"] = _task_list(foreach["do"], f"{task.pointer}/foreach/do",
                                           problems, required=True)


def duration_seconds(value: Any) -> float:
    """Seconds of an ISO 8601 duration (``PT1M30S``) or a DSL duration object (``{minutes:
    1, seconds: 30}``); ``ValueError`` naming what is wrong."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match is None or value.strip() in ("P", "PT"):
            raise ValueError(f"{value!r} is not an ISO 8601 duration such as PT1M30S")
        days, hours, minutes, seconds = (float(part) if part else 0.0
                                         for part in match.groups())
        return days * 86400 + hours * 3600 + minutes * 60 + seconds
    if isinstance(value, dict) and value and set(value) <= set(_UNITS) and all(
            isinstance(amount, int | float) and amount >= 0 for amount in value.values()):
        return float(sum(_UNITS[unit] * amount for unit, amount in value.items()))
    raise ValueError(f"a duration is an ISO 8601 string or a mapping of "
                     f"{', '.join(_UNITS)} to numbers, got {value!r}")
