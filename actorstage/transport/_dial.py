"""Connecting to a bridge server: a child to its parent, or a node to a peer node."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from actorstage._proto.actorstage.bridge.v1 import Envelope, Hello
from actorstage.transport._conn import GrpcConn
from actorstage.transport._grpc import take_large_frames
from actorstage.transport._tls import TreeTls

__all__ = ["ClientConn", "dial"]


class ClientConn(GrpcConn):
    """The calling end of a bridge stream, which also owns the channel."""

    def __init__(self, stream: Any, channel: Any, max_frame_size: int) -> None:
        super().__init__(stream, max_frame_size)
        self._channel = channel

    async def aclose(self) -> None:
        stream = self._stream
        # Half-close, wait for the other end of the stream, release it; the other
        # side may be gone already, and then there is nothing left to tell it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stream.end(), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stream.__aexit__(None, None, None), 1.0)
        self._channel.close()
        await super().aclose()


async def dial(address: str, token: str, secret: str, limit: int,
               tls: TreeTls | None = None) -> ClientConn:
    """Open a stream to the bridge server at ``address`` and say hello with the secret
    (``tls:HOST:PORT``: over TLS, with this process's certificate of the tree, ``tls``)."""
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from actorstage._proto.actorstage.bridge.v1 import Frame
    from actorstage.transport._codec import RawCodec

    if address.startswith("unix:"):
        channel = Channel(path=address[5:], codec=RawCodec())
    else:
        host, _, port = address[4:].rpartition(":")
        context = None
        if address.startswith("tls:"):
            if tls is None:
                raise ConnectionError(f"{address} takes TLS, and this process has no "
                                      "certificate of the tree")
            context = tls.client_context()
        channel = Channel(host.strip("[]"), int(port), codec=RawCodec(), ssl=context)
    try:
        stream = channel.request("/actorstage.v1.Bridge/Connect", Cardinality.STREAM_STREAM,
                                 Frame, Frame)
        await stream.__aenter__()
        await stream.send_request()
        protocol = channel._protocol  # (connected by the request: it is set)
        assert protocol is not None
        take_large_frames(protocol.connection)  # (from the server we dialled)
        conn = ClientConn(stream, channel, limit)
        await conn.send([Envelope(hello=Hello(secret=secret, pid=os.getpid(), token=token))],
                        b"")
    except BaseException:
        channel.close()
        raise
    return conn
