"""The FastAPI example under a real uvicorn process on a loopback port, with a real HTTP
client: counters across many keys, the process pool, deadlines, SIGTERM, a failed start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.service.helpers import alive

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "examples" / "web_fastapi"


class Server:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "Uvicorn running on " in line:
                self.url = line.split("Uvicorn running on ", 1)[1].split()[0]
                self.ready.set()
        self.ready.set()  # it ended

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit status: after a graceful shutdown, uvicorn ends by the
        signal it was sent (-SIGTERM), as a supervisor expects."""
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"uvicorn did not stop within {timeout}s of SIGTERM:\n"
                                 f"{self.log()}") from None
        self.close()
        return status

    def close(self) -> None:
        """Once the process has ended: the rest of its output, and its pipe closed."""
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start(env: dict[str, str] | None = None) -> Server:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(APP_DIR), "--host",
         "127.0.0.1", "--port", "0", "--timeout-graceful-shutdown", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})})
    server = Server(process)
    server.ready.wait(60)
    return server


@contextmanager
def serving() -> Iterator[tuple[Server, httpx.Client]]:
    server = start()
    try:
        assert server.url, f"uvicorn did not start:\n{server.log()}"
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield server, client
    finally:
        if server.process.poll() is None:
            status = server.stop()
            assert status == -signal.SIGTERM, server.log()
            assert "Finished server process" in server.log()
        server.close()


def pool_pids(client: httpx.Client) -> list[int]:
    tree = client.get("/tree").json()
    pool = next(node for node in tree["children"] if node["name"] == "pool")
    return [node["pid"] for node in pool["children"]]


def test_concurrent_requests_across_many_keys_count_right() -> None:
    keys = [f"key-{n}" for n in range(40)]
    with serving() as (_server, client), ThreadPoolExecutor(16) as threads:
        answers = list(threads.map(
            lambda key: client.post(f"/count/{key}").json(), [k for k in keys for _ in range(5)]))
        tree = client.get("/tree").json()
    counts: dict[str, list[int]] = {}
    for answer in answers:
        counts.setdefault(answer["key"], []).append(answer["count"])
    assert {key: sorted(values) for key, values in counts.items()} == {
        key: [1, 2, 3, 4, 5] for key in keys}  # no count lost, none repeated
    counters = next(node for node in tree["children"] if node["name"] == "counters")
    assert len(counters["children"]) == len(keys)  # one actor per key


def test_the_pool_answers_while_another_request_is_in_flight() -> None:
    with serving() as (_server, client), ThreadPoolExecutor(2) as threads:
        slow = threads.submit(client.get, "/hash", params={"data": "slow", "rounds": 4_000_000})
        time.sleep(0.3)  # the slow one is being hashed in one pool process
        began = time.monotonic()
        quick = client.get("/hash", params={"data": "quick", "rounds": 10})
        counted = client.post("/count/while-busy")
        quick_seconds = time.monotonic() - began
        assert not slow.done(), "the slow hash ended before the quick one was asked"
        slow_answer = slow.result(60).json()
        pids = pool_pids(client)
    assert quick.status_code == 200 and counted.json()["count"] == 1
    assert quick.json()["pid"] != slow_answer["pid"]
    assert {quick.json()["pid"], slow_answer["pid"]} == set(pids)
    assert quick_seconds < 2.0, quick_seconds


def test_a_request_past_its_deadline_gets_504_naming_what_did_not_answer() -> None:
    with serving() as (_server, client):
        answer = client.get("/hash", params={"data": "x", "rounds": 4_000_000},
                            headers={"X-Request-Timeout": "0.1"})
        refused = client.post("/count/a", headers={"X-Request-Timeout": "soon"})
    assert answer.status_code == 504
    body = answer.json()
    assert body["error"] == "deadline exceeded" and body["timeout_seconds"] == 0.1
    assert body["detail"].startswith("pool worker hasher-")
    assert body["detail"].endswith("did not answer within 0.1 s")
    assert refused.status_code == 400 and "X-Request-Timeout" in refused.json()["detail"]


def test_a_crashed_counter_is_restarted_by_its_supervisor() -> None:
    with serving() as (_server, client):
        client.post("/count/c")
        crashed = client.post("/count/c/crash").json()
        again = client.post("/count/c").json()
        tree = client.get("/tree").json()
    assert crashed["crashed"] == "counter 'c' crashed on purpose"
    assert again["count"] == 1  # a new incarnation, from zero
    counters = next(node for node in tree["children"] if node["name"] == "counters")
    assert counters["children"][0]["restarts"] == 1


def test_the_event_stream_delivers_a_restart_when_a_worker_crashes_on_purpose() -> None:
    with serving() as (_server, client), ThreadPoolExecutor(1) as threads:
        events: list[tuple[str, dict[str, Any]]] = []
        with client.stream("GET", "/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines).startswith(":")  # the stream is open: now crash a worker
            crashed = threads.submit(client.post, "/pool/crash")
            kind = ""
            for line in lines:
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line.removeprefix("data: "))))
                    if kind == "restarted":
                        break
        answer = crashed.result(30).json()
    worker = f"/user/pool/{answer['worker']}"
    assert answer["crashed"].startswith("hasher in process ")
    assert [(kind, event["path"]) for kind, event in events] == [
        ("crashed", worker), ("restarted", worker)]
    crash, restart = events[0][1], events[1][1]
    assert crash["error"].startswith("RuntimeError: hasher in process ")
    assert restart["restarts"] == 1 and restart["pid"] != crash["pid"]  # a new process


def test_sigterm_stops_the_app_and_every_child_process() -> None:
    server = start()
    try:
        assert server.url, server.log()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            pids = pool_pids(client)
            assert len(pids) == 2 and all(alive(pid) for pid in pids)
        began = time.monotonic()
        status = server.stop()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.close()
    assert status == -signal.SIGTERM, server.log()
    assert time.monotonic() - began < 15  # within the grace period (10 s) and then some
    assert not any(alive(pid) for pid in pids)
    assert "Application shutdown complete." in server.log()


def test_an_actor_failing_in_on_start_fails_the_app_start_with_its_error() -> None:
    server = start({"WEB_EXAMPLE_FAIL_ON_START": "1"})
    try:
        status = server.process.wait(60)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.close()
    log = server.log()
    assert status == 3, log  # uvicorn's exit status for a failed startup
    assert not server.url, "the app started after all"
    assert "the broken worker cannot reach its database" in log
    assert "Application startup failed" in log


