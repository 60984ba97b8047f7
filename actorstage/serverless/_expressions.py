"""Runtime expressions of the Serverless Workflow DSL: jq, ``${ ... }``, and the arguments
(``$context``, ``$input``, ``$output``, ``$secrets``, ``$task``, ``$workflow``, ``$runtime``,
and a ``for`` loop's item and index).

A field the DSL types as a runtime expression (``input.from``, ``output.as``,
``if``, ``when``, ``for.in``, ``while``...) is evaluated whether or not it is
wrapped in ``${ }``; any other string is an expression only when wrapped
(``set`` values, ``raise`` error fields...). Compiled programs are cached by
text and argument names.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec

__all__ = ["ExpressionError", "evaluate", "is_expression", "render"]

MAX_EXPRESSION = 64 * 1024  # characters of one expression


class ExpressionError(Exception):
    """An expression that does not compile, or fails on its data; names the expression."""

    def __init__(self, expression: str, problem: str) -> None:
        super().__init__(f"expression {expression!r}: {problem}")
        self.expression = expression
        self.problem = problem


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith("${") and \
        value.strip().endswith("}")


def _inner(text: str) -> str:
    stripped = text.strip()
    return stripped[2:-1].strip() if is_expression(stripped) else stripped


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@functools.lru_cache(maxsize=1024)
def _compiled(text: str, names: tuple[str, ...]) -> Any:
    """``text`` compiled once per set of argument names: the arguments come in with the
    data (``{"v": arguments, "d": data}``) and are bound as ``$name`` before it runs."""
    import jq

    if len(text) > MAX_EXPRESSION:
        raise ExpressionError(text[:80] + "...", f"longer than {MAX_EXPRESSION} characters")
    bound = "".join(f".v.{name} as ${name} | " for name in names)
    try:
        return jq.compile(f"{bound}.d | ({text})")
    except ValueError as exc:
        raise ExpressionError(text, f"does not compile: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


_ARGUMENT = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_encode = msgspec.json.Encoder(enc_hook=str).encode


@functools.lru_cache(maxsize=4096)
def _referenced(text: str) -> frozenset[str]:
    """The ``$names`` an expression mentions: only those go in with its data."""
    return frozenset(_ARGUMENT.findall(text))


# A plain path (``.``, ``.a.b``, ``$name``, ``$name.a``), the most common expression: read
# here, as jq reads it, without handing the data to jq (whose JSON parser is slow).
_PATH = re.compile(r"^(?:\.|(\$[A-Za-z_][A-Za-z0-9_]*)|(?=\.[A-Za-z_]))"
                   r"((?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")
_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}


@functools.lru_cache(maxsize=4096)
def _path(text: str) -> tuple[str | None, tuple[str, ...]] | None:
    """``(argument or None, keys)`` of a plain path; ``None`` for any other expression."""
    match = _PATH.match(text)
    if match is None:
        return None
    keys = tuple(key for key in match.group(2).split(".") if key)
    return (match.group(1)[1:] if match.group(1) else None), keys


def _walk(text: str, value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if value is None:
            return None
        if not isinstance(value, dict):
            kind = _TYPES.get(type(value), type(value).__name__)
            raise ExpressionError(text, f"Cannot index {kind} with string (\"{key}\")")
        value = value.get(key)
    return value


def evaluate(expression: str, data: Any, arguments: dict[str, Any]) -> Any:
    """The first result of ``expression`` (with or without ``${ }``) on ``data``, or ``None``
    when it gives none. ``ExpressionError`` names the expression and what went wrong.

    A plain path is read here; any other expression runs in jq, which gets the data and
    only the arguments the expression mentions (as JSON made by msgspec): ``$workflow``
    and the rest cost nothing where they are not used.
    """
    text = _inner(expression)
    path = _path(text)
    if path is not None:
        name, keys = path
        if name is None:
            return _walk(text, data, keys)
        if name in arguments:
            return _walk(text, arguments[name], keys)
    referenced = _referenced(text)
    names = tuple(sorted(name for name in arguments if name in referenced))
    program = _compiled(text, names)
    try:
        document = _encode({"v": {name: arguments[name] for name in names}, "d": data})
    except (TypeError, ValueError) as exc:  # a value that is not JSON
        raise ExpressionError(text, f"the data is not JSON: {exc}") from None
    try:
        return next(iter(program.input_text(document.decode())), None)
    except ValueError as exc:
        raise ExpressionError(text, _first_line(exc)) from None


def render(value: Any, data: Any, arguments: dict[str, Any]) -> Any:
    """``value`` with every ``${ }`` string in it (at any depth) replaced by its result."""
    if isinstance(value, str):
        return evaluate(value, data, arguments) if is_expression(value) else value
    if isinstance(value, dict):
        return {key: render(item, data, arguments) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, data, arguments) for item in value]
    return value
