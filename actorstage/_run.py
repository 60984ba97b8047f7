"""``actorstage.run``: the entry point that picks the event loop."""

from __future__ import annotations

import asyncio
import inspect
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
    if inspect.iscoroutine(main):
        main.close()  # (no "was never awaited" warning on top of the error)
        raise TypeError("actorstage.run() takes the async function, not a coroutine: "
                        "write run(main), not run(main())")
    if not callable(main):
        raise TypeError(f"actorstage.run() takes an async function, got {main!r}")
    importing = importing_main()
    if importing is not None:
        raise RuntimeError(
            f"actorstage.run() was called while a child process was importing {importing}. "
            "A child process runs your script's top level to find the actors defined in it, "
            "so the code that starts your program must be guarded:\n\n"
            "    if __name__ == \"__main__\":\n"
            "        actorstage.run(main)\n")
    with asyncio.Runner(loop_factory=_loop_factory(use_uvloop)) as runner:
        return runner.run(main(*args))


def importing_main() -> str | None:
    """The script a child process is importing right now, if any (see ``load_main``)."""
    from actorstage.transport._child import IMPORTING_MAIN

    return IMPORTING_MAIN[0] if IMPORTING_MAIN else None
