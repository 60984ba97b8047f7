"""Items between processes: a MessagePack body, and large binary parts in shared memory.

An item crosses a process boundary as a ``WireItem``: the ``module:QualName``
of its Struct type (``""`` for a plain value), its MessagePack body, and the
shared-memory segments holding its large binary parts. Those are the item
itself when it is ``bytes``, ``bytearray`` or a ``memoryview`` of at least
the threshold, or such values in the fields of a Struct item; the body then
carries an empty ``bytes`` in their place. On arrival each part is a
read-only ``memoryview`` of the mapped segment: the node reads the bytes
where the sender wrote them. A view of a segment that a node passes on
unchanged travels on under the same segment, without a copy.

A batch of items whose every item is a scalar (``int``, ``float``, ``str``,
``bool``, ``None``) travels as the plain values themselves, in one list,
with no ``WireItem`` each: that is most small-item streams, and it spares
every process on the way a decode and an encode per item (``WireBatch``).
"""

from __future__ import annotations

from types import CoroutineType
from typing import Any

import msgspec

from actorstage._shm import SegmentReader, SegmentWriter, read_segment
from actorstage.transport._codec import CODEC

__all__ = ["SCALARS", "ItemCodec", "Origins", "Traced", "WireBatch", "WireItem", "to_bytes"]

_BINARY = (bytes, bytearray, memoryview)
_EMPTY_BIN = msgspec.Raw(msgspec.msgpack.encode(b""))
SCALARS = frozenset({int, float, str, bool, type(None)})  # no type name, never shared
_ENCODE = msgspec.msgpack.Encoder().encode


class WireItem(msgspec.Struct, array_like=True, frozen=True):
    """One item in transit: type, body, and ``(field, segment, size)`` per shared part."""

    type: str
    body: msgspec.Raw
    shm: tuple[tuple[str, str, int], ...] = ()

    def segment_names(self) -> tuple[str, ...]:
        return tuple(name for _field, name, _size in self.shm)

    def size(self) -> int:
        return len(self.body) + sum(size for _field, _name, size in self.shm)


def to_bytes(item: Any) -> Any:
    """``item`` with views of shared memory copied into ``bytes``: what leaves a pipeline.

    Looks into Struct fields and into lists, tuples and dict values.
    """
    kind = type(item)
    if kind in SCALARS or kind is bytes:
        return item
    if kind is memoryview:
        return item.tobytes()
    if kind is list or kind is tuple:
        return kind(to_bytes(value) for value in item)
    if kind is dict:
        return {key: to_bytes(value) for key, value in item.items()}
    if isinstance(item, msgspec.Struct):
        views = {name: to_bytes(value) for name in item.__struct_fields__
                 if isinstance(value := getattr(item, name), memoryview | list | dict)}
        if views:
            return msgspec.structs.replace(item, **views)
    return item


class ItemCodec:
    """Encodes items for another process, and decodes what arrives (mapping its segments)."""

    __slots__ = ("forward", "reader", "threshold", "writer")

    def __init__(self, threshold: int, writer: SegmentWriter, reader: SegmentReader, *,
                 forward: bool = True) -> None:
        self.threshold = threshold
        self.writer = writer
        self.reader = reader
        self.forward = forward  # pass views of in-use segments on by name (node processes)

    def _segment(self, value: Any) -> tuple[str, int]:
        if self.forward:
            owned = self.reader.owner(value)
            if owned is not None:
                return owned  # a view of a segment still in use: it travels on as it is
        return self.writer.write(value)

    def encode(self, item: Any) -> WireItem:
        """The ``WireItem`` of ``item``; ``TypeError`` when it cannot be encoded."""
        if type(item) in SCALARS:
            return WireItem("", msgspec.Raw(_ENCODE(item)))
        threshold = self.threshold
        if isinstance(item, _BINARY):
            if len(item) >= threshold:
                name, size = self._segment(item)
                return WireItem("", _EMPTY_BIN, (("", name, size),))
        elif isinstance(item, msgspec.Struct):
            large = [name for name in item.__struct_fields__
                     if isinstance(value := getattr(item, name), _BINARY)
                     and len(value) >= threshold]
            if large:
                shm = tuple((name, *self._segment(getattr(item, name))) for name in large)
                item = msgspec.structs.replace(item, **dict.fromkeys(large, b""))
                kind, body = CODEC.encode(item)
                return WireItem(kind, msgspec.Raw(body), shm)
        kind, body = CODEC.encode(item)
        return WireItem(kind, msgspec.Raw(body))

    def decode(self, wire: WireItem) -> Any:
        """The item; its shared parts are mapped until ``release(wire)``."""
        shm = wire.shm
        if not shm:
            return CODEC.decode(wire.type, wire.body)
        views: dict[str, memoryview] = {}
        try:
            for field, name, size in shm:
                views[field] = self.reader.open(name, size)
        except BaseException:
            for _field, name, _size in shm[:len(views)]:
                self.reader.release(name)
            raise
        whole = views.pop("", None)
        if whole is not None:
            return whole
        item = CODEC.decode(wire.type, wire.body)
        return msgspec.structs.replace(item, **views)

    def copy_out(self, wire: WireItem) -> Any:
        """The item with its shared parts read into ``bytes`` (not mapped): what leaves
        the pipeline, as ``to_bytes(decode(wire))`` would give it, for less."""
        parts = {field: read_segment(name, size) for field, name, size in wire.shm}
        whole = parts.pop("", None)
        if whole is not None:
            return whole
        item = CODEC.decode(wire.type, wire.body)
        return msgspec.structs.replace(item, **parts) if parts else item

    def release(self, wire: WireItem) -> None:
        for _field, name, _size in wire.shm:
            self.reader.release(name)


def _plain_wire(value: Any) -> WireItem:
    return WireItem("", msgspec.Raw(_ENCODE(value)))


class WireBatch:
    """Items for another process, in the order added: plain ``values`` while every item is
    a scalar, ``WireItem``s (``wires``) from the first one that is not."""

    __slots__ = ("encode", "values", "wires")

    def __init__(self, encode: Any) -> None:
        self.encode = encode  # ItemCodec.encode, or another that makes a WireItem
        self.values: list[Any] = []
        self.wires: list[WireItem] | None = None

    def __len__(self) -> int:
        return len(self.values) if self.wires is None else len(self.wires)

    def add(self, item: Any, wire: WireItem | None = None) -> WireItem | None:
        """Add ``item`` (its ``wire`` when it came as one); the WireItem made or passed on,
        ``None`` while it went in as a plain value. May raise as ``encode`` does."""
        wires = self.wires
        if wires is None:
            if type(item) in SCALARS:
                self.values.append(item)
                return None
            wires = self.wires = [_plain_wire(value) for value in self.values]
            self.values = []
        if wire is None:
            wire = self.encode(item)
        wires.append(wire)
        return wire

    def add_plain(self, items: list[Any]) -> bool:
        """Add ``items`` at once if every one is a scalar (checked in one pass: small items,
        the usual case), into a batch that is still empty; whether it did."""
        if self.values or self.wires is not None or \
                not all(type(item) in SCALARS for item in items):
            return False
        self.values = list(items)
        return True

    def parts(self) -> tuple[list[WireItem], list[Any]]:
        """``(wires, values)`` for a message: one of them empty."""
        return ([], self.values) if self.wires is None else (self.wires, [])


class Traced(msgspec.Struct, frozen=True, array_like=True):
    """An item and its origin: the tag of the input it came from, in a session that
    follows origins (``Pipeline.session(..., origins=True)``). Nodes never see it: the
    session takes the item out before ``process`` and wraps what it gives."""

    origin: Any
    item: Any


class Origins:
    """A node's ``process`` and ``flush`` as the session calls them when it follows
    origins: each result is ``Traced`` with the origin of the item that led to it (what
    ``flush`` gives: the origin of the last item the node had)."""

    __slots__ = ("flush_of", "last", "process_of")

    def __init__(self, node: Any) -> None:
        self.process_of = node.process
        self.flush_of = node.flush
        self.last: Any = None

    async def process(self, item: Any) -> Any:
        origin = None
        if type(item) is Traced:
            origin, item = item.origin, item.item
        self.last = origin
        return _traced(await _result(self.process_of(item)), origin)

    async def flush(self) -> Any:
        return _traced(await _result(self.flush_of()), self.last)


async def _result(call: Any) -> Any:
    return await call if call.__class__ is CoroutineType else call


def _traced(result: Any, origin: Any) -> Any:
    if result is None:
        return None
    if hasattr(result, "__anext__"):
        return _traced_each(result, origin)
    return Traced(origin, result)


async def _traced_each(results: Any, origin: Any) -> Any:
    async for value in results:
        yield Traced(origin, value)
