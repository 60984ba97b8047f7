"""Actors and messages the process-actor tests start in child processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from actorstage import Actor, Message, ProcessOptions


class Add(Message, frozen=True):
    amount: int


class Total(Message, frozen=True):
    value: int
    pid: int


class Config(Message, frozen=True):
    start: int
    label: str


class Counter(Actor):
    """Counts; answers what it is asked; fails, exits or logs on request."""

    def __init__(self, config: Config | None = None, *, gate: str = "") -> None:
        self.total = config.start if config is not None else 0
        self.label = config.label if config is not None else ""
        self.seen: list[int] = []
        self.gate = gate

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Add):
            self.total += message.amount
            self.seen.append(message.amount)
            return Total(self.total, os.getpid())
        if message == "total":
            return Total(self.total, os.getpid())
        if message == "seen":
            return self.seen
        if message == "pid":
            return os.getpid()
        if message == "ppid":
            return os.getppid()
        if message == "label":
            return self.label
        if message == "crash":
            raise ValueError("asked to crash")
        if message == "sys.exit":
            sys.exit(3)
        if message == "os._exit":
            os._exit(4)
        if message == "kill-self":
            os.kill(os.getpid(), signal.SIGKILL)
        if message == "log":
            logging.getLogger("tests.child").warning("a warning from the child")
            print("a line printed by the child", flush=True)
            return None
        if message == "stop-self":
            self.context.stop()
            return None
        if isinstance(message, list) and message[:1] == ["sleep"]:
            try:
                await asyncio.sleep(message[1])
            except asyncio.CancelledError:
                Path(message[2]).write_text("cancelled")  # noqa: ASYNC240 - a tiny marker
                raise
            return "slept"
        if isinstance(message, list) and message[:1] == ["block"]:
            Path(message[1]).write_text("running")  # noqa: ASYNC240 - tells the test it runs
            await asyncio.sleep(message[2])
            return "unblocked"
        return message


class FailsToStart(Actor):
    async def on_start(self) -> None:
        raise RuntimeError("cannot start here")

    async def receive(self, message: Any) -> Any:
        return message


class Parent(Actor):
    """Spawns a process child of its own (a grandchild of the test)."""

    async def on_start(self) -> None:
        self.child = await self.context.spawn(
            Counter, name="grandchild", process=ProcessOptions(heartbeat_interval=0.2,
                                                               heartbeat_timeout=2.0))

    async def receive(self, message: Any) -> Any:
        if message == "pids":
            return [os.getpid(), await self.child.ask("pid")]
        return await self.child.ask(message)


class Garbage(Actor):
    """Writes bytes that are not a frame into its own bridge stream."""

    async def receive(self, message: Any) -> Any:
        from actorstage.transport import _child_end

        end = _child_end.CURRENT
        assert end is not None and end.link is not None
        stream: Any = getattr(end.link.conn, "_stream")  # noqa: B009 - private on purpose
        await stream.send_message(b"\xff\xfe not a frame")
        return None
