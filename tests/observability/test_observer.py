"""The live observer: its HTTP API (the tree summarised however large, pages of children,
actions behind a token, the Host check), the ASGI app mounted in FastAPI, and the page in a
real headless Chromium reflecting a crash and its restart within a second."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from actorstage import Actor, ActorSystem, ProcessOptions
from actorstage.observer import observer_app
from actorstage.supervisors import ChildSpec, Strategy, Supervisor
from actorstage.workflows import ActionDef, Runner, StageDef, WorkflowDef
from tests.observability.browser import browser_page

pytestmark = pytest.mark.anyio
ONLY_ASYNCIO = pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")])
ARTIFACTS = Path(os.environ.get("ACTORSTAGE_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts"))


class Worker(Actor):
    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("asked to crash")
        if isinstance(message, anyio.Event):
            await message.wait()
        return message


def _tree() -> list[ChildSpec]:
    return [ChildSpec("workers", Supervisor, kwargs={
        "strategy": Strategy.ONE_FOR_ONE, "max_restarts": 10, "within": 5.0,
        "children": [ChildSpec(f"worker-{number}", Worker) for number in range(1, 4)]})]


async def _app(system: ActorSystem) -> Any:
    return await system.spawn(Supervisor, strategy=Strategy.ONE_FOR_ONE, children=_tree(),
                              name="app")


def _rows(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(row for child in node["children"] for row in _rows(child))]


async def test_the_snapshot_shows_the_tree_with_rates_and_mailboxes() -> None:
    async with ActorSystem() as system, system.observer() as observer, \
            httpx.AsyncClient(base_url=observer.url) as client:
        app = await _app(system)
        worker = system.lookup("/user/app/workers/worker-1")
        assert worker is not None
        gate = anyio.Event()
        await worker.tell(gate)
        for number in range(3):
            await worker.tell(number)  # waiting behind the gate
        await anyio.sleep(1.2)  # two updates
        snapshot = (await client.get("/api/snapshot")).json()
        rows = {row["path"]: row for row in _rows(snapshot["tree"])}
        assert rows["/user/app"]["kind"] == "supervisor"
        assert rows["/user/app/workers/worker-1"]["queued"] == 3
        assert rows["/user/app/workers/worker-1"]["status"] == "running"
        assert snapshot["actors"] == 6 and snapshot["actions"] is False
        gate.set()
        for number in range(120):  # a steady flow through two updates
            await worker.tell(number)
            await anyio.sleep(0.01)
        snapshot = (await client.get("/api/snapshot")).json()
        rows = {row["path"]: row for row in _rows(snapshot["tree"])}
        assert rows["/user/app/workers/worker-1"]["rate"] > 0
        assert (await client.get("/")).text.startswith("<!doctype html>")
        await system.stop(app)


async def test_ten_thousand_actors_are_folded_into_a_bounded_update() -> None:
    async with ActorSystem() as system, system.observer() as observer, \
            httpx.AsyncClient(base_url=observer.url) as client:
        crowd = await system.spawn(Supervisor, strategy=Strategy.ONE_FOR_ONE, name="crowd")
        for number in range(10_000):
            await crowd.start_child(ChildSpec(f"a{number:05}", Worker))
        paused = system.lookup("/user/crowd/a07777")
        assert paused is not None
        await system.pause(paused)  # (listed first: trouble first)
        await anyio.sleep(0.7)
        answer = await client.get("/api/snapshot")
        assert len(answer.content) < 200_000, len(answer.content)
        snapshot = answer.json()
        assert snapshot["actors"] == 10_002
        [crowd_row] = snapshot["tree"]["children"]
        assert len(crowd_row["children"]) == 40
        assert crowd_row["children"][0]["name"] == "a07777"
        assert crowd_row["more"]["count"] == 10_000 - 40
        assert crowd_row["more"]["by_status"] == {"running": 10_000 - 40}
        page = (await client.get("/api/children", params={
            "path": "/user/crowd", "offset": 9_990, "limit": 50})).json()
        assert page["total"] == 10_000 and len(page["children"]) == 10
        assert (await client.get("/api/children", params={"path": "/user/nobody"})
                ).status_code == 404


async def test_actions_need_the_token_and_the_host_must_be_this_server() -> None:
    async with ActorSystem() as system:
        await _app(system)
        path = "/user/app/workers/worker-2"
        async with system.observer() as observer, \
                httpx.AsyncClient(base_url=observer.url) as client:
            refused = await client.post("/api/pause", params={"path": path})
            assert refused.status_code == 403 and "actions are off" in refused.json()["error"]
        async with system.observer(token="s3cret") as observer, \
                httpx.AsyncClient(base_url=observer.url) as client:
            wrong = await client.post("/api/pause", params={"path": path},
                                      headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            bearer = {"Authorization": "Bearer s3cret"}
            assert (await client.post("/api/pause", params={"path": path},
                                      headers=bearer)).status_code == 204
            node = system.tree().find(path)
            assert node is not None and node.status.value == "paused"
            assert (await client.post("/api/resume", params={"path": path},
                                      headers=bearer)).status_code == 204
            assert (await client.post("/api/restart", params={"path": path},
                                      headers=bearer)).status_code == 204
            node = system.tree().find(path)
            assert node is not None and node.restarts == 1 and node.status.value == "running"
            assert (await client.post("/api/stop", params={"path": path},
                                      headers=bearer)).status_code == 204
            assert system.lookup(path) is None
            assert (await client.post("/api/explode", params={"path": "/user/app"},
                                      headers=bearer)).status_code == 404
            rebound = await client.get("/api/snapshot", headers={"Host": "attacker.example"})
            assert rebound.status_code == 421
            huge = await client.get("/api/snapshot", headers={"X-Big": "x" * 20_000})
            assert huge.status_code == 413


async def test_executions_and_pipeline_nodes_are_in_the_update() -> None:
    from tests.pipelines import nodes  # (registers the test nodes)
    from tests.pipelines.helpers import node, pipeline

    gate = nodes.GATES["observed"] = asyncio.Event()
    waiting = WorkflowDef(id="waiting", stages=[StageDef(id="s", actions=[
        ActionDef(id="first", action="store.set", params={"key": "k", "value": 1}),
        ActionDef(id="nap", action="sleep", params={"seconds": 30})])])
    async with Runner() as runner, runner.system.observer() as observer, \
            httpx.AsyncClient(base_url=observer.url) as client:
        execution = await runner.start(waiting)
        pipe = pipeline([node("gate", "test.Gated", gate="observed"),
                         node("after", "test.Double")], [("gate", "after")])
        async with pipe.session(runner.system) as session:
            await session.feed(range(5))
            await anyio.sleep(1.2)
            snapshot = (await client.get("/api/snapshot")).json()
            gate.set()
            session.close_input()
            outputs = [output async for output in session.outputs()]
        assert len(outputs) == 5
        [row] = [row for row in snapshot["executions"] if row["id"] == execution.id]
        assert row["status"] == "running" and row["current"] == "s/nap"
        assert row["steps"] == 1
        [session_row] = snapshot["pipelines"]
        gate_row, after_row = session_row["nodes"]
        assert (gate_row["id"], gate_row["items"], gate_row["queue"]) == ("gate", 5, 0)
        assert (after_row["id"], after_row["items"]) == ("after", 0)
        await execution.cancel()
        await execution.result()


async def test_the_observer_mounts_in_a_fastapi_app() -> None:
    from fastapi import FastAPI

    async with ActorSystem() as system:
        await _app(system)
        app = FastAPI()
        app.mount("/observer", observer_app(system))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://backend") as client:
            page = await client.get("/observer/")
            assert page.status_code == 200 and "actorstage observer" in page.text
            snapshot = (await client.get("/observer/api/snapshot")).json()
            assert "/user/app/workers/worker-3" in {row["path"]
                                                    for row in _rows(snapshot["tree"])}
            refused = await client.post("/observer/api/stop",
                                        params={"path": "/user/app/workers/worker-3"})
            assert refused.status_code == 403


@ONLY_ASYNCIO
async def test_the_page_in_a_real_browser_shows_a_crash_and_its_restart_within_a_second(
        ) -> None:
    async with ActorSystem() as system:
        await _app(system)
        await system.spawn(Worker, name="elsewhere", process=ProcessOptions(start="spawn"))
        async with system.observer(token="watch") as observer, \
                browser_page(observer.url + "#token=watch") as page:
            await page.wait_for("document.body.dataset.ready === '1'")
            chosen = "/user/app/workers/worker-2"
            row = f"document.querySelector('.row[data-path=\"{chosen}\"]')"
            await page.wait_for(f"{row} !== null")
            assert await page.evaluate(f"{row}.dataset.status") == "running"
            pid = await page.evaluate(
                "document.querySelector('.row[data-path=\"/user/elsewhere\"] .pid').textContent")
            assert pid and int(pid) != os.getpid()
            worker = system.lookup(chosen)
            assert worker is not None
            crashed_at = time.monotonic()
            with pytest.raises(Exception, match="asked to crash"):
                await worker.ask("crash")
            crash = f"#log .entry[data-kind=\"crashed\"][data-path=\"{chosen}\"]"
            restart = f"#log .entry[data-kind=\"restarted\"][data-path=\"{chosen}\"]"
            await page.wait_for(f"document.querySelector('{crash}') !== null && "
                                f"document.querySelector('{restart}') !== null && "
                                f"{row}.querySelector('.restarts').textContent === '1'",
                                within=5.0)
            seen = time.monotonic() - crashed_at
            assert seen < 1.0, f"the page showed the crash and restart {seen:.2f}s after it"
            traceback = await page.evaluate(
                f"document.querySelector('{crash} pre').textContent")
            assert "RuntimeError: asked to crash" in traceback
            # an action from the page: pause the chosen actor with its button
            await page.evaluate(f"{row}.querySelector('button[data-act=\"pause\"]').click()")
            await page.wait_for(f"{row}.dataset.status === 'paused'")
            node = system.tree().find(chosen)
            assert node is not None and node.status.value == "paused"
            await page.evaluate(f"document.querySelector('{crash} details').open = true")
            await page.screenshot(ARTIFACTS / "observer.png")
    assert (ARTIFACTS / "observer.png").stat().st_size > 10_000



async def test_the_runner_service_serves_the_observer_with_its_executions() -> None:
    from grpclib.client import Channel

    from actorstage.service import ExecuteRequest, RunnerStub, ServiceConfig, open_service
    from tests.service.helpers import long

    async with open_service(ServiceConfig(port=0, observer_port=0)) as server:
        assert server.observer_port is not None
        channel = Channel("127.0.0.1", server.port)
        try:
            await RunnerStub(channel).execute_async(ExecuteRequest(
                execution_id="watched", workflow=long(30)))
            async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{server.observer_port}") as client:
                for _ in range(50):
                    rows = (await client.get("/api/snapshot")).json()["executions"]
                    if rows and rows[0]["current"] == "main/nap":
                        break
                    await anyio.sleep(0.1)
                [row] = [row for row in rows if row["id"] == "watched"]
                assert (row["status"], row["current"], row["steps"]) == ("running",
                                                                         "main/nap", 1)
        finally:
            channel.close()


async def test_the_observer_mounts_in_an_aiohttp_app() -> None:
    from aiohttp import web

    from actorstage.observer import aiohttp_observer

    async with ActorSystem() as system:
        await _app(system)
        app = web.Application()
        app.add_subapp("/observer/", aiohttp_observer(system))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                page = await client.get("/observer/")
                assert page.status_code == 200 and "actorstage observer" in page.text
                snapshot = (await client.get("/observer/api/snapshot")).json()
                assert "/user/app/workers/worker-1" in {row["path"]
                                                        for row in _rows(snapshot["tree"])}
                async with client.stream("GET", "/observer/events") as events:
                    async for line in events.aiter_lines():
                        if line == "event: tick":
                            break
        finally:
            await runner.cleanup()
