"""A hostile local peer at the bridge: silent or garbage connections, oversized hellos."""

from __future__ import annotations

import asyncio
import os
import struct

import anyio
import msgspec
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from actorstage import ActorSystem
from actorstage._proto.actorstage.bridge.v1 import Envelope, Hello
from actorstage.testing import wait_until
from actorstage.transport._codec import RawCodec, encode_frame
from actorstage.transport._server import BridgeServer
from tests.transport.actors import Add, Counter
from tests.transport.helpers import FAST

pytestmark = pytest.mark.anyio

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame
GOAWAY = 0x7


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _tcp_bridge(system: ActorSystem) -> tuple[BridgeServer, str, int]:
    bridge = system._bridges[("tcp", "127.0.0.1", False)]
    host, _, port = bridge.address[len("tcp:"):].rpartition(":")
    return bridge, host, int(port)


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := await reader.read(65536):
        data += chunk
    return data


async def test_500_connections_that_never_prove_themselves_are_closed_and_children_still_connect(
) -> None:
    options = msgspec.structs.replace(FAST, transport="tcp", handshake_timeout=1.0)
    async with ActorSystem(process_defaults=options) as system:
        first = await system.spawn(Counter, process=True)
        bridge, host, port = _tcp_bridge(system)
        baseline = _fds()
        payloads = [b"", PREFACE, PREFACE + SETTINGS, PREFACE + os.urandom(512),
                    b"GET / HTTP/1.1\r\n\r\n"]
        peers = []
        for index in range(500):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payloads[index % len(payloads)])
            peers.append((reader, writer))
        # Meanwhile a real child connects and answers.
        with anyio.fail_after(20):
            second = await system.spawn(Counter, process=True)
            assert (await second.ask(Add(2))).value == 2
        with anyio.fail_after(10):  # the handshake timeout closes every one of them
            for reader, _writer in peers:
                await _until_closed(reader)
        for _reader, writer in peers:
            writer.close()
        await system.stop(second)
        with anyio.fail_after(10):
            await wait_until(lambda: _fds() <= baseline and bridge.connections == 1)
        assert (await first.ask(Add(1))).value == 1


async def test_a_protocol_error_closes_the_connection_with_a_goaway() -> None:
    options = msgspec.structs.replace(FAST, transport="tcp")
    async with ActorSystem(process_defaults=options) as system:
        ref = await system.spawn(Counter, process=True)
        _bridge, host, port = _tcp_bridge(system)
        reader, writer = await asyncio.open_connection(host, port)
        # A DATA frame on stream 0 is a connection error (RFC 9113, 6.1).
        writer.write(PREFACE + SETTINGS + b"\x00\x00\x04\x00\x00\x00\x00\x00\x00data")
        with anyio.fail_after(5):  # long before the handshake timeout
            received = await _until_closed(reader)
        writer.close()
        frames = []
        while received:
            length = int.from_bytes(received[:3], "big")
            frames.append(received[3])
            received = received[9 + length:]
        assert GOAWAY in frames
        assert (await ref.ask(Add(1))).value == 1


async def _send_hello(address: str, body: bytes) -> None:
    channel = Channel(path=address[len("unix:"):], codec=RawCodec())
    try:
        async with channel.request("/actorstage.v1.Bridge/Connect", Cardinality.STREAM_STREAM,
                                   bytes, bytes) as stream:
            await stream.send_request()
            await stream.send_message(body)
            await stream.recv_message()
    finally:
        channel.close()


async def test_a_hello_over_the_bound_is_refused_and_a_flood_is_cut_off_unread() -> None:
    async with ActorSystem(process_defaults=msgspec.structs.replace(
            FAST, handshake_timeout=30.0)) as system:
        ref = await system.spawn(Counter, process=True)
        bridge = system._bridges[("unix", "", False)]
        padded = Envelope(hello=Hello(secret="x" * 2000, pid=1, token="t"))
        with anyio.fail_after(5), pytest.raises(GRPCError) as caught:
            await _send_hello(bridge.address, encode_frame([padded], b""))
        assert caught.value.status is Status.UNAUTHENTICATED
        # 64 MiB before any hello: the connection is closed after a few KiB, long before
        # the handshake timeout, and the sender cannot push the rest.
        flood = struct.pack(">?I", False, 64 << 20)[1:]  # (a frame's own length prefix)
        with anyio.fail_after(5), pytest.raises((GRPCError, StreamTerminatedError, OSError)):
            await _send_hello(bridge.address, flood + bytes(64 << 20))
        assert bridge.refused == 2
        with anyio.fail_after(5):
            await wait_until(lambda: bridge.connections == 1)
        assert (await ref.ask(Add(1))).value == 1
