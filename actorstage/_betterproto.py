"""betterproto2, imported without importing pydantic in every process that uses protobuf.

betterproto2 supports messages that are pydantic dataclasses. For that it
imports pydantic whenever pydantic is installed (it is, beside any FastAPI
app), and on the first message it serializes it imports
``pydantic.dataclasses`` to ask whether that message is one. Together that
is 50-70 ms of a cold child process's start, spent on a question whose answer
is known: no class can be a pydantic dataclass before ``pydantic.dataclasses``
has been imported, since that module makes them.

``load()`` imports betterproto2 with pydantic out of its sight, then gives it
stand-ins that answer that question from ``sys.modules`` and hand everything
else to the real modules, importing them when first used. betterproto2
behaves as before for every message, pydantic or not. It runs when
``actorstage._proto`` is imported, before any generated module imports
betterproto2, and actorstage's own modules import betterproto2 from here. It
does nothing when betterproto2 or pydantic is already imported (it is then
too late, or there is nothing to save), when pydantic is not installed, or
when other threads are running (for the moment betterproto2 is imported,
``import pydantic`` would fail in every thread).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["betterproto2", "load"]


def load() -> None:
    """Import betterproto2 as described above; at most once, and only when it is worth it."""
    if "betterproto2" in sys.modules or "pydantic" in sys.modules:
        return
    if threading.active_count() > 1 or importlib.util.find_spec("pydantic") is None:
        return
    sys.modules["pydantic"] = None  # type: ignore[assignment]  # ("import pydantic" fails)
    try:
        import betterproto2
    finally:
        del sys.modules["pydantic"]
    # (the module's globals, where Message._is_pydantic and _validate look them up)
    vars(betterproto2).update(pydantic=_Pydantic("pydantic"), pydantic_core=_Lazy("pydantic_core"))


class _Lazy(ModuleType):
    """A module imported when one of its attributes is first read."""

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attribute)


class _Dataclasses(_Lazy):
    """``pydantic.dataclasses``, but asking about a class imports nothing."""

    @staticmethod
    def is_pydantic_dataclass(cls: type) -> bool:
        module = sys.modules.get("pydantic.dataclasses")
        return module is not None and bool(module.is_pydantic_dataclass(cls))


class _Pydantic(_Lazy):
    """``pydantic`` for betterproto2: its ``dataclasses`` is the stand-in above."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.dataclasses = _Dataclasses("pydantic.dataclasses")


load()

import betterproto2  # noqa: E402  (our modules import it from here, so after load())
