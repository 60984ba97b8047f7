"""Faults around process actors: strangers, garbage, a killed parent, backpressure."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import anyio
import msgspec
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from actorstage import (
    ActorCrashedError,
    ActorStatus,
    ActorSystem,
    MailboxFullError,
    ProcessOptions,
)
from actorstage._proto.actorstage.bridge.v1 import Envelope, Hello
from actorstage.testing import wait_until
from actorstage.transport._codec import RawCodec, encode_frame
from tests.transport.actors import Add, Counter, Garbage, Resetter
from tests.transport.helpers import FAST, supervised

pytestmark = pytest.mark.anyio



async def test_a_connection_without_the_secret_is_refused_and_the_parent_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Counter, process=FAST)
        bridge = system._bridges[("unix", "", False)]
        channel = Channel(path=bridge.address[len("unix:"):], codec=RawCodec())
        try:
            for token, secret in (("nope", "nope"), ("", "")):
                with pytest.raises(GRPCError) as caught:
                    async with channel.request("/actorstage.v1.Bridge/Connect",
                                               Cardinality.STREAM_STREAM, bytes, bytes) as stream:
                        await stream.send_request()
                        hello = Envelope(hello=Hello(secret=secret, pid=1, token=token))
                        await stream.send_message(encode_frame([hello], b""))
                        await stream.recv_message()
                assert caught.value.status is Status.UNAUTHENTICATED
        finally:
            channel.close()
        assert bridge.refused == 2
        assert "refused a connection" in caplog.text
        assert (await ref.ask(Add(1))).value == 1  # the parent and its child go on


async def test_a_child_that_sends_garbage_fails_and_is_restarted() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Garbage, process=FAST)
        first = system.tree().find(ref.path)
        assert first is not None
        with pytest.raises(ActorCrashedError) as caught:  # the garbage comes before the reply
            await ref.ask("go")
        assert caught.value.type_name == "TransportError"
        assert "bad frame" in caught.value.error_message
        with anyio.fail_after(10):
            await wait_until(lambda: ref._cell.restarts == 1 and ref._cell.pump is not None)
        node = system.tree().find(ref.path)
        assert node is not None and node.pid != first.pid


async def test_a_frame_past_max_frame_size_fails_the_child_before_it_is_read() -> None:
    async with ActorSystem() as system:
        small = msgspec.structs.replace(FAST, max_frame_size=64 * 1024)
        ref = await system.spawn(Garbage, process=small)
        with pytest.raises(ActorCrashedError) as caught:
            await ref.ask(1024 * 1024)
        assert caught.value.type_name == "TransportError"
        assert "frame of 1048576 bytes exceeds the maximum of 65536 bytes" in \
            caught.value.error_message
        with anyio.fail_after(10):
            await wait_until(lambda: ref._cell.restarts == 1 and ref._cell.pump is not None)


async def test_a_full_child_mailbox_slows_the_parents_tell(tmp_path: Path) -> None:
    marker = tmp_path / "running"
    async with ActorSystem(shutdown_timeout=0.5) as system:
        letters = await system.dead_letters.subscribe().__aenter__()
        ref = await system.spawn(Counter, process=FAST, mailbox_size=4)
        await ref.tell(["block", str(marker), 30])
        host = ref._cell.actor
        with anyio.fail_after(10):
            await wait_until(marker.exists)
            await wait_until(lambda: host.link.credits == 4)  # type: ignore[union-attr]
        sent = 0
        with pytest.raises(MailboxFullError):
            for amount in range(100):
                ref.tell_nowait(Add(amount))
                sent += 1
        assert sent == 8  # the child's window (4) and the parent's own mailbox (4)
        blocked = asyncio.ensure_future(ref.tell(Add(100)))
        await asyncio.sleep(0.2)
        assert not blocked.done()  # backpressure: the sender waits for room
        await system.stop(ref)
        await blocked
        dead = [await anext(letters) for _ in range(9)]
        assert sorted(letter.message.amount for letter in dead) == [*range(8), 100]
        await letters.__aexit__(None, None, None)


async def test_a_start_that_takes_too_long_fails_and_leaves_no_process() -> None:
    options = ProcessOptions(python=sys.executable, start_timeout=0.3,
                             command=(sys.executable, "-c", "import time; time.sleep(30)"))
    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError, match=r"did not start within 0\.3s"):
            await system.spawn(Counter, process=options)


async def test_a_child_that_cannot_start_python_reports_its_stderr() -> None:
    options = ProcessOptions(command=(sys.executable, "-c", "raise SystemExit('no luck here')"))
    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError) as caught:
            await system.spawn(Counter, process=options)
    assert caught.value.type_name == "ProcessExited"
    assert "no luck here" in caught.value.traceback


@pytest.mark.parametrize("how", ["reset", "goaway"])
async def test_a_stream_reset_or_closed_connection_fails_the_child_not_the_parent(
    how: str
) -> None:
    async with ActorSystem() as system:
        ref = await supervised(system, Resetter, FAST)
        first = system.tree().find(ref.path)
        assert first is not None
        with anyio.fail_after(10), pytest.raises(ActorCrashedError) as caught:
            await ref.ask(how)  # the stream is gone before the reply can travel
        assert caught.value.type_name in ("ProcessExited", "ProcessKilled")
        with anyio.fail_after(10):
            await wait_until(lambda: ref._cell.restarts == 1 and ref._cell.pump is not None)
        assert await ref.ask("still here") == "still here"
        node = system.tree().find(ref.path)
        assert node is not None and node.pid != first.pid


async def test_a_child_that_dies_while_paused_comes_back_paused_with_nothing_lost() -> None:
    async with ActorSystem() as system:
        ref = await supervised(system, Counter, FAST)
        pid = await ref.ask("pid")
        await system.pause(ref)
        for amount in (1, 2, 3):
            await ref.tell(Add(amount))  # held in the parent: a paused child gets nothing
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(10):
            await wait_until(lambda: ref._cell.restarts == 1 and ref._cell.pump is not None)
        node = system.tree().find(ref.path)
        assert node is not None and node.pid != pid and node.status == ActorStatus.PAUSED
        assert node.queued == 3
        await system.resume(ref)
        assert (await ref.ask("total")).value == 6
        assert await ref.ask("seen") == [1, 2, 3]
