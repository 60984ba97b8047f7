"""What crosses the bridge: message bodies (msgspec) and frames (protobuf).

A user message travels as ``(type, body)``: ``type`` names a msgspec Struct
class as ``module:QualName`` (``""`` for a plain value such as an int, a
str or a dict) and ``body`` is its MessagePack encoding. Decoding resolves
the name to a class, checks that it is a msgspec Struct, and decodes with
one cached typed decoder: no pickle, nothing on the wire runs code.

Frames are protobuf (``actorstage/protos/actorstage_proto/v1/bridge.proto``). Protobuf is paid
per frame, not per message: user messages, replies, credits and cancels go
in the frame's ``packed`` field, one MessagePack array for the whole batch.
Frames are read by hand (two length-delimited fields), their envelopes
through the generated classes.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import msgspec
from grpclib.encoding.base import CodecBase

from actorstage._proto.actorstage.v1 import Envelope, Frame

__all__ = [
    "ASK",
    "CANCEL",
    "CODEC",
    "CREDIT",
    "ERROR",
    "REPLY",
    "TELL",
    "BodyCodec",
    "FrameError",
    "RawCodec",
    "RemoteErrorBody",
    "decode_frame",
    "encode_frame",
    "type_name",
]

# Kinds of packed entries: [kind, id, type, body, timeout].
TELL, ASK, REPLY, ERROR, CREDIT, CANCEL = range(6)

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


class BodyCodec:
    """Encodes message bodies and decodes them with one cached decoder per type."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._any = msgspec.msgpack.Decoder()
        self._names: dict[type, str] = {}
        self._decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}

    def encode(self, value: Any) -> tuple[str, bytes]:
        """``(type, body)`` for ``value``; raises ``TypeError`` or ``ValueError`` naming why."""
        cls = value.__class__
        name = self._names.get(cls)
        if name is None:
            name = type_name(cls) if isinstance(value, msgspec.Struct) else ""
            if name and "<locals>" in name:
                raise TypeError(
                    f"{cls.__qualname__} is defined inside a function; "
                    "the other process can only find classes defined at module level"
                )
            self._names[cls] = name
        return name, self._encoder.encode(value)

    def decode(self, name: str, body: Any) -> Any:
        """The value of ``body``; raises ``LookupError`` or ``msgspec.DecodeError``."""
        if not name:
            return self._any.decode(body)
        decoder = self._decoders.get(name)
        if decoder is None:
            decoder = self._decoders[name] = msgspec.msgpack.Decoder(resolve(name))
        return decoder.decode(body)


def resolve(name: str) -> type[msgspec.Struct]:
    """The msgspec Struct class named ``module:QualName``; ``LookupError`` naming why."""
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
    if not (isinstance(obj, type) and issubclass(obj, msgspec.Struct)):
        raise LookupError(f"{name!r} is not a msgspec Struct, so it cannot be a message type")
    return obj


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
    import betterproto2

    from actorstage._proto.actorstage import v1

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
