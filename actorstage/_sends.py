"""The send methods of the ref classes, as what is switched on wraps them.

Tracing wraps ``tell``, ``tell_nowait`` and ``ask`` (a message goes in a
``Traced`` envelope); metrics wrap ``ask`` (its duration is recorded). Each
ref class's own methods are kept here, and every switch rebuilds the methods
from them with the layers that are on, always in the same order (tracing
inside, metrics outside), so either can be switched on and off in any order
without losing or keeping the other's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["register", "switch"]

NAMES = ("tell", "tell_nowait", "ask")
ORDER = ("tracing", "metrics")  # innermost first

# A layer: (method name, the method so far) -> the wrapped method, or None to leave it.
Layer = Callable[[str, Callable[..., Any]], Callable[..., Any] | None]

_CLASSES: list[type] = []
_OWN: dict[tuple[type, str], Callable[..., Any]] = {}  # each class's own send methods
_LAYERS: dict[str, Layer] = {}


def register(cls: type) -> type:
    """A ref class whose sends the layers that are on wrap (a class decorator)."""
    if cls not in _CLASSES:
        _CLASSES.append(cls)
        for name in NAMES:
            own = cls.__dict__.get(name)
            if own is not None:
                _OWN[(cls, name)] = own
        _rebuild(cls)
    return cls


def switch(name: str, layer: Layer | None) -> None:
    """Turn the layer ``name`` on (``layer``) or off (``None``) for every ref class."""
    if layer is None:
        if _LAYERS.pop(name, None) is None:
            return
    else:
        _LAYERS[name] = layer
    for cls in _CLASSES:
        _rebuild(cls)


def _rebuild(cls: type) -> None:
    for name in NAMES:
        method = _OWN.get((cls, name))
        if method is None:
            continue
        for layer_name in ORDER:
            layer = _LAYERS.get(layer_name)
            if layer is not None:
                method = layer(name, method) or method
        setattr(cls, name, method)
