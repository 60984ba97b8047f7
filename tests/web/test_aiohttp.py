"""The aiohttp example under aiohttp's test server: the tree starts with the app and stops
at its cleanup, handlers reach it, deadlines give 504."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import anyio
import pytest
from aiohttp.test_utils import TestClient, TestServer

import actorstage.web
from actorstage import ActorSystem

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp's test utilities run on asyncio


def example() -> ModuleType:
    path = ROOT / "examples" / "web_fastapi" / "aiohttp_app.py"
    spec = importlib.util.spec_from_file_location("aiohttp_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["aiohttp_app"] = module
    spec.loader.exec_module(module)
    return module


async def test_the_app_owns_the_tree_from_startup_to_cleanup() -> None:
    app = example().make_app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        counts = await asyncio.gather(*(client.post(f"/count/k{n % 7}") for n in range(70)))
        answers = [await response.json() for response in counts]
        quick = await (await client.get("/hash", params={"data": "a", "rounds": "10"})).json()
        late = await client.get("/hash", params={"data": "b", "rounds": "4000000"},
                                headers={"X-Request-Timeout": "0.1"})
        late_body = await late.json()
        tree = await (await client.get("/tree")).json()
        system = actorstage.web.system_of(app)
        assert system.running
    assert not system.running  # cleanup stopped it, and its pool processes
    by_key: dict[str, list[int]] = {}
    for answer in answers:
        by_key.setdefault(answer["key"], []).append(answer["count"])
    assert {key: sorted(values) for key, values in by_key.items()} == {
        f"k{n}": list(range(1, 11)) for n in range(7)}
    assert len(quick["digest"]) == 64
    assert late.status == 504 and late_body["error"] == "deadline exceeded"
    pool = next(node for node in tree["children"] if node["name"] == "pool")
    assert quick["pid"] in [node["pid"] for node in pool["children"]]


async def test_handlers_without_the_context_get_a_clear_error() -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        try:
            actorstage.web.system_of(request)
        except LookupError as exc:
            return web.Response(text=str(exc))
        return web.Response(text="found one")

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        text = await (await client.get("/")).text()
    assert "this app has no actor system" in text and "aiohttp_context" in text


async def test_a_setup_that_fails_stops_what_it_started() -> None:
    from aiohttp import web

    started: list[ActorSystem] = []

    async def setup(system: ActorSystem) -> None:
        started.append(system)
        raise RuntimeError("no database")

    app = web.Application()
    app.cleanup_ctx.append(actorstage.web.aiohttp_context(setup))
    server = TestServer(app, host="127.0.0.1")
    with pytest.raises(RuntimeError, match="no database"):
        await server.start_server()
    await server.close()
    assert started and not started[0].running


async def test_the_event_stream_delivers_a_restart_on_aiohttp_too() -> None:
    app = example().make_app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        stream = await client.get("/events")
        assert stream.headers["content-type"] == "text/event-stream"
        assert (await stream.content.readline()).startswith(b":")
        crashed = asyncio.ensure_future(client.post("/pool/crash"))
        kinds = []
        with anyio.fail_after(30):
            async for line in stream.content:
                if line.startswith(b"event: "):
                    kinds.append(line.removeprefix(b"event: ").strip().decode())
                    if kinds[-1] == "restarted":
                        break
        stream.close()
        assert (await (await crashed).json())["crashed"].startswith("hasher in process ")
    assert kinds == ["crashed", "restarted"]
