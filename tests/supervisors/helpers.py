"""Test actors and waits shared by the supervision tests."""

from __future__ import annotations

import asyncio
from typing import Any

from actorstage import Actor, ActorSystem
from actorstage.actors._cell import RUNNING
from actorstage.actors._lifecycle import walk
from actorstage.testing import wait_until


class Worker(Actor):
    """Logs 'start X' and 'stop X'.

    'crash' raises, 'exit' exits normally, an ``asyncio.Event`` raises once
    it is set; ``control["fail_start"] = n`` fails the next n starts.
    """

    def __init__(self, log: list[str], tag: str, control: dict[str, Any] | None = None) -> None:
        self.log = log
        self.tag = tag
        self.control = control if control is not None else {}

    async def on_start(self) -> None:
        if self.control.get("fail_start"):
            self.control["fail_start"] -= 1
            raise RuntimeError(f"{self.tag} cannot start")
        self.log.append(f"start {self.tag}")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.tag}")

    async def receive(self, message: Any) -> Any:
        if isinstance(message, asyncio.Event):
            await message.wait()
            raise RuntimeError(f"{self.tag} crashed on release")
        if message == "crash":
            raise RuntimeError(f"{self.tag} crashed")
        if message == "exit":
            self.context.stop()
        return (self.tag, message)


async def settle(system: ActorSystem) -> None:
    """Wait until no control work is pending anywhere and every actor is running."""
    root = system._guardian()

    def quiet() -> bool:
        cells = list(walk(root))
        return not any(c.lane_running for c in cells) and all(c.state == RUNNING for c in cells)

    await wait_until(quiet)
