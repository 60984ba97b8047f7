"""What crosses the bridge: message bodies (msgspec) and frames (protobuf).

A user message travels as ``(type, body)``: ``type`` names a msgspec Struct
class as ``module:QualName`` (``""`` for any other value) and ``body`` is its
MessagePack encoding. Values keep their type: what MessagePack has no type
for (a tuple, a set, a datetime, an Enum member, a dataclass, a Struct inside
a list...) travels as a MessagePack extension naming it. Decoding resolves
names to classes, checks that each is a msgspec Struct (or, inside an
extension, an Enum or a dataclass), and decodes with one cached typed
decoder: no pickle, nothing on the wire runs code but those classes' own
validation.

Frames are protobuf (``actorstage/protos/actorstage_proto/v1/bridge.proto``). Protobuf is paid
per frame, not per message: user messages, replies, credits and cancels go
in the frame's ``packed`` field, one MessagePack array for the whole batch.
Frames are read by hand (two length-delimited fields), their envelopes
through the generated classes.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import importlib
import sys
import uuid
from typing import Any

import msgspec
from grpclib.encoding.base import CodecBase

from actorstage._proto.actorstage.bridge.v1 import Envelope, Frame
from actorstage._telemetry import STATE as TRACING
from actorstage._telemetry import TRACED_TYPE, Traced, extract, inject
from actorstage.actors._ref import ActorRef
from actorstage.transport._payloads import ARENA, THRESHOLD

__all__ = [
    "ASK",
    "CANCEL",
    "CODEC",
    "CREDIT",
    "ERROR",
    "REPLY",
    "ROUTE_ASK",
    "ROUTE_CREDIT",
    "ROUTE_TELL",
    "TELL",
    "BodyCodec",
    "FrameError",
    "RawCodec",
    "RemoteErrorBody",
    "decode_frame",
    "encode_frame",
    "type_name",
]

# Kinds of packed entries: [kind, id, type, body, timeout]. A routed entry (a message to
# an actor further on, see ``_routing``) has the target's path for ``type`` and
# ``[type, body]`` for ``body``. CREDIT and ROUTE_CREDIT carry a count for ``id``.
TELL, ASK, REPLY, ERROR, CREDIT, CANCEL, ROUTE_TELL, ROUTE_ASK, ROUTE_CREDIT = range(9)

Entry = tuple[int, int, str, Any, float]

_MAIN_ALIASES = {"__mp_main__": "__main__", "__actorstage_main__": "__main__"}


class FrameError(Exception):
    """A frame could not be read; the text says why."""


class RemoteErrorBody(msgspec.Struct, array_like=True):
    """An exception raised on the other side, as text."""

    path: str
    type_name: str
    message: str
    traceback: str = ""
    during: str = ""


def type_name(cls: type) -> str:
    """``module:QualName`` of ``cls``, as the other process will look it up."""
    module = cls.__module__
    return f"{_MAIN_ALIASES.get(module, module)}:{cls.__qualname__}"


_SCALARS = (int, str, float, bool, type(None), bytes)

# MessagePack extension codes: the values msgspec would carry as another type.
(_TUPLE, _SET, _FROZENSET, _DATETIME, _DATE, _TIME, _TIMEDELTA, _UUID, _DECIMAL, _ENUM,
 _BYTEARRAY, _DATACLASS, _STRUCT, _TAGGED_STRUCT, _PAIRS, _REF, _SHARED, _NDARRAY) = range(1, 19)
# What a _SHARED payload (in shared memory, see _payloads) turns back into.
_AS_BYTES, _AS_BYTEARRAY, _AS_NDARRAY = range(3)
_BUFFERS = (bytes, bytearray, memoryview)


def _lossy(cls: type) -> bool:
    """Whether a Struct class has a field (at any depth) typed ``Any``, so that msgspec
    would hand back plain types there (a list for a tuple, a str for a datetime...)."""
    import msgspec.inspect as mi

    seen: set[int] = set()

    def walk(info: Any) -> bool:
        if isinstance(info, (mi.AnyType, mi.CustomType)):  # (an ActorRef field: a custom type)
            return True
        if isinstance(info, (mi.StructType, mi.DataclassType, mi.TypedDictType,
                             mi.NamedTupleType)):
            if id(info.cls) in seen:
                return False
            seen.add(id(info.cls))
            return any(walk(field.type) for field in info.fields)
        if isinstance(info, mi.UnionType):
            return any(walk(member) for member in info.types)
        if isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            return walk(info.item_type)
        if isinstance(info, mi.TupleType):
            return any(walk(item) for item in info.item_types)
        if isinstance(info, mi.DictType):
            return walk(info.key_type) or walk(info.value_type)
        return False

    return walk(mi.type_info(cls))


class BodyCodec:
    """Encodes message bodies and decodes them with one cached decoder per type.

    A value keeps its type across the boundary. msgspec Structs whose fields
    all declare their types travel as themselves (the typed decoder restores
    every field); scalars travel as they are; anything else is walked and
    what msgspec would hand back as another type (a tuple, a set, a datetime,
    an Enum, a dataclass, a Struct inside a list, a field typed ``Any``...)
    travels as a MessagePack extension that the other side turns back into it.
    """

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._any = msgspec.msgpack.Decoder(ext_hook=self._untag)
        self._named_raw = msgspec.msgpack.Decoder(tuple[str, msgspec.Raw])
        self._traced_decoder = msgspec.msgpack.Decoder(
            tuple[dict[str, str], str, msgspec.Raw])
        # Classes whose values need no walk, by the type name they travel under; read
        # on the tell hot path (``_host``): native Structs, and scalars under "".
        self._names: dict[type, str] = {cls: "" for cls in _SCALARS if cls is not bytes}
        self._decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}
        self._lossy: dict[type, bool] = {}
        self._bulky: dict[type, tuple[str, ...]] = {}  # Struct fields typed bytes-like

    def encode(self, value: Any) -> tuple[str, bytes]:
        """``(type, body)`` for ``value``; raises ``TypeError`` or ``ValueError`` naming why."""
        cls = value.__class__
        name = self._names.get(cls)
        if name is not None:
            return name, self._encoder.encode(value)
        if isinstance(value, msgspec.Struct) and not self._is_lossy(cls):
            name, bulky = self._native(cls)
            if bulky and any(_large(getattr(value, field)) for field in bulky):
                return "", self._encoder.encode(self._tag(value))  # payloads go to shared memory
            return name, self._encoder.encode(value)
        if cls is Traced:  # a message and the trace context it was sent in
            inner, body = self.encode(value.message)
            return TRACED_TYPE, self._encoder.encode(
                (inject(value.context), inner, msgspec.Raw(body)))
        return "", self._encoder.encode(self._tag(value))

    def prepare(self, *classes: type[msgspec.Struct]) -> None:
        """Work out now what the first message of each of ``classes`` would (how it travels,
        its decoder), so that the first one sent or received does not pay for it: a
        millisecond or so per class."""
        for cls in classes:
            if not self._is_lossy(cls):
                name, _bulky = self._native(cls)
                if name not in self._decoders:
                    self._decoders[name] = self._decoder(name)

    def _native(self, cls: type) -> tuple[str, tuple[str, ...]]:
        """How a Struct class with every field typed travels: its type name, and its fields
        typed bytes-like (looked at on each send: a large one goes to shared memory); a
        class with none is sent without a look from then on (``_names``)."""
        name = self._struct_name(cls)
        bulky = self._bulky.get(cls)
        if bulky is None:
            bulky = self._bulky[cls] = _buffer_fields(cls)
        if not bulky:
            self._names[cls] = name
        return name, bulky

    def _decoder(self, name: str) -> msgspec.msgpack.Decoder[Any]:
        return msgspec.msgpack.Decoder(resolve(name), ext_hook=self._untag)

    def _traced(self, body: Any) -> Any:
        """A traced message: in its ``Traced`` envelope where this process traces."""
        carrier, name, inner = self._traced_decoder.decode(body)
        message = self.decode(name, inner)
        return Traced(message, extract(carrier)) if TRACING.tracing else message

    def _struct_name(self, cls: type) -> str:
        name = type_name(cls)
        if "<locals>" in name:
            raise TypeError(
                f"{cls.__qualname__} is defined inside a function; "
                "the other process can only find classes defined at module level"
            )
        return name

    def _is_lossy(self, cls: type) -> bool:
        lossy = self._lossy.get(cls)
        if lossy is None:
            lossy = self._lossy[cls] = _lossy(cls)
        return lossy

    def _tag(self, value: Any) -> Any:
        """``value`` with what would change type replaced by extensions, at any depth."""
        cls = value.__class__
        ext = msgspec.msgpack.Ext
        pack = self._encoder.encode
        if cls in _BUFFERS or (cls.__name__ == "ndarray" and cls.__module__ == "numpy"):
            shared = self._shared(value) if _large(value) else None
            if shared is not None:
                return ext(_SHARED, pack(shared))
            if cls is bytearray:
                return ext(_BYTEARRAY, bytes(value))
            if cls is not bytes and cls is not memoryview:
                return ext(_NDARRAY, pack([*_array_header(value), _contiguous(value).data]))
            return value
        if cls in _SCALARS:
            return value
        if cls is list:
            return [self._tag(item) for item in value]
        if cls is dict:
            return self._tag_dict(value)
        if cls is tuple:
            return ext(_TUPLE, pack([self._tag(item) for item in value]))
        if cls is set or cls is frozenset:
            items = [self._tag(item) for item in value]
            return ext(_SET if cls is set else _FROZENSET, pack(items))
        if isinstance(value, ActorRef):  # it travels as its path; see _routing
            return ext(_REF, value.path.encode())
        if isinstance(value, msgspec.Struct):
            name = self._struct_name(cls)
            if self._is_lossy(cls) or self._bulky.get(cls):
                tagged = {field: self._tag(getattr(value, field))
                          for field in value.__struct_fields__}
                config = cls.__struct_config__
                if config.array_like:  # (msgspec converts it from an array only)
                    tag = [] if config.tag is None else [config.tag]
                    return ext(_TAGGED_STRUCT, pack([name, [*tag, *tagged.values()]]))
                return ext(_TAGGED_STRUCT, pack([name, tagged]))
            return ext(_STRUCT, pack([name, msgspec.Raw(pack(value))]))
        if isinstance(value, enum.Enum):
            return ext(_ENUM, pack([self._struct_name(cls), self._tag(value.value)]))
        if isinstance(value, datetime.datetime):
            return ext(_DATETIME, value.isoformat().encode())
        if isinstance(value, datetime.date):
            return ext(_DATE, value.isoformat().encode())
        if isinstance(value, datetime.time):
            return ext(_TIME, value.isoformat().encode())
        if isinstance(value, datetime.timedelta):
            return ext(_TIMEDELTA, pack([value.days, value.seconds, value.microseconds]))
        if isinstance(value, uuid.UUID):
            return ext(_UUID, value.bytes)
        if isinstance(value, decimal.Decimal):
            return ext(_DECIMAL, str(value).encode())
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {field.name: self._tag(getattr(value, field.name))
                      for field in dataclasses.fields(value)}
            return ext(_DATACLASS, pack([self._struct_name(cls), fields]))
        if isinstance(value, list):  # subclasses of the plain containers travel as them
            return [self._tag(item) for item in value]
        if isinstance(value, dict):
            return self._tag_dict(value)
        return value  # msgspec encodes it as it can (memoryview: bytes), or names the type

    @staticmethod
    def _shared(value: Any) -> list[Any] | None:
        """A large payload written to shared memory: what the message carries instead."""
        cls = value.__class__
        if cls is bytes or cls is bytearray or cls is memoryview:
            slot = ARENA.put(value)
            kind = _AS_BYTEARRAY if cls is bytearray else _AS_BYTES
            return None if slot is None else [kind, *slot]
        slot = ARENA.put(_contiguous(value).data)
        return None if slot is None else [_AS_NDARRAY, *slot, *_array_header(value)]

    def _tag_dict(self, value: dict[Any, Any]) -> Any:
        if all(key.__class__ in _SCALARS for key in value):
            return {key: self._tag(item) for key, item in value.items()}
        pairs = [[self._tag(key), self._tag(item)] for key, item in value.items()]
        return msgspec.msgpack.Ext(_PAIRS, self._encoder.encode(pairs))  # tuple keys...

    def _untag(self, code: int, data: memoryview) -> Any:
        if code == _BYTEARRAY:
            return bytearray(data)
        if code == _UUID:
            return uuid.UUID(bytes=bytes(data))
        if code in _TEXTUAL:
            return _TEXTUAL[code](bytes(data).decode())
        if code == _REF:
            from actorstage.transport._routing import ROUTER

            router = ROUTER.get()
            if router is None:
                raise ValueError("an actor ref arrived outside of an actor system")
            return router.ref(bytes(data).decode())
        if code == _STRUCT:
            name, raw = self._named_raw.decode(data)
            return self.decode(name, raw)
        inner = self._any.decode(data)
        if code == _SHARED:
            kind, slot, size, *header = inner
            if kind == _AS_NDARRAY:
                return ARENA.take(slot, size, _array_maker(*header))
            return ARENA.take(slot, size, bytearray if kind == _AS_BYTEARRAY else bytes)
        if code == _NDARRAY:
            dtype, shape, raw = inner
            return _array_maker(dtype, shape)(raw)
        if code == _TUPLE:
            return tuple(inner)
        if code == _SET:
            return set(inner)
        if code == _FROZENSET:
            return frozenset(inner)
        if code == _PAIRS:
            return dict(inner)
        if code == _TIMEDELTA:
            return datetime.timedelta(*inner)
        if code in (_TAGGED_STRUCT, _DATACLASS):
            name, fields = inner
            return msgspec.convert(fields, resolve(name, struct=code == _TAGGED_STRUCT,
                                                   dataclass=code == _DATACLASS))
        if code == _ENUM:
            name, enum_value = inner
            return resolve(name, struct=False, enumeration=True)(enum_value)
        raise ValueError(f"unknown MessagePack extension {code}")

    def decode(self, name: str, body: Any) -> Any:
        """The value of ``body``; raises ``LookupError`` or ``msgspec.DecodeError``."""
        decoder = self._decoders.get(name) if name else self._any
        if decoder is None:
            if name == TRACED_TYPE:
                return self._traced(body)
            decoder = self._decoders[name] = self._decoder(name)
        try:
            return decoder.decode(body)
        except (LookupError, msgspec.DecodeError):
            raise
        except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:  # a bad extension
            raise msgspec.DecodeError(f"undecodable value: {exc}") from None


def _large(value: Any) -> bool:
    """Whether ``value`` is a buffer big enough for shared memory."""
    if value.__class__ is bytes or value.__class__ is bytearray:
        return len(value) >= THRESHOLD
    nbytes = getattr(value, "nbytes", None)  # a memoryview, a numpy array
    return isinstance(nbytes, int) and nbytes >= THRESHOLD


def _buffer_fields(cls: type) -> tuple[str, ...]:
    """The fields of Struct ``cls`` typed ``bytes``, ``bytearray`` or ``memoryview``."""
    import msgspec.inspect as mi

    info = mi.type_info(cls)
    kinds = (mi.BytesType, mi.ByteArrayType, mi.MemoryViewType)
    found = []
    for field in info.fields:  # type: ignore[attr-defined]
        types = field.type.types if isinstance(field.type, mi.UnionType) else (field.type,)
        if any(isinstance(kind, kinds) for kind in types):
            found.append(field.name)
    return tuple(found)


def _contiguous(array: Any) -> Any:
    if array.dtype.hasobject:
        raise TypeError("a numpy array of Python objects cannot cross; use a numeric dtype")
    if array.flags.c_contiguous:
        return array
    return sys.modules["numpy"].ascontiguousarray(array)


def _array_header(array: Any) -> list[Any]:
    return [array.dtype.str, list(array.shape)]


def _array_maker(dtype: str, shape: list[int]) -> Any:
    """A function from a buffer to a new numpy array of ``dtype`` and ``shape`` (a copy)."""
    import numpy

    kind = numpy.dtype(dtype)
    if kind.hasobject:
        raise ValueError("a numpy array of Python objects cannot cross")

    def make(view: Any) -> Any:
        array = numpy.empty(shape, kind)
        if array.nbytes != len(view):
            raise ValueError(f"an array of {shape} {dtype} is not {len(view)} bytes")
        array.reshape(-1).view(numpy.uint8)[:] = numpy.frombuffer(view, numpy.uint8)
        return array

    return make


_TEXTUAL: dict[int, Any] = {
    _DATETIME: datetime.datetime.fromisoformat, _DATE: datetime.date.fromisoformat,
    _TIME: datetime.time.fromisoformat, _DECIMAL: decimal.Decimal,
}


def resolve(name: str, *, struct: bool = True, enumeration: bool = False,
            dataclass: bool = False) -> Any:
    """The class named ``module:QualName``, which must be a msgspec Struct (or, as asked,
    an Enum or a dataclass); ``LookupError`` naming why not."""
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname:
        raise LookupError(f"malformed type name {name!r} (expected 'module:QualName')")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LookupError(f"unknown message type {name!r}: {exc}") from None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise LookupError(f"unknown message type {name!r}: {module_name} has no {qualname}")
    if isinstance(obj, type):
        if struct and issubclass(obj, msgspec.Struct):
            return obj
        if enumeration and issubclass(obj, enum.Enum):
            return obj
        if dataclass and dataclasses.is_dataclass(obj):
            return obj
    kinds = " or ".join(kind for kind, wanted in (
        ("a msgspec Struct", struct), ("an Enum", enumeration), ("a dataclass", dataclass))
        if wanted)
    raise LookupError(f"{name!r} is not {kinds}, so it cannot be a message type")


CODEC = BodyCodec()  # shared: its caches only grow with the message types in use


# -- frames -----------------------------------------------------------------

_entries_encoder = msgspec.msgpack.Encoder()
_entries_decoder = msgspec.msgpack.Decoder(list[tuple[int, int, str, msgspec.Raw, float]])


def pack(entries: list[Entry]) -> bytes:
    """MessagePack the batch; bodies must already be ``msgspec.Raw``."""
    return _entries_encoder.encode(entries)


def unpack(packed: bytes | memoryview) -> list[tuple[int, int, str, msgspec.Raw, float]]:
    try:
        return _entries_decoder.decode(packed)
    except msgspec.DecodeError as exc:
        raise FrameError(f"undecodable packed batch: {exc}") from None


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def warm_protos() -> None:
    """Build betterproto2's per-class metadata now (it is lazy, ~15 ms per process).

    A forkserver calls this once, so that its children do not each pay it.
    """
    from actorstage._betterproto import betterproto2
    from actorstage._proto.actorstage.bridge import v1

    for value in list(vars(v1).values()):
        if isinstance(value, type) and issubclass(value, betterproto2.Message):
            value.parse(bytes(value()))


def encode_frame(envelopes: list[Envelope], packed: bytes) -> bytes:
    """The protobuf bytes of ``Frame(envelopes, packed)``."""
    head = bytes(Frame(envelopes=envelopes)) if envelopes else b""
    if packed:
        return head + b"\x12" + _varint(len(packed)) + packed
    return head


def decode_frame(data: bytes) -> tuple[list[Envelope], memoryview]:
    """``(envelopes, packed)`` of a frame; raises ``FrameError`` naming the problem."""
    view = memoryview(data)
    envelopes: list[Envelope] = []
    packed = view[:0]
    pos, end = 0, len(data)
    try:
        while pos < end:
            tag = data[pos]
            if tag not in (0x0A, 0x12):  # both ends run the same actorstage: no other fields
                raise FrameError(f"not a bridge frame: unexpected byte 0x{tag:02x} at offset {pos}")
            pos += 1
            length = shift = 0
            while True:
                byte = data[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            if pos + length > end:
                raise FrameError(f"truncated frame: a field of {length} bytes at offset {pos}")
            if tag == 0x0A:
                envelopes.append(Envelope.parse(data[pos:pos + length]))
            else:
                packed = view[pos:pos + length]
            pos += length
    except FrameError:
        raise
    except Exception as exc:
        raise FrameError(f"undecodable frame of {len(data)} bytes: {exc!r}") from None
    return envelopes, packed


class RawCodec(CodecBase):
    """grpclib codec that hands frames over as bytes: the bridge encodes them itself."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        assert isinstance(message, bytes)
        return message

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data
