"""Large payloads cross between processes through shared memory, and keep their type."""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any

import anyio
import msgspec
import pytest

from actorstage import ActorSystem, _shm
from actorstage.transport._payloads import ARENA, THRESHOLD, prefix_of
from tests.transport.actors import Blob, Forward, Mirror, Relay
from tests.transport.helpers import FAST

np = pytest.importorskip("numpy")
pytestmark = pytest.mark.anyio

BIG = THRESHOLD + 12345  # (odd, and not a multiple of a page)


@dataclasses.dataclass(frozen=True)
class Frame:
    name: str
    pixels: Any


def _slots(pid: int) -> list[str]:
    return _shm.segments(prefix_of(pid))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and bool((a == b).all()))
    return type(a) is type(b) and a == b


async def test_large_payloads_cross_through_shared_memory_and_keep_their_type() -> None:
    async with ActorSystem() as system:
        child = await system.spawn(Mirror, name="echo", process=FAST)
        data = os.urandom(BIG)
        image = np.arange(BIG // 28 * 7, dtype=np.float64).reshape(-1, 7)[:, ::2]  # strided
        small = np.array([[1, 2], [3, 4]], dtype=np.int16)
        puts = ARENA.puts
        for value in (data, bytearray(data), image, small, [data, {"k": bytearray(b"x")}],
                      Blob("typed", data), Frame("f", image), (1, data)):
            back = await child.ask(value)  # the child answers with what it got
            if isinstance(value, list | tuple):
                assert type(back) is type(value)
                assert all(_same(a, b) for a, b in zip(value, back, strict=True))
            elif isinstance(value, Frame):
                assert type(back) is Frame and back.name == "f" and _same(back.pixels, image)
            else:
                assert _same(value, back), type(back)
        assert np.asarray(await child.ask(memoryview(data))).tobytes() == data  # (bytes)
        assert ARENA.puts - puts >= 8  # they went through shared memory, not the stream
        own = _slots(os.getpid())
        assert 1 < len(own) <= 4  # the slots are reused: a few, not one per payload
        child_pid = await child.ask("pid")
        assert _slots(child_pid)  # the child's replies went through its own slots
        assert await child.ask(["big", 7, BIG]) == bytes([7]) * BIG
    assert _slots(os.getpid()) == [] and _slots(child_pid) == []  # all gone with the system


async def test_a_killed_childs_slots_are_swept_by_its_parent() -> None:
    async with ActorSystem() as system:
        child = await system.spawn(Mirror, name="echo", process=FAST)
        pid = await child.ask("pid")
        assert await child.ask(["big", 1, BIG]) == bytes([1]) * BIG
        assert _slots(pid)
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(10):
            while _slots(pid):  # noqa: ASYNC110 - the parent sweeps as it learns of the death
                await anyio.sleep(0.05)


@pytest.mark.parametrize("transport", ["unix", "stdio"])
async def test_large_payloads_go_between_siblings_directly_or_through_the_tree(
        transport: str) -> None:
    async with ActorSystem() as system:
        options = msgspec.structs.replace(FAST, transport=transport)
        a = await system.spawn(Relay, name="a", process=options)
        b = await system.spawn(Mirror, name="b", process=options)
        data = os.urandom(BIG)
        for _ in range(5):  # a asks b (over their direct link, or through this process)
            assert await a.ask(Forward(b, Blob("x", data))) == Blob("x", data)
        # Through the tree, this process passed the payloads on without reading them: the
        # slots it holds are its own (a few), never one per message that went through.
        assert len(_slots(os.getpid())) <= 2


async def test_actorstage_cleanup_removes_the_slots_of_a_process_that_died_alone() -> None:
    import sys

    from actorstage.cli import main as cli_main

    script = ("import os\n"
              "from actorstage.transport._payloads import ARENA\n"
              "ARENA.put(b'x' * 1_000_000)\n"
              "print(os.getpid(), flush=True)\n"
              "os._exit(0)\n")  # no system closed it, no parent or guard to sweep
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", script])
    pid = int(done.stdout)
    assert len(_slots(pid)) == 2  # the slot and its marker
    assert cli_main(["cleanup"]) == 0
    assert _slots(pid) == []
