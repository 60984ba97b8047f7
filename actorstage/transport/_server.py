"""The parent's bridge server: one grpclib server per system and transport, started on need.

A child proves who it is with the one-time secret it was given (through its
stdin, never its command line) in its first frame. A connection without the
right secret is refused with UNAUTHENTICATED and logged; nothing else
changes. Until then a connection is bounded: its hello may hold at most
``HELLO_LIMIT`` bytes, it may send at most 16 KiB in all, and it is closed
when it has not proved itself within the handshake timeout. The unix socket
lives in a private (0700) directory that is removed when the server closes.
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

import grpclib.const
from grpclib.exceptions import GRPCError, StreamTerminatedError

from actorstage._betterproto import betterproto2
from actorstage._proto.actorstage.bridge.v1 import Frame, Hello
from actorstage.transport._codec import FrameError, RawCodec, decode_frame
from actorstage.transport._conn import GrpcConn
from actorstage.transport._grpc import GrpcServer, MessageTooLarge, read_message
from actorstage.transport._tls import TreeTls

__all__ = ["BridgeServer", "Expected", "dead_socket_dirs", "hello_or_exit"]

log = logging.getLogger("actorstage.transport")

HELLO_LIMIT = 1024  # bytes: a hello holds a token, a secret and a pid


@dataclass
class Expected:
    """A child the server waits for: its token, secret, and where to hand its stream."""

    token: str
    secret: str
    max_frame_size: int
    arrived: asyncio.Future[tuple[GrpcConn, int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


async def hello_or_exit(expected: Expected, proc: Any) -> GrpcConn | None:
    """The stream of the child ``proc`` once its hello arrives; ``None`` if it exits first."""
    arrived = expected.arrived
    exited = asyncio.ensure_future(proc.wait())
    try:
        waits: set[asyncio.Future[Any]] = {arrived, exited}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not exited.done():
            exited.cancel()
    if arrived.done():
        conn, _pid = arrived.result()
        return conn
    arrived.cancel()
    return None


class _Service:
    """The ``actorstage.v1.Bridge`` service (a grpclib servable; the generated base class
    would import the runner's messages too, which a child's door does not need)."""

    def __init__(self, server: BridgeServer) -> None:
        self._server = server

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            "/actorstage.v1.Bridge/Connect": grpclib.const.Handler(
                self._server._connect, grpclib.const.Cardinality.STREAM_STREAM, Frame, Frame,
            ),
        }


def dead_socket_dirs(older_than: float = 60.0) -> list[str]:
    """Socket directories of bridge servers whose process is gone (nobody answers there).

    A directory counts when its socket refuses connections, or when it holds
    none and is older than ``older_than`` seconds (its server never started).
    Only this user's directories in the temporary folder are considered.
    """
    import time

    dead = []
    root = tempfile.gettempdir()
    for name in sorted(os.listdir(root)):
        directory = os.path.join(root, name)
        if not name.startswith("actorstage-") or not os.path.isdir(directory):
            continue
        try:
            info = os.stat(directory)
        except FileNotFoundError:
            continue
        if info.st_uid != os.getuid():
            continue
        path = os.path.join(directory, "bridge.sock")
        if not os.path.exists(path):
            if time.time() - info.st_mtime > older_than:
                dead.append(directory)
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            dead.append(directory)
        except OSError:
            pass  # busy or unreadable: not ours to judge
        finally:
            probe.close()
    return dead


class BridgeServer:
    """Accepts the streams of a system's children on one address."""

    def __init__(self, transport: str, host: str, handshake_timeout: float = 5.0,
                 tls: TreeTls | None = None) -> None:
        self.transport = transport
        self.host = host
        self.tls = tls  # TCP with TLS: clients must show a certificate of the tree
        self.address = ""
        self._expected: dict[str, Expected] = {}
        # Links are closed before the server is: nothing to wait for when it closes.
        self._server = GrpcServer([_Service(self)], codec=RawCodec(),
                                  handshake_timeout=handshake_timeout, close_grace=0.0)
        self._dir: str | None = None
        self._refused = 0

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
            await self._server.start(
                sock=sock, ssl=self.tls.server_context() if self.tls is not None else None)
            port = sock.getsockname()[1]
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.address = f"{'tls' if self.tls is not None else 'tcp'}:{host}:{port}"

    def expect(self, max_frame_size: int) -> Expected:
        """Register a child about to start; its token and secret go to its stdin."""
        expected = Expected(secrets.token_hex(8), secrets.token_urlsafe(32), max_frame_size)
        self._expected[expected.token] = expected
        return expected

    def forget(self, expected: Expected) -> None:
        self._expected.pop(expected.token, None)

    async def _connect(self, stream: Any) -> None:
        peer = stream.peer.addr() if stream.peer is not None else None
        try:  # (the server drops a connection whose hello takes too long)
            first = await read_message(stream, HELLO_LIMIT)
            envelopes, _ = decode_frame(first) if first is not None else ([], b"")
        except (FrameError, MessageTooLarge) as exc:
            self._refuse(peer, f"no readable hello ({exc})")
        except StreamTerminatedError:
            return  # the server dropped the connection (too slow, or too much): counted there
        hello = betterproto2.which_one_of(envelopes[0], "body")[1] if envelopes else None
        if not isinstance(hello, Hello):
            self._refuse(peer, "the first frame is not a hello")
        expected = self._expected.get(hello.token)
        if expected is None or not hmac.compare_digest(expected.secret, hello.secret):
            self._refuse(peer, f"unknown token or wrong secret (pid {hello.pid})")
        del self._expected[expected.token]  # a secret is good for one connection
        self._server.authenticated(stream)
        if expected.arrived.done():  # the parent gave up waiting
            raise GRPCError(grpclib.const.Status.UNAVAILABLE, "the parent stopped waiting")
        conn = GrpcConn(stream, expected.max_frame_size)
        expected.arrived.set_result((conn, hello.pid))
        await conn.closed  # the stream lives until the parent closes the link

    @property
    def refused(self) -> int:
        """Connections refused: a wrong hello, or none within the bounds of time and size."""
        return self._refused + self._server.dropped

    def _refuse(self, peer: object, why: str) -> NoReturn:
        self._refused += 1
        log.warning("bridge %s refused a connection from %s: %s", self.address, peer or "?", why)
        raise GRPCError(grpclib.const.Status.UNAUTHENTICATED,
                        "actorstage bridge: unknown token or wrong secret")

    @property
    def directory(self) -> str | None:
        """The private directory of the unix socket (None on TCP)."""
        return self._dir

    @property
    def connections(self) -> int:
        """Connections open now, authenticated or not."""
        return self._server.connections

    async def aclose(self) -> None:
        try:
            async with asyncio.timeout(5.0):
                await self._server.aclose()
        except TimeoutError:
            log.warning("bridge %s did not close within 5s", self.address)
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
