"""``actorstage.run``: the entry point that picks the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def _loop_factory(use_uvloop: bool | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if use_uvloop is False:
        return None
    try:
        import uvloop
    except ImportError:
        if use_uvloop:
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(
    main: Callable[..., Coroutine[Any, Any, T]], *args: Any, use_uvloop: bool | None = None
) -> T:
    """Run ``main(*args)`` to completion on a new event loop and return its result.

    The loop is uvloop's when uvloop is installed (``use_uvloop=None``), or
    as ``use_uvloop`` says. Only this entry point chooses a loop: the library
    itself works inside any running asyncio loop and never sets a policy.
    """
    with asyncio.Runner(loop_factory=_loop_factory(use_uvloop)) as runner:
        return runner.run(main(*args))
