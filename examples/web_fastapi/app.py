"""An HTTP API in front of a supervised actor tree, with FastAPI.

Serve it: ``uvicorn app:app --app-dir examples/web_fastapi`` (``pip install
actorstage[web]``), then for example ``curl -X POST localhost:8000/count/apples``.
``python examples/web_fastapi/app.py`` serves it on a free loopback port,
calls each endpoint once, and stops.

- ``POST /count/{key}``: add one to the key's counter (its own actor); the count.
- ``POST /count/{key}/crash``: crash that counter on purpose; its supervisor restarts it.
- ``GET /hash?data=...&rounds=...``: iterated SHA-256 in a pool of process actors.
- ``POST /pool/crash``: make a pool worker fail on purpose; its supervisor restarts it.
- ``GET /tree``: ``system.tree()`` as JSON.
- ``GET /events``: the tree's changes (starts, crashes, restarts, stops) as server-sent
  events, live.

Each request has a deadline: the ``X-Request-Timeout`` header (seconds), or
``DEFAULT_TIMEOUT``. Asks past it answer 504 with a body that says what
did not answer in time, rather than a hung request.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

sys.path.insert(0, str(Path(__file__).parent))  # `tree` lives next to this file

from tree import Add, CounterFor, Crash, Hash, TooManyKeys, build, request_timeout

import actorstage.web
from actorstage import ActorCrashedError, ActorSystem


async def setup(system: ActorSystem) -> dict[str, Any]:
    state = await build(system)
    if os.environ.get("WEB_EXAMPLE_FAIL_ON_START"):  # the tests' way to break the start
        from tree import Broken

        await system.spawn(Broken, name="broken")  # after the pool's processes started
    return state


app = FastAPI(title="actorstage web example", lifespan=actorstage.web.lifespan(setup))


class DeadlineExceeded(Exception):
    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} did not answer within {seconds:g} s")
        self.what, self.seconds = what, seconds


def budget(request: Request) -> float:
    """The request's deadline in seconds from now."""
    try:
        return request_timeout(request.headers.get("x-request-timeout"))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@app.exception_handler(DeadlineExceeded)
async def deadline_exceeded(request: Request, exc: DeadlineExceeded) -> JSONResponse:
    return JSONResponse(status_code=504, content={
        "error": "deadline exceeded", "detail": str(exc), "timeout_seconds": exc.seconds})


async def ask(what: str, ref: Any, message: Any, seconds: float) -> Any:
    try:
        async with asyncio.timeout(seconds):
            return await ref.ask(message)
    except TimeoutError:
        raise DeadlineExceeded(what, seconds) from None


@app.post("/count/{key}")
async def count(key: str, request: Request) -> dict[str, Any]:
    seconds = budget(request)
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    try:
        counter = await ask("the key registry", request.state.keys,
                            CounterFor(key), seconds)
    except TooManyKeys as exc:
        raise HTTPException(503, str(exc)) from None
    value = await ask(f"the counter of {key!r}", counter, Add(),
                      max(ends - loop.time(), 0.001))
    return {"key": key, "count": value}


@app.post("/count/{key}/crash")
async def crash(key: str, request: Request) -> dict[str, Any]:
    seconds = budget(request)
    counter = await ask("the key registry", request.state.keys, CounterFor(key),
                        seconds)
    try:
        await ask(f"the counter of {key!r}", counter, Crash(), seconds)
    except ActorCrashedError as exc:
        return {"key": key, "crashed": exc.error_message}
    raise HTTPException(500, "the counter did not crash")


@app.get("/hash")
async def hash_(request: Request, data: str = "", rounds: int = 100_000) -> dict[str, Any]:
    if not 1 <= rounds <= 50_000_000:
        raise HTTPException(400, f"rounds must be in 1-50000000, got {rounds}")
    worker = next(request.state.workers)
    done = await ask(f"pool worker {worker.name}", worker, Hash(data, rounds),
                     budget(request))
    return {"digest": done.digest, "pid": done.pid, "rounds": rounds}


@app.post("/pool/crash")
async def crash_worker(request: Request) -> dict[str, Any]:
    worker = next(request.state.workers)
    try:
        await ask(f"pool worker {worker.name}", worker, Hash("", 0), budget(request))
    except ActorCrashedError as exc:
        return {"worker": worker.name, "crashed": exc.error_message}
    raise HTTPException(500, "the worker did not fail")


@app.get("/events")
async def events(request: Request) -> StreamingResponse:
    system = actorstage.web.system_of(request)

    async def stream() -> AsyncIterator[bytes]:
        yield b": the tree's changes, as they happen\n\n"
        async with system.tree_events.subscribe() as changes:
            async for change in changes:
                yield b"event: %s\ndata: %s\n\n" % (change.kind.encode(),
                                                     msgspec.json.encode(change))

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store"})


@app.get("/tree")
async def tree(request: Request) -> Response:
    system = actorstage.web.system_of(request)
    return Response(msgspec.json.encode(system.tree()), media_type="application/json")


async def demo() -> None:
    """Serve the app on a free loopback port, call each endpoint, stop."""
    import httpx
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=5))
    serving = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # it could not start: its error
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for _ in range(3):
            print((await client.post("/count/apples")).json())
        print((await client.get("/hash", params={"data": "hello", "rounds": 1000})).json())
        late = await client.get("/hash", params={"data": "hello", "rounds": 3_000_000},
                                headers={"X-Request-Timeout": "0.05"})
        print(late.status_code, late.json())
        print((await client.post("/count/apples/crash")).json())
        tree = (await client.get("/tree")).json()
        print("tree:", [child["path"] for child in tree["children"]])
    server.should_exit = True
    await serving


if __name__ == "__main__":
    asyncio.run(demo())
