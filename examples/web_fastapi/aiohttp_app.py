"""The same HTTP API as ``app.py``, on aiohttp.

Serve it: ``python examples/web_fastapi/aiohttp_app.py --serve`` (port 8080;
``pip install actorstage[web]``). Without ``--serve`` it serves on a free
loopback port, calls each endpoint once, and stops. The actor tree lives
from the app's startup to its cleanup, through ``actorstage.web.aiohttp_context``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))  # `tree` lives next to this file

from tree import Add, CounterFor, Crash, Hash, TooManyKeys, build, request_timeout

import actorstage.web

routes = web.RouteTableDef()


def budget(request: web.Request) -> float:
    """The request's deadline in seconds from now."""
    try:
        return request_timeout(request.headers.get("X-Request-Timeout"))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def ask(what: str, ref: Any, message: Any, seconds: float) -> Any:
    try:
        async with asyncio.timeout(seconds):
            return await ref.ask(message)
    except TimeoutError:
        raise web.HTTPGatewayTimeout(
            text=msgspec.json.encode({"error": "deadline exceeded", "detail": (
                f"{what} did not answer within {seconds:g} s"), "timeout_seconds": seconds
            }).decode(), content_type="application/json") from None


@routes.post("/count/{key}")
async def count(request: web.Request) -> web.Response:
    key, seconds = request.match_info["key"], budget(request)
    state = actorstage.web.state_of(request)
    try:
        counter = await ask("the key registry", state["keys"], CounterFor(key), seconds)
    except TooManyKeys as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None
    value = await ask(f"the counter of {key!r}", counter, Add(), seconds)
    return web.json_response({"key": key, "count": value})


@routes.post("/count/{key}/crash")
async def crash(request: web.Request) -> web.Response:
    key, seconds = request.match_info["key"], budget(request)
    state = actorstage.web.state_of(request)
    counter = await ask("the key registry", state["keys"], CounterFor(key), seconds)
    try:
        await ask(f"the counter of {key!r}", counter, Crash(), seconds)
    except actorstage.ActorCrashedError as exc:
        return web.json_response({"key": key, "crashed": exc.error_message})
    raise web.HTTPInternalServerError(text="the counter did not crash")


@routes.get("/hash")
async def hash_(request: web.Request) -> web.Response:
    data = request.query.get("data", "")
    rounds = int(request.query.get("rounds", "100000"))
    if not 1 <= rounds <= 50_000_000:
        raise web.HTTPBadRequest(text=f"rounds must be in 1-50000000, got {rounds}")
    worker = next(actorstage.web.state_of(request)["workers"])
    done = await ask(f"pool worker {worker.name}", worker, Hash(data, rounds), budget(request))
    return web.json_response({"digest": done.digest, "pid": done.pid, "rounds": rounds})


@routes.post("/pool/crash")
async def crash_worker(request: web.Request) -> web.Response:
    worker = next(actorstage.web.state_of(request)["workers"])
    try:
        await ask(f"pool worker {worker.name}", worker, Hash("", 0), budget(request))
    except actorstage.ActorCrashedError as exc:
        return web.json_response({"worker": worker.name, "crashed": exc.error_message})
    raise web.HTTPInternalServerError(text="the worker did not fail")


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    system = actorstage.web.system_of(request)
    response = web.StreamResponse(headers={"content-type": "text/event-stream",
                                           "cache-control": "no-store"})
    await response.prepare(request)
    await response.write(b": the tree's changes, as they happen\n\n")
    async with system.tree_events.subscribe() as changes:
        async for change in changes:
            await response.write(b"event: %s\ndata: %s\n\n" % (
                change.kind.encode(), msgspec.json.encode(change)))
    return response


@routes.get("/tree")
async def tree(request: web.Request) -> web.Response:
    system = actorstage.web.system_of(request)
    return web.Response(body=msgspec.json.encode(system.tree()),
                        content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.add_routes(routes)
    app.cleanup_ctx.append(actorstage.web.aiohttp_context(build))
    return app


async def demo() -> None:
    """Serve the app on a free loopback port, call each endpoint, stop."""
    import aiohttp

    runner = web.AppRunner(make_app())
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            for _ in range(3):
                print(await (await client.post("/count/pears")).json())
            hashed = await client.get("/hash", params={"data": "hello", "rounds": "1000"})
            print(await hashed.json())
            tree = await (await client.get("/tree")).json()
            print("tree:", [child["path"] for child in tree["children"]])
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    if "--serve" in sys.argv:
        web.run_app(make_app(), host="127.0.0.1", port=8080)
    else:
        asyncio.run(demo())
