"""The observer as an ASGI app, to mount in a web backend (FastAPI, Starlette...):
``app.mount("/observer", observer_app(system))``. The same routes as the observer's own
server (see ``_http``), relative to where it is mounted."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from actorstage.observer._model import Watch, answer

if TYPE_CHECKING:
    from actorstage.actors._system import ActorSystem

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def observer_app(system: ActorSystem, *, token: str | None = None) -> Callable[
        [Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app serving ``system``'s observer; it starts watching with its first
    request and stops when the system does."""
    watch = Watch(system, token)
    started: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
            await watch.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if not started:  # (it stops by itself when the system ends)
            started.append(True)
            await watch.start()
        root = scope.get("root_path", "")
        route = scope["path"][len(root):] if scope["path"].startswith(root) else scope["path"]
        query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode()))
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        answered = await answer(watch, scope["method"], route or "/", query, headers)
        if answered is None:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]})
            async for chunk in watch.stream():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            await _respond(send, *answered)

    return app


async def _respond(send: Send, status: int, body: Any, kind: str = "application/json") -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", kind.encode()), (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": data})


def aiohttp_observer(system: ActorSystem, *, token: str | None = None) -> Any:
    """The observer as an aiohttp sub-app: ``app.add_subapp("/observer/",
    aiohttp_observer(system))`` (the ASGI app above, bridged)."""
    from aiohttp import web

    asgi = observer_app(system, token=token)

    async def handle(request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info.get("tail", "")
        scope = {"type": "http", "method": request.method, "path": path, "root_path": "",
                 "query_string": request.query_string.encode(),
                 "headers": [(key.lower().encode(), value.encode())
                             for key, value in request.headers.items()]}
        response: list[web.StreamResponse] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started = web.StreamResponse(status=message["status"], headers={
                    key.decode(): value.decode() for key, value in message["headers"]})
                await started.prepare(request)
                response.append(started)
            elif message["type"] == "http.response.body":
                await response[0].write(message.get("body", b""))

        await asgi(scope, receive, send)
        await response[0].write_eof()
        return response[0]

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
