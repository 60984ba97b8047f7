"""Importing the user's modules (the ones that register actions and node types), one way."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

from actorstage.exceptions import InvalidDefinitionError

__all__ = ["import_modules"]


def import_modules(modules: Iterable[str], paths: Iterable[str] = (),
                   what: str = "") -> None:
    """Put ``paths`` first on ``sys.path``, then import ``modules``.

    Raises ``InvalidDefinitionError`` naming the module and what went wrong.
    """
    for path in reversed(list(paths)):
        if path not in sys.path:
            sys.path.insert(0, path)
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise InvalidDefinitionError(
                f"cannot import {what + ' ' if what else ''}{module!r}: "
                f"{type(exc).__name__}: {exc}") from exc
