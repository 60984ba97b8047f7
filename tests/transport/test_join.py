"""A process actor whose process something else starts: it joins with a bundle from its
environment (``actorstage join``), over TCP with TLS, and is then an ordinary process actor:
asked, restarted by policy when killed (its placement launches another), stopped."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actorstage import (
    Actor,
    ActorCrashedError,
    ActorSystem,
    ChildSpec,
    JoinPlacement,
    ProcessOptions,
    Strategy,
    Supervisor,
)
from tests.transport.conftest import descendants

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


class Where(Actor):
    async def receive(self, message: Any) -> Any:
        if isinstance(message, bytes):
            return len(message), message[-3:]
        return message, os.getpid()


class Launcher:
    """Starts ``actorstage join`` as a process of the test's own, the bundle in its
    environment (as a container runtime or Ray would); keeps what it started."""

    def __init__(self, tamper: bool = False) -> None:
        self.tamper = tamper
        self.started: list[asyncio.subprocess.Process] = []

    async def __call__(self, bundle: str) -> Any:
        if self.tamper:  # the right address and token, a wrong secret
            boot = json.loads(base64.urlsafe_b64decode(bundle))
            boot["secret"] = "not-the-secret"
            bundle = base64.urlsafe_b64encode(json.dumps(boot).encode()).decode()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "actorstage", "join", cwd=ROOT,
            env={**os.environ, "ACTORSTAGE_JOIN": bundle, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL)
        self.started.append(process)
        return process


async def test_a_joined_process_actor_answers_and_stops_with_its_process() -> None:
    launcher = Launcher()
    options = ProcessOptions(transport="tcp", tls=True, placement=JoinPlacement(launcher))
    async with ActorSystem() as system:
        where = await system.spawn(Where, name="there", process=options)
        [process] = launcher.started
        assert await where.ask("hi") == ("hi", process.pid)
        node = system.tree().find("/user/there")
        assert node is not None and node.pid == process.pid
        payload = bytes(1024 * 1024) + b"end"  # inline: no shared memory with it
        assert await where.ask(payload) == (len(payload), b"end")
        await system.stop(where)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    from actorstage.transport._payloads import ARENA

    assert not ARENA.off  # (shared memory again, once no system here has placed a process)


async def test_a_killed_joined_process_is_launched_again_by_its_supervisor() -> None:
    launcher = Launcher()
    options = ProcessOptions(transport="tcp", tls=True, placement=JoinPlacement(launcher),
                             heartbeat_interval=0.2, heartbeat_timeout=2.0)
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="app", strategy=Strategy.ONE_FOR_ONE,
                           children=[ChildSpec("there", Where, process=options)])
        path = "/user/app/there"
        where = system.lookup(path)
        assert where is not None
        [first] = launcher.started
        first.send_signal(signal.SIGKILL)  # (ours: the test started it)
        await first.wait()
        for _ in range(200):
            node = system.tree().find(path)
            if len(launcher.started) == 2 and node is not None and node.restarts == 1 \
                    and node.status.value == "running":
                break
            await asyncio.sleep(0.05)
        second = launcher.started[1]
        assert await where.ask("again") == ("again", second.pid)
        assert second.pid != first.pid


async def test_a_process_with_a_wrong_secret_is_refused_and_the_spawn_fails() -> None:
    launcher = Launcher(tamper=True)
    options = ProcessOptions(transport="tcp", tls=True, placement=JoinPlacement(launcher),
                             start_timeout=10)
    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError, match=r"before it connected|did not join"):
            await system.spawn(Where, name="impostor", process=options)
        bridge = system._bridges[("tcp", "127.0.0.1", True)]
        assert bridge.refused >= 1
        [process] = launcher.started
        assert await asyncio.wait_for(process.wait(), 10) != 0


async def test_a_placement_needs_tcp() -> None:
    from actorstage.exceptions import InvalidDefinitionError

    with pytest.raises(InvalidDefinitionError, match="placement needs transport='tcp'"):
        ProcessOptions(placement=JoinPlacement(Launcher()))


def _join(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actorstage", "join"], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL, cwd=ROOT)


async def test_join_without_a_bundle_says_what_is_missing() -> None:
    before = descendants()
    env = {key: value for key, value in os.environ.items() if key != "ACTORSTAGE_JOIN"}
    missing = await asyncio.to_thread(_join, env)
    assert missing.returncode == 2 and "no join bundle ($ACTORSTAGE_JOIN" in missing.stderr
    garbage = await asyncio.to_thread(_join, dict(env, ACTORSTAGE_JOIN="bm90IGpzb24="))
    assert garbage.returncode == 2 and "not a join bundle of actorstage" in garbage.stderr
    assert descendants() <= before
