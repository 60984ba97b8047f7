"""Registries by name (workflow actions, pipeline node types): one target per name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from actorstage.exceptions import InvalidDefinitionError

__all__ = ["register_once"]

E = TypeVar("E")


def register_once(registry: dict[str, E], key: str, entry: E, *, what: str,
                  where: Callable[[E], str]) -> None:
    """Put ``entry`` under ``key``. Registering the same target again (the same
    ``where(entry)``: its module and qualified name, as when a module is imported twice) is
    allowed; another target under a taken key raises ``InvalidDefinitionError`` naming the
    first one."""
    known = registry.get(key)
    if known is not None and where(known) != where(entry):
        raise InvalidDefinitionError(f"{what} {key!r} is already registered for {where(known)}")
    registry[key] = entry
