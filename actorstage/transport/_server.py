"""The parent's bridge server: one grpclib server per system and transport, started on need.

A child proves who it is with the one-time secret it was given (through its
stdin, never its command line) in its first frame. A connection without the
right secret is refused with UNAUTHENTICATED and logged; nothing else
changes. The unix socket lives in a private (0700) directory that is
removed when the server closes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from typing import Any, NoReturn

import betterproto2
import grpclib.const
from grpclib.exceptions import GRPCError
from grpclib.server import Server

from actorstage._proto.actorstage.v1 import BridgeBase, Frame, Hello
from actorstage.transport._codec import FrameError, RawCodec, decode_frame
from actorstage.transport._conn import GrpcConn

__all__ = ["BridgeServer", "Expected"]

log = logging.getLogger("actorstage.transport")

_HELLO_TIMEOUT = 10.0


@dataclass
class Expected:
    """A child the server waits for: its token, secret, and where to hand its stream."""

    token: str
    secret: str
    max_frame_size: int
    arrived: asyncio.Future[tuple[GrpcConn, int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Service(BridgeBase):
    def __init__(self, server: BridgeServer) -> None:
        self._server = server

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            "/actorstage.v1.Bridge/Connect": grpclib.const.Handler(
                self._server._connect, grpclib.const.Cardinality.STREAM_STREAM, Frame, Frame,
            ),
        }


class BridgeServer:
    """Accepts the streams of a system's children on one address."""

    def __init__(self, transport: str, host: str) -> None:
        self.transport = transport
        self.host = host
        self.address = ""
        self._expected: dict[str, Expected] = {}
        self._server = Server([_Service(self)], codec=RawCodec())
        self._dir: str | None = None
        self.refused = 0

    async def start(self) -> None:
        if self.transport == "unix":
            self._dir = tempfile.mkdtemp(prefix="actorstage-")  # mode 0700
            path = os.path.join(self._dir, "bridge.sock")
            await self._server.start(path=path)
            self.address = f"unix:{path}"
        else:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            # proto=IPPROTO_TCP, or asyncio would not set TCP_NODELAY on accepted connections,
            # and Nagle plus delayed ACKs would hold small frames for 40 ms.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.host, 0))
            await self._server.start(sock=sock)
            port = sock.getsockname()[1]
            self.address = f"tcp:{self.host}:{port}"

    def expect(self, max_frame_size: int) -> Expected:
        """Register a child about to start; its token and secret go to its stdin."""
        expected = Expected(secrets.token_hex(8), secrets.token_urlsafe(32), max_frame_size)
        self._expected[expected.token] = expected
        return expected

    def forget(self, expected: Expected) -> None:
        self._expected.pop(expected.token, None)

    async def _connect(self, stream: Any) -> None:
        peer = stream.peer.addr() if stream.peer is not None else None
        try:
            first = await asyncio.wait_for(stream.recv_message(), _HELLO_TIMEOUT)
            envelopes, _ = decode_frame(first) if first is not None else ([], b"")
        except (TimeoutError, FrameError) as exc:
            self._refuse(peer, f"no readable hello ({exc!r})")
        hello = betterproto2.which_one_of(envelopes[0], "body")[1] if envelopes else None
        if not isinstance(hello, Hello):
            self._refuse(peer, "the first frame is not a hello")
        expected = self._expected.get(hello.token)
        if expected is None or not hmac.compare_digest(expected.secret, hello.secret):
            self._refuse(peer, f"unknown token or wrong secret (pid {hello.pid})")
        del self._expected[expected.token]  # a secret is good for one connection
        if expected.arrived.done():  # the parent gave up waiting
            raise GRPCError(grpclib.const.Status.UNAVAILABLE, "the parent stopped waiting")
        conn = GrpcConn(stream, expected.max_frame_size)
        expected.arrived.set_result((conn, hello.pid))
        await conn.closed  # the stream lives until the parent closes the link

    def _refuse(self, peer: object, why: str) -> NoReturn:
        self.refused += 1
        log.warning("bridge %s refused a connection from %s: %s", self.address, peer or "?", why)
        raise GRPCError(grpclib.const.Status.UNAUTHENTICATED,
                        "actorstage bridge: unknown token or wrong secret")

    async def aclose(self) -> None:
        self._server.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 5.0)
        except TimeoutError:
            log.warning("bridge %s did not close within 5s", self.address)
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
