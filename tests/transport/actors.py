"""Actors and messages the process-actor tests start in child processes."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Literal

from actorstage import Actor, ActorRef, MailboxFullError, Message, ProcessOptions


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
        if message == "has-parent":
            return self.context.parent is not None
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
                Path(message[2]).write_text("cancelled")
                raise
            return "slept"
        if isinstance(message, list) and message[:1] == ["block"]:
            Path(message[1]).write_text("running")
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

    def __init__(self, start: Literal["spawn", "forkserver"] = "spawn") -> None:
        self.start: Literal["spawn", "forkserver"] = start

    async def on_start(self) -> None:
        self.child = await self.context.spawn(
            Counter, name="grandchild", process=ProcessOptions(
                heartbeat_interval=0.2, heartbeat_timeout=2.0,
                start=self.start))

    async def receive(self, message: Any) -> Any:
        if message == "pids":  # this process, its parent, the grandchild and its parent
            return [os.getpid(), os.getppid(), await self.child.ask("pid"),
                    await self.child.ask("ppid")]
        return await self.child.ask(message)


class Garbage(Actor):
    """Writes bytes that are not a frame into its own bridge stream."""

    async def receive(self, message: Any) -> Any:
        from actorstage.transport import _child_end

        end = _child_end.CURRENT
        assert end is not None and end.link is not None
        stream: Any = getattr(end.link.conn, "_stream")  # noqa: B009 - private on purpose
        if isinstance(message, int):  # a frame of that many bytes (past the parent's limit)
            await stream.send_message(b"\x12" + b"x" * (message - 1))
        else:
            await stream.send_message(b"\xff\xfe not a frame")
        return None


class Reporter(Actor):
    """Runs in a child process and sends messages to its parent actor."""

    async def receive(self, message: Any) -> Any:
        parent = self.context.parent
        assert parent is not None
        if isinstance(message, list) and message[:1] == ["flood"]:
            _, count, progress = message
            for number in range(count):
                await parent.tell(Add(number))
                Path(progress).write_text(str(number + 1))
            return count
        if message == "ask-parent":
            return f"{await parent.ask('name')} answered {os.getpid()}"
        return message


class Boss(Actor):
    """A local actor whose process child (a Reporter) sends it messages."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def on_start(self) -> None:
        self.child = await self.context.spawn(
            Reporter, name="reporter",
            process=ProcessOptions(heartbeat_interval=0.2, heartbeat_timeout=1.5))

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Add):
            await self.gate.wait()
            self.received.append(message.amount)
            return None
        if message == "name":
            return "boss"
        if message == "received":
            return self.received
        if isinstance(message, list):
            await self.child.tell(message)
        return None


class Resetter(Actor):
    """Resets its own bridge stream (an HTTP/2 RST_STREAM), or closes the whole connection."""

    async def receive(self, message: Any) -> Any:
        from actorstage.transport import _child_end

        end = _child_end.CURRENT
        assert end is not None and end.link is not None
        conn: Any = end.link.conn
        if message == "reset":
            await conn._stream.cancel()
        elif message == "goaway":
            conn._channel.close()
        return message


def _busy(how: str) -> None:
    """Keep this process's only thread from the event loop: ``sleep`` or ``spin`` (GIL held)."""
    if how == "sleep":
        time.sleep(3600)
    elif how == "spin":
        sum(range(10**15))  # one C call that never releases the GIL nor checks for signals


class Busy(Actor):
    """Blocks its process on request, as CPU-heavy or careless handlers do."""

    async def receive(self, message: Any) -> Any:
        if message == "pid":
            return os.getpid()
        if isinstance(message, list) and message[:1] == ["busy"]:
            _busy(message[1])
        return message


class BusyParent(Actor):
    """A process actor with a process child of its own; both block on request."""

    def __init__(self, start: Literal["spawn", "forkserver"] = "spawn") -> None:
        self.start: Literal["spawn", "forkserver"] = start

    async def on_start(self) -> None:
        self.child = await self.context.spawn(
            Busy, name="grandchild", process=ProcessOptions(start=self.start))

    async def receive(self, message: Any) -> Any:
        if message == "pids":
            return [os.getpid(), await self.child.ask("pid")]
        if isinstance(message, list) and message[:1] == ["busy"]:
            await self.child.ask(["started"])  # (the child is up and answering)
            await self.child.tell(message)
            await asyncio.sleep(0.2)  # the child has begun its blocking call
            _busy(message[1])
        return message


class Color(enum.Enum):
    """Values of these types cross the boundary in the type tests."""

    RED = "red"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: tuple[int, int]


class Stamped(Message, frozen=True):
    when: datetime.datetime
    pair: tuple[int, int]
    extra: Any = None  # declares nothing: its value keeps its type all the same


class Packed(Message, frozen=True, array_like=True):
    """Sent as an array, with a field typed ``Any``: it keeps its values' types too."""

    name: str
    extra: Any = None


class PackedTagged(Message, frozen=True, array_like=True, tag=True):
    name: str
    extra: Any = None


class Blob(Message, frozen=True):
    """A typed bytes field: a large one goes through shared memory all the same."""

    label: str
    data: bytes


class Mirror(Actor):
    """Answers with what it is sent (arrays too); a str is a command."""

    async def receive(self, message: Any) -> Any:
        if isinstance(message, str) and message == "pid":
            return os.getpid()
        if isinstance(message, list) and message[:1] == ["big"]:  # a large reply of its own
            return bytes([message[1]]) * message[2]
        return message


class Forward(Message, frozen=True):
    """Ask ``target`` (a ref that travelled here) ``payload``, and answer with its reply."""

    target: ActorRef
    payload: Any = None


class TellTo(Message, frozen=True):
    target: ActorRef[Any, Any]  # (a typed ref's field travels as a bare one does)
    payload: Any = None


class Relay(Actor):
    """Uses the refs it is sent: asks and tells them, hands out refs of its own."""

    def __init__(self, peer: ActorRef | None = None) -> None:
        self.peer = peer

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Forward):
            return await message.target.ask(message.payload)
        if isinstance(message, TellTo):
            await message.target.tell(message.payload)
            return "told"
        if message == "me":
            return self.context.self_ref
        if message == "peer":
            return self.peer
        if message == "ask-peer":
            assert self.peer is not None
            return await self.peer.ask("pid")
        if isinstance(message, list) and message[:1] == ["spawn"]:
            process = ProcessOptions() if message[1] == "process" else None
            return await self.context.spawn(Counter, name=message[2], process=process)
        if message == "pid":
            return os.getpid()
        if isinstance(message, list) and message[:1] == ["register"]:  # as itself, or a ref
            target = message[2] if len(message) > 2 else self.context.self_ref
            await self.context.system.register(message[1], target)
            return "registered"
        if isinstance(message, list) and message[:1] == ["whereis"]:
            return await self.context.system.whereis(message[1])
        if isinstance(message, list) and message[:1] == ["find"]:
            return await self.context.system.find(message[1])
        if message == "direct-links":  # the processes this one has a direct link to
            node = self.context.system._node()
            return sorted(root for root, link in node.peers.items() if link is not node.up)
        if isinstance(message, list) and message[:1] == ["prepare"]:  # then what is open
            await message[1].prepare()
            return await self.receive("direct-links")
        if isinstance(message, list) and message[:1] == ["flood-in-background"]:
            _, target, count = message
            self.told = 0

            async def flood() -> None:
                for number in range(count):
                    await target.tell(Add(number))
                    self.told += 1

            self.flooding = asyncio.ensure_future(flood())
            return None
        if message == "told":  # how many of those tells have returned so far
            return self.told
        if isinstance(message, list) and message[:1] == ["flood-nowait"]:
            _, target, count = message
            for number in range(count):
                try:
                    target.tell_nowait(Add(number))
                except MailboxFullError as exc:
                    return [number, exc.capacity]
            return [count, 0]
        if isinstance(message, list) and message[:1] == ["flood"]:  # tells, right away
            _, target, count = message
            for number in range(count):
                await target.tell(Add(number))
            return await target.ask("seen")  # after them: the same sender, in order
        return message
