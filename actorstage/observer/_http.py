"""The observer's own small HTTP/1.1 server (asyncio streams, one request per connection).

Routes: ``GET /`` the page; ``GET /events`` server-sent events; ``GET
/api/snapshot``; ``GET /api/children?path=&offset=&limit=``; ``POST
/api/ACTION?path=`` with ``Authorization: Bearer TOKEN`` (pause, resume,
stop, restart). A request's head is bounded (``MAX_HEAD`` bytes, read within
``HEAD_TIMEOUT`` seconds); a body is not read (none is needed). The ``Host``
header must name the address the server listens on or a loopback name, so a
page of another site cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from typing import Any

from actorstage.observer._model import Watch, answer

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0
_LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Content Too Large", 421: "Misdirected Request", 500: "Internal Server Error"}


def _literal(host: str) -> bool:
    """Whether ``host`` is an IP address (a name could be rebound to us; an address not)."""
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class HttpServer:
    def __init__(self, watch: Watch, host: str, port: int) -> None:
        self.watch = watch
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port,
                                                  limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._connections.values():  # (their handlers end as they fail)
                writer.close()
            if self._connections:
                await asyncio.wait(list(self._connections), timeout=2.0)
            await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _respond(writer, 413, {"error": f"a request head is at most {MAX_HEAD} "
                                                  "bytes"})
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _respond(writer, 400, {"error": "not an HTTP/1.x request line"})
            return
        method, target, _version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        raw = headers.get("host", "")
        host = raw[:raw.find("]") + 1] if raw.startswith("[") else raw.rsplit(":", 1)[0]
        if host not in _LOOPBACK and host != self.host and not (
                self.host in ("0.0.0.0", "::", "") and _literal(host)):
            await _respond(writer, 421, {"error": f"Host {host!r} is not this server's"})
            return
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        answered = await answer(self.watch, method, url.path, query, headers)
        if answered is None:
            await self._events(writer)
        else:
            await _respond(writer, *answered)

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-store\r\nConnection: close\r\n\r\n")
        async for chunk in self.watch.stream():
            writer.write(chunk)
            await writer.drain()


async def _respond(writer: asyncio.StreamWriter, status: int, body: Any,
                   kind: str = "application/json") -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {kind}"
                 f"\r\nContent-Length: {len(data)}\r\nCache-Control: no-store\r\n"
                 "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n".encode()
                 + data)
    await writer.drain()
