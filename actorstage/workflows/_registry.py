"""Actions and the registry that finds them by id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from actorstage._registry import register_once
from actorstage.exceptions import InvalidDefinitionError

if TYPE_CHECKING:
    from actorstage.workflows._context import ActionContext

__all__ = ["Action", "Registered", "register_action", "registered_actions"]


class Action:
    """One step of a workflow. Subclass it and implement ``execute``.

    Declare a nested ``Params`` msgspec Struct to receive typed, checked
    parameters as ``self.params``; without one, ``self.params`` is the
    definition's ``params`` dict as is::

        @register_action("greet")
        class Greet(Action):
            class Params(msgspec.Struct):
                name: str = "world"

            async def execute(self, ctx: ActionContext) -> None:
                await ctx.store.put("greeting", f"hello {self.params.name}")
    """

    Params: Any = None

    def __init__(self, params: Any = None) -> None:
        self.params = params

    async def execute(self, ctx: ActionContext) -> None:
        raise NotImplementedError(f"{type(self).__qualname__}.execute is not implemented")


@dataclass(frozen=True)
class Registered:
    """What ``register_action`` recorded for one action id."""

    id: str
    factory: Callable[[Any], Action]
    params_type: Any  # a msgspec-convertible type, or None for the raw dict
    module: str  # imported by a child process that runs the action

    def params(self, raw: dict[str, Any]) -> Any:
        """The typed params; ``msgspec.ValidationError`` naming the bad field."""
        if self.params_type is None:
            return raw
        return msgspec.convert(raw, self.params_type, strict=False)



_REGISTRY: dict[str, Registered] = {}

F = TypeVar("F", bound=Callable[..., Any])


def register_action(action_id: str, *, params: Any = None) -> Callable[[F], F]:
    """Register an ``Action`` subclass, or a factory ``(params) -> Action``, under an id.

    A class's ``Params`` attribute gives the params type; for a factory, pass
    ``params=``. Registering a taken id with a different target raises
    ``InvalidDefinitionError``.
    """
    if not isinstance(action_id, str) or not action_id:
        raise InvalidDefinitionError(f"an action id is a non-empty str, got {action_id!r}")

    def decorate(target: F) -> F:
        if isinstance(target, type):
            if not issubclass(target, Action):
                raise InvalidDefinitionError(
                    f"@register_action({action_id!r}): {target.__qualname__} is not an Action "
                    "subclass; subclass actorstage.workflows.Action or register a factory")
            params_type = params if params is not None else target.Params
        elif callable(target):
            params_type = params
        else:
            raise InvalidDefinitionError(
                f"@register_action({action_id!r}) takes a class or a factory, got {target!r}")
        register_once(
            _REGISTRY, action_id, Registered(action_id, target, params_type, target.__module__),
            what="action id", where=lambda entry: f"{entry.module}.{_qualname(entry.factory)}")
        return target

    return decorate


def _qualname(target: Any) -> str:
    return str(getattr(target, "__qualname__", repr(target)))


def registered_actions() -> dict[str, Registered]:
    """A copy of the registry: action id to what was registered."""
    return dict(_REGISTRY)


def lookup(action_id: str) -> Registered | None:
    return _REGISTRY.get(action_id)
