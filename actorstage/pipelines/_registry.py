"""Node types, and the registry that finds them by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import msgspec

from actorstage._imports import import_modules
from actorstage._registry import register_once
from actorstage.exceptions import InvalidDefinitionError

__all__ = ["Node", "RegisteredNode", "import_node_modules", "register_node", "registered_nodes"]


class Node:
    """One stage of a pipeline. Subclass it, implement ``process`` and register it.

    Declare a nested ``Params`` msgspec Struct to receive typed, checked
    parameters as ``self.params`` (without one, ``self.params`` is the
    manifest's ``params`` dict)::

        @register_node("Upper")
        class Upper(Node):
            class Params(msgspec.Struct):
                suffix: str = ""

            async def process(self, item: str) -> str:
                return item.upper() + self.params.suffix

    ``process`` returns the item to pass on, ``None`` to pass nothing on, or
    an async iterator (an ``async def`` with ``yield``) of any number of
    items. Every item goes to every connection leaving the node, in order.
    One instance handles all of a session's items, one at a time.
    """

    Params: Any = None
    # Where nodes of this type run when they come in a RemoteMedia manifest, which names
    # no executor (its server places nodes by type): "native" or "process".
    executor: ClassVar[str] = "native"
    # Other spellings of params keys, such as RemoteMedia's camelCase ones: {"chunkSize":
    # "chunk_size"}; a key given both ways is a problem.
    aliases: ClassVar[dict[str, str]] = {}

    def __init__(self, params: Any, node_id: str) -> None:
        self.params = params
        self.id = node_id

    async def setup(self) -> None:
        """Called once before the first item; must finish within ``init_timeout_secs``."""

    def process(self, item: Any) -> Any:
        """Handle one item (define it ``async``): return an item, ``None``, or an async
        iterator of items; or ``yield`` the items (an async generator)."""
        raise NotImplementedError(f"{type(self).__qualname__}.process is not implemented")

    def flush(self) -> Any:
        """Called once when the node's inputs have ended, before ``teardown``.

        Like ``process`` (an ``async def`` returning an item, ``None`` or an
        async iterator, or an async generator): what to pass on last, such as
        a detector's open segment or what a collector gathered.
        """
        return _nothing()

    async def teardown(self) -> None:
        """Called once when the session ends, also after a failure or a cancel."""


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class RegisteredNode:
    """What ``register_node`` recorded for one node type."""

    name: str
    cls: type[Node]
    module: str  # imported by a node process to find the type

    def params(self, raw: dict[str, Any]) -> Any:
        """The typed params; ``msgspec.ValidationError`` naming the bad field."""
        aliases = self.cls.aliases
        if aliases and isinstance(raw, dict) and any(key in aliases for key in raw):
            spelled = {}
            for key, value in raw.items():
                name = aliases.get(key, key)
                if name in spelled:
                    raise msgspec.ValidationError(
                        f"`{name}` is given twice (once as `{key}`) - at `$.{key}`")
                spelled[name] = value
            raw = spelled
        if self.cls.Params is None:
            return raw
        return msgspec.convert(raw, self.cls.Params, strict=False)


_REGISTRY: dict[str, RegisteredNode] = {}

N = TypeVar("N", bound=type[Node])


def register_node(name: str) -> Callable[[N], N]:
    """Register a ``Node`` subclass under ``name``, the manifest's ``node_type``.

    Registering a taken name for a different class raises ``InvalidDefinitionError``.
    """
    if not isinstance(name, str) or not name:
        raise InvalidDefinitionError(f"a node type name is a non-empty str, got {name!r}")

    def decorate(cls: N) -> N:
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise InvalidDefinitionError(
                f"@register_node({name!r}) takes a subclass of actorstage.pipelines.Node, "
                f"got {cls!r}")
        if cls.process is Node.process:
            raise InvalidDefinitionError(
                f"@register_node({name!r}): {cls.__qualname__} does not define "
                "`async def process(self, item)`")
        if "<locals>" in cls.__qualname__:
            raise InvalidDefinitionError(
                f"@register_node({name!r}): {cls.__qualname__} is defined inside a function; "
                "a node process finds node types by module, so define it at module level")
        register_once(_REGISTRY, name, RegisteredNode(name, cls, _module_of(cls)),
                      what="node type",
                      where=lambda entry: f"{entry.module}.{entry.cls.__qualname__}")
        return cls

    return decorate


async def each(items: Iterable[Any]) -> Any:
    """``items`` as the async iterator a node's ``process`` or ``flush`` may give."""
    for item in items:
        yield item


def _module_of(cls: type) -> str:
    module = cls.__module__
    return "__main__" if module in ("__mp_main__", "__actorstage_main__") else module


def registered_nodes() -> dict[str, RegisteredNode]:
    """A copy of the registry: node type name to what was registered."""
    return dict(_REGISTRY)


def lookup(name: str) -> RegisteredNode | None:
    return _REGISTRY.get(name)


def import_node_modules(modules: Iterable[str], paths: Iterable[str] = ()) -> None:
    """Put ``paths`` on ``sys.path`` (first), then import ``modules``; errors name the module."""
    import_modules(modules, paths, what="node module")
