"""Python nodes written for RemoteMedia, run as actorstage nodes unchanged.

RemoteMedia's Python nodes are classes constructed from one config dict
(``node_id``, ``node_type``, ``params``, ``session_id``) with ``async
initialize()``, ``process(data)`` (a coroutine giving one output or
``None``, or an async generator of outputs) and ``async cleanup()``.
``register_remotemedia_node`` registers such a class under a node type: the
adapter builds it in ``setup`` and calls it as a node. Items are
actorstage's (see the compatibility guide for what each ``DataBuffer`` kind
becomes).
"""

from __future__ import annotations

import inspect
from typing import Any

from actorstage.exceptions import InvalidDefinitionError
from actorstage.pipelines._registry import Node, register_node

__all__ = ["register_remotemedia_node"]


class RemoteMediaAdapter(Node):
    """The node of a class in RemoteMedia's shape; ``wrapped`` is that class."""

    wrapped: Any = None
    node_type: str = ""

    async def setup(self) -> None:
        config = {"node_id": self.id, "node_type": self.node_type,
                  "params": dict(self.params or {}), "session_id": None}
        self.inner = self.wrapped(config)
        await self.inner.initialize()

    async def process(self, item: Any) -> Any:
        result = self.inner.process(item)
        if inspect.isawaitable(result):
            result = await result
        return result  # an item, None, or an async generator of items

    async def teardown(self) -> None:
        inner = getattr(self, "inner", None)
        if inner is not None:
            await inner.cleanup()


def register_remotemedia_node(name: str, cls: type, *, executor: str = "process") -> type[Node]:
    """Register ``cls``, a node class in RemoteMedia's shape, as node type ``name``.

    Call it at module level of the module that defines ``cls`` (a node process
    imports that module to find the type). ``executor``: where nodes of the type run
    when a RemoteMedia manifest places them (RemoteMedia runs Python nodes in
    processes of their own). Returns the adapter class.
    """
    for method in ("initialize", "process", "cleanup"):
        if not callable(getattr(cls, method, None)):
            raise InvalidDefinitionError(
                f"register_remotemedia_node({name!r}): {cls.__qualname__} has no "
                f"`{method}`; a RemoteMedia node has async initialize, process and cleanup")
    if executor not in ("native", "process"):
        raise InvalidDefinitionError(f"executor is 'native' or 'process', got {executor!r}")
    adapter = type(f"{cls.__name__}Adapter", (RemoteMediaAdapter,), {
        "wrapped": cls, "node_type": name, "executor": executor,
        "__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}Adapter",
        "__doc__": f"{cls.__qualname__} (a RemoteMedia node) as an actorstage node."})
    return register_node(name)(adapter)
