"""Untrusted JSON and YAML documents (workflows, manifests, stores), read within bounds.

Every definition that may come from someone else goes through ``load``
first: its size, its encoding (UTF-8), its nesting depth and, for YAML, its
aliases (a "billion laughs" document expands a few hundred bytes into
billions of nodes) and the time spent reading it are bounded, and anything
past a bound is refused with ``DocumentError`` naming the bound, before the
document is built. ``check_json`` applies the same bounds to JSON that a
typed msgspec decoder will read.

The limits are module settings (``LIMITS``), documented in docs/errors.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from actorstage.exceptions import InvalidDefinitionError

__all__ = ["LIMITS", "DocumentError", "Limits", "check_json", "load", "off_loop", "text_of"]

T = TypeVar("T")

_INLINE_BYTES = 16 * 1024  # smaller documents are read on the event loop: well under 1 ms


@dataclass(frozen=True)
class Limits:
    """Bounds on one untrusted document."""

    max_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64  # nested lists and mappings
    max_aliases: int = 1000  # YAML alias uses (``*name``)
    max_nodes: int = 1_000_000  # YAML nodes, with every alias expanded
    max_seconds: float = 2.0  # reading one YAML document


LIMITS = Limits()


class DocumentError(InvalidDefinitionError):
    """A document past a bound, or not text: the message names which."""


def text_of(data: bytes | str, what: str, limits: Limits = LIMITS) -> str:
    """``data`` as text, if it is within the size bound and valid UTF-8."""
    size = len(data)
    if size > limits.max_bytes:
        raise DocumentError(f"{what} is {size} bytes, more than the limit of "
                            f"{limits.max_bytes} bytes")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"{what} is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"({exc.reason})") from None


# A JSON string, or one bracket outside strings.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def check_json(text: str, what: str, limits: Limits = LIMITS) -> None:
    """Refuse JSON text nested deeper than the bound (strings are skipped, not parsed)."""
    if text.count("[") + text.count("{") <= limits.max_depth:
        return  # cannot be too deep: the common case costs two counts
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limits.max_depth:
                raise DocumentError(
                    f"{what} nests lists and objects more than {limits.max_depth} deep "
                    f"(at offset {match.start()})")
        elif token in ("]", "}"):
            depth -= 1


def load(data: bytes | str, format: str, what: str, limits: Limits = LIMITS) -> Any:
    """The value of a JSON or YAML document, within ``limits``; ``DocumentError`` if not.

    Syntax errors are ``DocumentError`` too, naming the format and the place.
    """
    text = text_of(data, what, limits)
    if format == "json":
        import msgspec

        check_json(text, what, limits)
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise DocumentError(f"{what} is not valid JSON: {exc}") from None
    if format == "yaml":
        return _load_yaml(text, what, limits)
    raise ValueError(f"format is 'json' or 'yaml', not {format!r}")


def _load_yaml(text: str, what: str, limits: Limits) -> Any:
    import yaml

    loader = None
    try:
        loader = _bounded_loader()(text)
        loader.limits, loader.what = limits, what
        loader.deadline = time.monotonic() + limits.max_seconds
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_size(node, {}, limits)
        if expanded > limits.max_nodes:
            raise DocumentError(f"{what} expands to {expanded} YAML nodes through its aliases, "
                                f"more than the limit of {limits.max_nodes}")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise DocumentError(f"{what} is not valid YAML: {exc}") from None
    except RecursionError:  # (the depth bound comes first; this is the last line)
        raise DocumentError(f"{what} nests too deep to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(node: Any, sizes: dict[int, int], limits: Limits) -> int:
    """Nodes under ``node`` counting each alias use in full, without building anything."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    total = 1
    value = node.value
    if isinstance(value, list):
        for item in value:
            if isinstance(item, tuple):  # a mapping's (key, value)
                total += _expanded_size(item[0], sizes, limits)
                total += _expanded_size(item[1], sizes, limits)
            else:
                total += _expanded_size(item, sizes, limits)
            if total > limits.max_nodes:
                break
    sizes[id(node)] = total
    return total


_LOADER: Any = None


def _bounded_loader() -> Any:
    """PyYAML's pure-Python safe loader, counting depth, aliases and time as it composes.

    (libyaml's loader composes in C, out of reach of these checks.)
    """
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml
    from yaml.events import AliasEvent

    class BoundedLoader(yaml.SafeLoader):
        limits: Limits
        what: str
        deadline: float
        depth = 0
        aliases = 0

        def fetch_more_tokens(self) -> None:
            if time.monotonic() > self.deadline:
                raise DocumentError(f"{self.what} took more than {self.limits.max_seconds:g}s "
                                    "to read")
            if self.flow_level > self.limits.max_depth:
                raise DocumentError(f"{self.what} nests lists and mappings more than "
                                    f"{self.limits.max_depth} deep")
            super().fetch_more_tokens()

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(AliasEvent):
                self.aliases += 1
                if self.aliases > self.limits.max_aliases:
                    raise DocumentError(f"{self.what} uses more than "
                                        f"{self.limits.max_aliases} YAML aliases")
            self.depth += 1
            if self.depth > self.limits.max_depth:
                raise DocumentError(f"{self.what} nests lists and mappings more than "
                                    f"{self.limits.max_depth} deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_yaml_str(self, node: Any) -> str:
            value: str = super().construct_yaml_str(node)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a "\ud800" escape: no character of its own
                raise DocumentError(
                    f"{self.what} holds a string that is not valid Unicode (a lone "
                    f"surrogate){node.start_mark}") from None
            return value

    BoundedLoader.add_constructor("tag:yaml.org,2002:str", BoundedLoader.construct_yaml_str)
    _LOADER = BoundedLoader
    return _LOADER


async def off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, in a worker thread when it reads a document of more than 16 KiB.

    A server reads a large untrusted document there, so that its event loop
    goes on serving other clients meanwhile (the reading has its own bounds).
    """
    if size <= _INLINE_BYTES:
        return fn(*args)
    import anyio.to_thread

    return await anyio.to_thread.run_sync(fn, *args)
