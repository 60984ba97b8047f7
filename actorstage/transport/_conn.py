"""Connections: one bidirectional stream of frames, over gRPC or JSON lines.

Both carry the same frames (``bridge.proto``); a ``Conn`` sends and receives
them as ``(envelopes, packed)``. grpclib, h2 and OS errors are translated
here, once, into ``ConnectionLost``; undecodable input into ``FrameError``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from h2.exceptions import H2Error

from actorstage._proto.actorstage.bridge.v1 import Envelope
from actorstage.transport._codec import FrameError, decode_frame, encode_frame
from actorstage.transport._grpc import MessageTooLarge, read_message, sink, write_message

__all__ = ["Conn", "ConnectionLost", "GrpcConn", "Received", "StdioConn"]

Received = tuple[list[Envelope], "memoryview | bytes"]

_LOST = (
    GRPCError, StreamTerminatedError, ProtocolError, H2Error, ConnectionError, OSError, EOFError,
)


class _PipeReading(asyncio.StreamReaderProtocol):
    def eof_received(self) -> bool:
        super().eof_received()
        return False  # close the transport (uvloop keeps it open on True): a pipe ends whole


async def read_stream(
    loop: asyncio.AbstractEventLoop, fd: int, limit: int
) -> asyncio.StreamReader:
    """A ``StreamReader`` over the read end of a pipe (it owns the descriptor)."""
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = _PipeReading(reader, loop=loop)
    await loop.connect_read_pipe(lambda: protocol, os.fdopen(fd, "rb", 0))
    return reader


async def write_stream(loop: asyncio.AbstractEventLoop, fd: int) -> asyncio.StreamWriter:
    """A ``StreamWriter`` over the write end of a pipe (it owns the descriptor)."""
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(fd, "wb", 0))
    return asyncio.StreamWriter(transport, protocol, None, loop)


class ConnectionLost(Exception):
    """The stream ended abnormally; the text says how."""


class Conn(Protocol):
    async def send(self, envelopes: list[Envelope], packed: bytes) -> None: ...

    async def recv(self) -> Received | None: ...

    async def aclose(self) -> None: ...


class GrpcConn:
    """A grpclib stream (server or client side) carrying protobuf frames."""

    def __init__(self, stream: Any, max_frame_size: int) -> None:
        self._stream = stream
        self._max = max_frame_size
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(self, envelopes: list[Envelope], packed: bytes) -> None:
        try:
            await write_message(self._stream, encode_frame(envelopes, packed))
        except _LOST as exc:
            raise ConnectionLost(f"sending failed: {exc!r}") from exc
        except RuntimeError as exc:  # uvloop: "unable to perform operation on <... closed=True>"
            if "closed" not in str(exc):
                raise
            raise ConnectionLost(f"sending failed: {exc}") from exc

    async def open_reply(self) -> None:
        """Send a server-side stream's response headers now, so that its first frame
        later goes out alone (a spare child's stream, while the spare waits)."""
        stream = self._stream
        if hasattr(stream, "send_initial_metadata") and \
                not getattr(stream, "_send_initial_metadata_done", True):
            try:
                await stream.send_initial_metadata()
            except _LOST as exc:
                raise ConnectionLost(f"sending failed: {exc!r}") from exc

    def listen(self, on_frame: Callable[[Received], None],
               on_failure: Callable[[Exception], None]) -> None:
        """Hand each frame to ``on_frame`` as it arrives, from the connection's callback
        (``_grpc.Sink``); ``recv`` then returns only the end of the stream (``None``) or
        raises its loss. A frame that cannot be read, or an error of ``on_frame``, goes
        to ``on_failure``, a frame over the limit as a ``FrameError``."""
        def arrived(data: bytes) -> None:
            on_frame(decode_frame(data))

        def failed(exc: Exception) -> None:
            if isinstance(exc, MessageTooLarge):
                exc = _too_large(exc)
            elif isinstance(exc, GRPCError):
                exc = ConnectionLost(f"receiving failed: {exc!r}")
            on_failure(exc)

        sink(self._stream, self._max, arrived, failed)

    async def recv(self) -> Received | None:
        try:
            data = await read_message(self._stream, self._max)
        except MessageTooLarge as exc:
            raise _too_large(exc) from None
        except _LOST as exc:
            raise ConnectionLost(f"receiving failed: {exc!r}") from exc
        if data is None:  # the other side half-closed: end ours, so it sees a clean finish
            await self.aclose()
            return None
        return decode_frame(data)

    async def aclose(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _too_large(exc: MessageTooLarge) -> FrameError:
    return FrameError(f"frame of {exc.size} bytes exceeds the maximum of {exc.limit} bytes "
                      "(ProcessOptions.max_frame_size)")


class _JsonFrame(msgspec.Struct, omit_defaults=True):
    envelopes: list[bytes] = []  # each envelope's protobuf bytes (base64 in JSON)
    packed: bytes = b""


_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(_JsonFrame)


class StdioConn:
    """Frames as JSON lines over a pair of pipes: ``{"envelopes": [...], "packed": ...}``,
    each envelope its protobuf bytes and the packed entries their MessagePack, in
    base64 (betterproto2's own JSON mapping costs 0.2-0.3 ms per envelope)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame_size: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max = max_frame_size

    async def send(self, envelopes: list[Envelope], packed: bytes) -> None:
        frame = _JsonFrame([bytes(envelope) for envelope in envelopes], packed)
        writer = self._writer
        if writer.is_closing():  # the child is gone (its end of the pipe closed)
            raise ConnectionLost("sending failed: the pipe is closed")
        try:
            writer.write(_json_encoder.encode(frame) + b"\n")
            await writer.drain()
        except (*_LOST, RuntimeError) as exc:  # uvloop: "the handler is closed"
            raise ConnectionLost(f"sending failed: {exc!r}") from exc

    async def recv(self) -> Received | None:
        try:
            line = await self._reader.readline()
        except ValueError as exc:  # asyncio's "separator is not found, chunk exceed the limit"
            raise FrameError(f"a line exceeds the maximum frame size of {self._max} bytes") from exc
        except _LOST as exc:
            raise ConnectionLost(f"receiving failed: {exc!r}") from exc
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise ConnectionLost("the stream ended in the middle of a frame")
        try:
            frame = _json_decoder.decode(line)
            envelopes = [Envelope.parse(item) for item in frame.envelopes]
        except Exception as exc:
            raise FrameError(f"undecodable line of {len(line)} bytes: {exc}") from None
        return envelopes, frame.packed

    async def aclose(self) -> None:
        self._writer.close()
