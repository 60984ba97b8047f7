"""Node types for the tests; a module, so node processes can import them."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from actorstage.pipelines import Node, register_node, register_remotemedia_node

GATES: dict[str, asyncio.Event] = {}  # native tests open a gate to let a node go on
TAKEN: dict[str, int] = {}


class Tagged(msgspec.Struct, frozen=True):
    source: str
    value: int


class Packet(msgspec.Struct, frozen=True):
    """An item with a binary part large enough for shared memory, and a small one."""

    label: str
    data: bytes
    note: bytes = b""


class TagParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tag: str


@register_node("test.Tag")
class Tag(Node):
    """Wraps each int as ``Tagged(tag, value)``."""

    Params = TagParams

    async def process(self, item: int) -> Tagged:
        return Tagged(self.params.tag, item)


@register_node("test.Double")
class Double(Node):
    async def process(self, item: Any) -> Any:
        if isinstance(item, Tagged):
            return Tagged(item.source, item.value * 2)
        return item * 2


class CountParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    counter: str = ""  # a file the node writes its count of emitted items to


@register_node("test.Ticker")
class Ticker(Node):
    """Yields ``0..item-1`` for an int input; records how many it produced."""

    Params = CountParams

    async def setup(self) -> None:
        self.produced = 0

    async def process(self, item: int) -> AsyncIterator[int]:
        for value in range(item):
            self.produced += 1
            TAKEN["ticker"] = self.produced
            if self.params.counter:
                Path(self.params.counter).write_text(str(self.produced))
            yield value


class GateParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    gate: str = "sink"


@register_node("test.Gated")
class Gated(Node):
    """Takes one item, then waits for ``GATES[gate]`` (native only); counts in TAKEN."""

    Params = GateParams

    async def process(self, item: Any) -> Any:
        TAKEN[self.params.gate] = TAKEN.get(self.params.gate, 0) + 1
        await GATES[self.params.gate].wait()
        return item


class CrashParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    on: int = -1  # the input value that kills the process, or raises with `raise_it`
    raise_it: bool = False
    once_file: str = ""  # when set, the crash happens only if this file does not exist yet


@register_node("test.Crash")
class Crash(Node):
    """Passes ints on; on the value ``on`` kills its own process (SIGKILL) or raises."""

    Params = CrashParams

    async def process(self, item: int) -> int:
        if item == self.params.on:
            if self.params.raise_it:
                raise ValueError(f"cannot take {item}")
            once = self.params.once_file
            if not once or not os.path.exists(once):
                if once:
                    Path(once).write_text("crashed")
                os.kill(os.getpid(), signal.SIGKILL)
        return item


class SlowSetupParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    seconds: float = 30.0


@register_node("test.SlowSetup")
class SlowSetup(Node):
    Params = SlowSetupParams

    async def setup(self) -> None:
        await asyncio.sleep(self.params.seconds)

    async def process(self, item: Any) -> Any:
        return item


@register_node("test.BlockingSetup")
class BlockingSetup(Node):
    """Blocks its event loop in setup: only the process start timeout can end it."""

    async def setup(self) -> None:
        time.sleep(60)

    async def process(self, item: Any) -> Any:
        return item


@register_node("test.Pid")
class Pid(Node):
    """Answers each item with the pid of the process it runs in."""

    async def process(self, item: Any) -> int:
        return os.getpid()


class HoldParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str  # a file that appears once an item is in hand


@register_node("test.Hold")
class Hold(Node):
    """Writes ``path`` when it holds a large item, then waits forever (to be killed)."""

    Params = HoldParams

    async def process(self, item: Any) -> Any:
        Path(self.params.path).write_text(str(len(item)))
        await asyncio.Event().wait()
        return item


@register_node("test.Spin")
class Spin(Node):
    """Writes ``path`` when it holds an item, then blocks its process in one long C call."""

    Params = HoldParams

    async def process(self, item: Any) -> Any:
        Path(self.params.path).write_text(str(len(item)))
        sum(range(10**15))  # holds the GIL, never checks for signals
        return item


@register_node("test.Size")
class Size(Node):
    """Answers each binary item with its type name and length."""

    async def process(self, item: Any) -> list[Any]:
        return [type(item).__name__, len(item), bytes(item[:4])]


class RemoteMediaStyleNode:
    """A node written for RemoteMedia (its Python node shape), untouched: built from a
    config dict, async initialize, process (here an async generator) and cleanup."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.node_id = config["node_id"]
        self.node_type = config["node_type"]
        self.config = config.get("params", {})
        self.session_id = config.get("session_id") or f"default_{self.node_id}"
        self.ready = False

    async def initialize(self) -> None:
        self.ready = True
        self.repeat = int(self.config.get("repeat", 1))
        if self.config.get("log"):
            Path(self.config["log"]).write_text(f"initialized {self.node_id} "
                                                f"{self.node_type} {self.session_id}\n")

    async def process(self, data: Any) -> AsyncIterator[Any]:
        assert self.ready, "process before initialize"
        for _ in range(self.repeat):
            yield {"node": self.node_id, "got": data}

    async def cleanup(self) -> None:
        if self.config.get("log"):
            log = Path(self.config["log"])
            log.write_text(log.read_text() + "cleaned up\n")


register_remotemedia_node("test.RemoteMediaStyle", RemoteMediaStyleNode)


@register_node("test.Links")
class Links(Node):
    """Answers each item with the processes its own process has a direct link to."""

    async def process(self, item: Any) -> list[str]:
        from actorstage.actors._cell import acting_cell

        cell = acting_cell()
        assert cell is not None
        router = cell.system._node()
        return sorted(root for root, link in router.peers.items() if link is not router.up)
