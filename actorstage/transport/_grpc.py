"""grpclib's server, closed whole and bounded before it trusts a peer.

grpclib's ``Server.close()`` cancels the running handlers but leaves every
connection open, and from Python 3.12 on ``asyncio.Server.wait_closed()``
waits for the connections: a server with a connected client never finishes
closing. ``GrpcServer`` keeps its connections and ends each one with a
GOAWAY when it closes.

For a server whose peers must prove who they are first (the bridge), it
also bounds what an unauthenticated connection can cost: a connection that
sends more than a few KiB, or has not been ``authenticated(stream)`` within
the handshake timeout, is closed, whatever it sent or did not send. A
protocol error always closes the connection with a GOAWAY.

``read_message`` (bytes) and ``recv_limited`` (a decoded request) read one
gRPC message after checking its length prefix, so an oversized message is
refused before its body is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from grpclib.client import Stream as ClientStream
from grpclib.const import Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.protocol import Buffer, H2Protocol
from grpclib.server import Handler, Server
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

__all__ = ["GrpcServer", "MessageTooLarge", "Sink", "read_message", "recv_limited", "sink"]

_PREFIX = struct.Struct(">?I")  # a gRPC message: compressed flag, length

# The largest HTTP/2 frame a bridge connection takes once its peer is known. HTTP/2
# starts at 16 KiB, and grpclib writes each frame with its own system call; a bridge
# frame of user messages is often larger.
BRIDGE_FRAME = 1024 * 1024


def take_large_frames(connection: Any) -> None:
    """Tell the peer of a grpclib ``Connection`` that it may send frames up to
    ``BRIDGE_FRAME``: a bridge message then goes in one frame, one write.

    They are taken from now on, not only once the peer has acknowledged the
    setting: h2 applies its frame limit per chunk read, so a large frame that
    arrives in the same chunk as the acknowledgement would be refused.
    """
    h2_connection = connection._connection
    h2_connection.update_settings({SettingCodes.MAX_FRAME_SIZE: BRIDGE_FRAME})
    h2_connection.max_inbound_frame_size = BRIDGE_FRAME
    connection.flush()


class _Protocol(H2Protocol):
    """One connection: removed from its server when lost; bounded until authenticated."""

    server: GrpcServer
    expiry: asyncio.TimerHandle | None = None
    untrusted_bytes = -1  # bytes read before authentication; -1 once trusted

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        server = self.server
        server._connections.add(self)
        if server.handshake_timeout is not None:
            self.untrusted_bytes = 0
            self.expiry = asyncio.get_running_loop().call_later(
                server.handshake_timeout, self.drop)

    def data_received(self, data: bytes) -> None:
        if self.untrusted_bytes >= 0:
            self.untrusted_bytes += len(data)
            if self.untrusted_bytes > self.server.untrusted_limit:
                self.drop()  # more than a hello takes, before proving anything
                return
        try:
            events = self.connection.feed(data)
        except ProtocolError:
            self.goaway()  # h2 queued a GOAWAY naming the error: send it, then close
            return
        self.connection.flush()
        for event in events:
            self.processor.process(event)
        self.connection.flush()

    def trust(self) -> None:
        """The peer proved who it is: no more bounds, and frames as large as a bridge's."""
        self.untrusted_bytes = -1
        if self.expiry is not None:
            self.expiry.cancel()
        take_large_frames(self.connection)

    def drop(self) -> None:
        """Close a connection that did not prove itself in time, or sent too much first."""
        self.server.dropped += 1
        self.goaway()

    def goaway(self) -> None:
        """End the connection: a GOAWAY (when the protocol still allows one), then close."""
        if self.expiry is not None:
            self.expiry.cancel()
        connection = getattr(self, "connection", None)
        if connection is None or connection.is_closing():
            return
        with contextlib.suppress(Exception):  # already terminated by h2: the GOAWAY is queued
            connection._connection.close_connection()
        with contextlib.suppress(Exception):
            connection.flush()
        self.processor.close("the connection was closed by the server")

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        self.server._lost(self)
        super().connection_lost(exc)


class GrpcServer(Server):
    """A grpclib ``Server`` that closes its connections, optionally bounded before trust.

    Args:
        handlers: the services.
        codec: as grpclib's.
        handshake_timeout: seconds a connection has to be ``authenticated``;
            ``None`` trusts every connection (bearer tokens are checked per call).
        untrusted_limit: bytes a connection may send before it is authenticated
            (the HTTP/2 preface, settings, headers and a hello take under 1 KiB).
        max_message_size: the largest request message any method accepts, in
            bytes; larger ones are refused with RESOURCE_EXHAUSTED before they
            are buffered. ``None``: methods read as grpclib does (the bridge
            reads its frames itself, with its own limit).
        close_grace: seconds calls in flight, then clients, get when it closes.
    """

    def __init__(self, handlers: Collection[Any], *, codec: CodecBase | None = None,
                 handshake_timeout: float | None = None, untrusted_limit: int = 16384,
                 max_message_size: int | None = None, close_grace: float = 1.0) -> None:
        super().__init__(handlers, codec=codec)
        self.handshake_timeout = handshake_timeout
        self.untrusted_limit = untrusted_limit
        self.dropped = 0  # connections closed before they proved themselves
        self.close_grace = close_grace
        self._all_closed: asyncio.Future[None] | None = None
        if max_message_size is not None:
            self._mapping = {name: handler._replace(func=_limited(handler.func, max_message_size))
                             for name, handler in self._mapping.items()}
        self._connections: set[_Protocol] = set()

    def _protocol_factory(self) -> H2Protocol:  # grpclib's, with our protocol
        self.__gc_step__()
        handler = Handler(self._mapping, self._codec, self._status_details_codec,
                          self.__dispatch__)
        self._handlers.add(handler)
        protocol = _Protocol(handler, self._config, self._h2_config)
        protocol.server = self
        return protocol

    @property
    def connections(self) -> int:
        """Open connections, trusted or not."""
        return len(self._connections)

    def authenticated(self, stream: Any) -> None:
        """The peer of ``stream`` (a grpclib server stream) proved who it is."""
        connection = stream._stream.connection
        for protocol in self._connections:
            if protocol.connection is connection:
                protocol.trust()
                return

    async def aclose(self) -> None:
        """Close, gracefully then forcefully; bound it with a deadline.

        No new connections; calls in flight get ``close_grace`` seconds to end,
        then are cancelled; clients get up to ``close_grace`` more to read what
        was sent and hang up (a grpclib client drops the unread replies of a
        connection that ends); a GOAWAY ends the connections still open.
        """
        if self._server is not None:
            self._server.close()
        running = [task for handler in self._handlers for task in handler._tasks.values()
                   if not task.done()]
        if running and self.close_grace > 0:
            await asyncio.wait(running, timeout=self.close_grace)
        self.close()
        if self._connections and self.close_grace > 0:
            self._all_closed = asyncio.get_running_loop().create_future()
            await asyncio.wait([self._all_closed], timeout=self.close_grace)
        for protocol in list(self._connections):
            protocol.goaway()
        await self.wait_closed()

    def _lost(self, protocol: _Protocol) -> None:
        self._connections.discard(protocol)
        if not self._connections and self._all_closed is not None and \
                not self._all_closed.done():
            self._all_closed.set_result(None)


class MessageTooLarge(Exception):
    """A gRPC message announced more bytes than the limit; nothing of its body was read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a message of {size} bytes exceeds the limit of {limit} bytes")
        self.size, self.limit = size, limit


async def read_message(stream: Any, limit: int) -> bytes | None:
    """The next gRPC message of a grpclib stream as bytes; ``None`` at its end.

    The length prefix is checked before the body is read, so a message over
    ``limit`` raises ``MessageTooLarge`` with nothing of it buffered.
    """
    if stream.__class__ is ClientStream:  # a client stream learns of a lost connection
        if not stream._recv_initial_metadata_done:  # through its wrapper, as grpclib reads
            await stream.recv_initial_metadata()
        with stream._wrapper:
            return await _read(stream._stream, limit)
    return await _read(stream._stream, limit)


async def _read(inner: Any, limit: int) -> bytes | None:
    head = await inner.recv_data(_PREFIX.size)
    if not head:
        return None
    compressed, size = _PREFIX.unpack(head)
    if compressed:
        raise GRPCError(Status.UNIMPLEMENTED, "compressed messages are not supported")
    if size > limit:
        raise MessageTooLarge(size, limit)
    data: bytes = await inner.recv_data(size)
    return data


class Sink(Buffer):
    """A grpclib stream's receive buffer that hands each whole gRPC message to
    ``on_message`` as it arrives (from the connection's ``data_received``) instead
    of queueing it for a reader task: a message reaches its actor, or its reply its
    asker, a loop iteration sooner, and no task wakes for it.

    Data is acknowledged as it arrives: the reader took everything at once anyway,
    and what bounds a link is its credits. A message announcing more than ``limit``
    bytes, or compressed, fails the sink before anything of its body is kept;
    ``on_failure`` is told of that and of any error ``on_message`` raises, once, and
    whatever comes after is dropped. The end of the stream still reaches a reader
    waiting in ``read``, as with grpclib's own buffer.
    """

    def __init__(self, ack: Callable[[int], None], limit: int,
                 on_message: Callable[[bytes], None],
                 on_failure: Callable[[Exception], None]) -> None:
        super().__init__(ack)
        self.limit = limit
        self.on_message = on_message
        self.on_failure: Callable[[Exception], None] | None = on_failure
        self.pending = bytearray()  # the part of the next message that came so far

    def add(self, data: bytes, ack_size: int) -> None:
        if ack_size:
            self._ack_callback(ack_size)
        if self.on_failure is None:
            return
        pending = self.pending
        whole: bytes | bytearray = data
        if pending:  # (most often a message comes in one piece: read where it lies)
            pending += data
            whole = pending
        pos, length = 0, len(whole)
        while length - pos >= _PREFIX.size:
            compressed, size = _PREFIX.unpack_from(whole, pos)
            if compressed or size > self.limit:
                self._fail(MessageTooLarge(size, self.limit) if not compressed else
                           GRPCError(Status.UNIMPLEMENTED, "compressed messages are not "
                                                           "supported"))
                return
            end = pos + _PREFIX.size + size
            if end > length:
                break
            message = whole[pos + _PREFIX.size:end] if whole is data else \
                bytes(memoryview(whole)[pos + _PREFIX.size:end])
            pos = end
            try:
                self.on_message(message)
            except Exception as exc:
                self._fail(exc)
                return
        if whole is pending:
            del pending[:pos]
        elif pos < length:
            pending += memoryview(data)[pos:]

    def _fail(self, exc: Exception) -> None:
        on_failure, self.on_failure = self.on_failure, None
        self.pending = bytearray()
        if on_failure is not None:
            on_failure(exc)


def sink(stream: Any, limit: int, on_message: Callable[[bytes], None],
         on_failure: Callable[[Exception], None]) -> None:
    """Put a ``Sink`` in place of the receive buffer of grpclib stream ``stream`` (client
    or server side); what the old buffer holds goes through it first, in order."""
    inner = stream._stream
    old: Buffer = inner.buffer
    new = Sink(old._ack_callback, limit, on_message, on_failure)
    inner.buffer = new
    for chunk in old._acked:  # (acknowledged already)
        new.add(bytes(chunk.data), 0)
    while not old._unacked.empty():
        data, _size, ack_size = old._unacked.get_nowait()
        if not ack_size and not data:  # the end of the stream
            new.eof()
            break
        new.add(data, ack_size)


async def write_message(stream: Any, data: bytes) -> None:
    """Send ``data`` as one gRPC message on a grpclib stream, as its ``send_message`` does.

    Once the stream is open (the client sent its request, the server its
    headers), the message goes straight to the HTTP/2 stream: without the
    client stream's wrapper, which wants a task (the bridge also writes from
    callbacks, see ``Link.send_now``), grpclib's event dispatch and its
    message counters, which nothing here reads. A lost connection still
    surfaces: the write fails, and the reader, which reads inside the
    wrapper, is told.
    """
    opened = stream._send_request_done if stream.__class__ is ClientStream else \
        stream._send_initial_metadata_done
    if not opened:
        await stream.send_message(data)
        return
    await stream._stream.send_data(_PREFIX.pack(False, len(data)) + data)


Method = Callable[[Any], Awaitable[None]]


def _check_fields(data: bytes) -> None:
    """Refuse a message whose top-level fields are not protobuf (betterproto2 reads some
    of those as ``None`` in a field that must hold a value)."""
    pos, end = 0, len(data)

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= end:
                raise ValueError(f"a truncated varint at offset {pos}")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    while pos < end:
        start = pos
        tag = varint()
        field, wire = tag >> 3, tag & 7
        if field == 0 or wire in (3, 4, 6, 7):
            raise ValueError(f"an invalid field tag {tag} at offset {start}")
        if wire == 0:
            varint()
        else:
            size = {1: 8, 5: 4}.get(wire) or varint()
            pos += size
        if pos > end:
            raise ValueError(f"a truncated field at offset {start}")


def _limited(func: Method, limit: int) -> Method:
    """``func`` (a grpclib method handler) reading its requests with ``recv_limited``."""

    async def handle(stream: Any) -> None:
        stream.recv_message = functools.partial(recv_limited, stream, limit)
        await func(stream)

    return handle


async def recv_limited(stream: Any, limit: int) -> Any:
    """``stream.recv_message()`` of a grpclib server stream, refusing more than ``limit`` bytes.

    The refusal is RESOURCE_EXHAUSTED naming both sizes, before the body is buffered.
    """
    try:
        data = await read_message(stream, limit)
    except MessageTooLarge as exc:
        raise GRPCError(Status.RESOURCE_EXHAUSTED, (
            f"the request of {exc.size} bytes exceeds the limit of {exc.limit} bytes "
            "(the server's max_message_size)")) from None
    if data is None:
        return None
    kind = stream._recv_type
    try:
        _check_fields(data)
        message = stream._codec.decode(data, kind)
    except UnicodeDecodeError as exc:
        raise GRPCError(Status.INVALID_ARGUMENT, (
            f"the request is not a valid {kind.__name__}: a string field holds bytes that are "
            f"not UTF-8 (byte 0x{exc.object[exc.start]:02x}: {exc.reason})")) from None
    except Exception as exc:  # a message that does not parse as its type
        raise GRPCError(Status.INVALID_ARGUMENT,
                        f"the request is not a valid {kind.__name__}: {exc}") from None
    message, = await stream._dispatch.recv_message(message)
    return message
