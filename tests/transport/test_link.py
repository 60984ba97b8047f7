"""``Link``: a connection that fails in a way no connection should ends the link, loudly,
whether the link's writer or a caller's own step (``send_now``) was sending. And the
stdio connection's frames."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest

from actorstage._proto.actorstage.bridge.v1 import (
    Envelope,
    Heartbeat,
    Lifecycle,
    LifecycleKind,
    SpawnSpec,
)
from actorstage.actors._tasks import TaskOwner
from actorstage.transport._codec import FrameError
from actorstage.transport._conn import StdioConn, read_stream, write_stream
from actorstage.transport._link import CLOSED, Link

pytestmark = pytest.mark.anyio


class Broken:
    """A connection whose sends raise what only a bug would: not a ``ConnectionLost``."""

    def __init__(self) -> None:
        self.sends = 0
        self.ended = asyncio.Event()

    async def send(self, envelopes: list[Envelope], packed: bytes) -> None:
        self.sends += 1
        raise ValueError("no such frame")

    async def recv(self) -> None:
        await self.ended.wait()

    async def aclose(self) -> None:
        self.ended.set()


@pytest.mark.parametrize("by", ["the writer", "send_now"])
async def test_a_send_that_fails_unexpectedly_ends_the_link_and_is_logged(
    by: str, caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[BaseException] = []
    owner = TaskOwner(loop, errors.append)
    lost: asyncio.Future[tuple[str, str]] = loop.create_future()
    conn = Broken()
    link = Link(conn, "/user/worker", owner, heartbeat_interval=60.0, heartbeat_timeout=600.0,
                on_control=lambda envelope: None,
                on_lost=lambda problem, cause: lost.set_result((problem, cause)))
    link.start()
    for _ in range(5):  # the writer goes to sleep: nothing to send
        await asyncio.sleep(0)
    assert link.idle is not None and not link.idle.done()
    heartbeat = Envelope(heartbeat=Heartbeat(sent_at=1.0))
    with caplog.at_level(logging.ERROR, "actorstage.transport"):
        if by == "send_now":
            link.controls.append(heartbeat)
            link.send_now()  # the caller's step does not see the error
            assert lost.done()
        else:
            link.send_control(heartbeat)
        problem, cause = await asyncio.wait_for(lost, 5)
    assert (problem, cause) == ("sending failed: ValueError: no such frame", CLOSED)
    assert conn.sends == 1 and link.closed
    [record] = [r for r in caplog.records if r.name == "actorstage.transport"]
    assert record.getMessage() == "the link towards /user/worker failed on sending"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    await owner.aclose()
    assert errors == []  # the link's tasks ended without an error of their own


async def test_stdio_frames_are_json_lines_that_carry_envelopes_and_packed_entries() -> None:
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    peek_fd, poke_fd = os.pipe()
    reader = await read_stream(loop, read_fd, 1 << 20)
    sender = StdioConn(reader, await write_stream(loop, write_fd), 1 << 20)
    receiver = StdioConn(await read_stream(loop, peek_fd, 1 << 20),
                         await write_stream(loop, poke_fd), 1 << 20)
    spec = Envelope(spawn=SpawnSpec(path="/user/w", actor="m:W", args=b"\x92\x90\x80",
                                    sys_path=["/a", "/b"], shutdown_timeout=2.5))
    started = Envelope(lifecycle=Lifecycle(kind=LifecycleKind.STARTED, pid=42))
    try:
        await sender.send([spec, started], b"\x91\x01")
        line = await reader.readline()
        assert line.endswith(b"\n") and b"\n" not in line[:-1]
        frame = json.loads(line)  # JSON, one frame per line
        assert set(frame) == {"envelopes", "packed"} and len(frame["envelopes"]) == 2
        os.write(poke_fd, line)  # the same line, read by the other end
        assert await receiver.recv() == ([spec, started], b"\x91\x01")
        os.write(poke_fd, b'{"envelopes": ["not base64!"]}\n')
        with pytest.raises(FrameError, match="undecodable line of 31 bytes"):
            await receiver.recv()
    finally:
        await sender.aclose()
        await receiver.aclose()
        reader.feed_eof()
