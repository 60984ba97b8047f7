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


def evaluate(expression: str, data: Any, arguments: dict[str, Any]) -> Any:
    """The first result of ``expression`` (with or without ``${ }``) on ``data``, or ``None``
    when it gives none. ``ExpressionError`` names the expression and what went wrong."""
    text = _inner(expression)
    names = tuple(sorted(name for name in arguments if _NAME.match(name)))
    program = _compiled(text, names)
    try:
        return next(iter(program.input_value({"v": arguments, "d": data})), None)
    except ValueError as exc:
        raise ExpressionError(text, _first_line(exc)) from None
    except TypeError as exc:  # a value jq cannot take (not JSON)
        raise ExpressionError(text, f"the data is not JSON: {exc}") from None


def render(value: Any, data: Any, arguments: dict[str, Any]) -> Any:
    """``value`` with every ``${ }`` string in it (at any depth) replaced by its result."""
    if isinstance(value, str):
        return evaluate(value, data, arguments) if is_expression(value) else value
    if isinstance(value, dict):
        return {key: render(item, data, arguments) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, data, arguments) for item in value]
    return value
