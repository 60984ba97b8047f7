"""The built-in actions, registered with ``actorstage.workflows``: a workflow runs with no code.

``log`` writes a message, ``sleep`` waits (honouring pause and cancel),
``store.set`` puts a value in the store, ``fail`` fails on purpose.
"""

from typing import Annotated, Any, Literal

import msgspec

from actorstage.workflows._context import ActionContext
from actorstage.workflows._registry import Action, register_action

__all__ = ["Fail", "Log", "Sleep", "StoreSet"]


@register_action("log")
class Log(Action):
    """Write ``message`` to the execution's log (Python logging and a ``log`` event)."""

    class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        message: str
        level: Literal["debug", "info", "warning", "error"] = "info"

    params: Params

    async def execute(self, ctx: ActionContext) -> None:
        await getattr(ctx.log, self.params.level)(self.params.message)


@register_action("sleep")
class Sleep(Action):
    """Wait ``seconds`` of running time: a pause holds the wait, a cancel ends it."""

    class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)]

    params: Params

    async def execute(self, ctx: ActionContext) -> None:
        await ctx.sleep(self.params.seconds)


@register_action("store.set")
class StoreSet(Action):
    """Put ``value`` (any JSON value) in the store under ``key``."""

    class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        key: Annotated[str, msgspec.Meta(min_length=1)]
        value: Any = None

    params: Params

    async def execute(self, ctx: ActionContext) -> None:
        await ctx.store.put(self.params.key, self.params.value)


class ActionFailed(Exception):
    """What the ``fail`` action raises."""


@register_action("fail")
class Fail(Action):
    """Fail with ``message``: for testing error paths, retries and alerts."""

    class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        message: str = "failed on purpose"

    params: Params

    async def execute(self, ctx: ActionContext) -> None:
        raise ActionFailed(self.params.message)
