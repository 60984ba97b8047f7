"""Flow: bounded channels and backpressure, the memory limit, shared memory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import anyio
import pytest

from actorstage import ActorSystem
from actorstage._shm import PREFIX, SegmentWriter, read_segment, segments, unlink
from actorstage.pipelines import PipelineError
from actorstage.pipelines._channels import Channel, Inbox
from actorstage.pipelines._wire import WireBatch
from tests.pipelines import nodes as test_nodes
from tests.pipelines.helpers import node, pipeline, until

pytestmark = pytest.mark.anyio

CAPACITY = 8
KIB = 1024


async def settle(turns: int = 200) -> None:
    """Give every ready task many turns: a producer that could run on would have."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_an_inbox_keeps_arrival_order_in_runs_and_takes_at_most_the_limit() -> None:
    inbox = Inbox("n")
    a, b = Channel("a", "n", inbox, 100), Channel("b", "n", inbox, 100)
    given = [1, 2]
    inbox.push_all(a, given)
    given.append(99)  # the inbox took a copy
    inbox.push(a, 3)
    inbox.push(b, 10)
    inbox.push_all(b, [11, 12])
    inbox.push(a, 4)
    assert inbox.count == inbox.max_depth == 7
    assert await inbox.take(4) == [(a, [1, 2, 3]), (b, [10])]  # a run split at the limit
    inbox.push(a, 5)  # joins the last run, which is a's
    assert await inbox.take(3) == [(b, [11, 12]), (a, [4])]
    assert inbox.count == 1 and inbox.take_all() == [(a, [5])] and inbox.count == 0
    a.close()
    b.close()
    assert await inbox.take(10) == []  # every input ended
    assert inbox.max_depth == 7


async def test_a_slow_sink_bounds_a_native_producers_lead_to_the_capacity() -> None:
    gate = test_nodes.GATES["bp"] = asyncio.Event()
    test_nodes.TAKEN.clear()
    pipe = pipeline([node("ticker", "test.Ticker"), node("sink", "test.Gated", gate="bp")],
                    [("ticker", "sink")], channel_capacity=CAPACITY)
    async with ActorSystem() as system, pipe.session(system) as session:
        await session.send(10_000)
        session.close_input()
        # The sink holds one item, the channel CAPACITY more; the ticker waits to put the next.
        await until(lambda: test_nodes.TAKEN.get("ticker", 0) >= CAPACITY + 1)
        await settle()
        assert test_nodes.TAKEN["ticker"] == CAPACITY + 1
        assert test_nodes.TAKEN["bp"] == 1
        assert session.stats()["sink"].max_queue == CAPACITY
        gate.set()
        outputs = [output async for output in session.outputs()]
    assert [output.item for output in outputs] == list(range(10_000))


async def test_backpressure_holds_end_to_end_across_a_process(tmp_path: Path) -> None:
    gate = test_nodes.GATES["bp2"] = asyncio.Event()
    test_nodes.TAKEN.clear()
    counter = tmp_path / "produced"
    pipe = pipeline([node("ticker", "test.Ticker", "process", counter=str(counter)),
                     node("sink", "test.Gated", gate="bp2")],
                    [("ticker", "sink")], channel_capacity=CAPACITY)
    async with ActorSystem() as system, pipe.session(system) as session:
        await session.send(2_000)
        session.close_input()
        await until(lambda: test_nodes.TAKEN.get("bp2", 0) == 1)
        # The child stops once its sends are not credited: the channel, the proxy's
        # window and the batches in transit, each at most CAPACITY items.
        await until(lambda: counter.exists() and counter.read_text() != "")
        # A stopped child is a negative: all we can do is look twice, some time apart.
        readings = [int(counter.read_text() or 0)]
        for _ in range(40):
            await anyio.sleep(0.25)
            readings.append(int(counter.read_text() or 0))
            if readings[-1] == readings[-2]:
                break
        assert readings[-1] == readings[-2] and readings[-1] <= 8 * CAPACITY, readings
        gate.set()
        outputs = [output async for output in session.outputs()]
    assert [output.item for output in outputs] == list(range(2_000))


async def test_without_backpressure_producers_never_wait_until_the_memory_limit() -> None:
    gate = test_nodes.GATES["nobp"] = asyncio.Event()
    test_nodes.TAKEN.clear()
    pipe = pipeline([node("sink", "test.Gated", gate="nobp")],
                    channel_capacity=CAPACITY, enable_backpressure=False,
                    memory_limit_bytes=1024 * KIB)
    payload = b"x" * (16 * KIB)
    async with ActorSystem() as system:
        with pytest.raises(PipelineError, match=r"items waiting in channels hold [\d,]+ bytes, "
                                                r"past memory_limit_bytes \(1,048,576\); the "
                                                r"fullest is @input -> sink with \d+ items"):
            async with pipe.session(system) as session:
                sent = 0
                with pytest.raises(PipelineError, match="memory_limit_bytes"):
                    for _ in range(1000):  # never waits: far past the capacity of 8
                        await session.send(payload)
                        sent += 1
                assert 60 <= sent <= 64  # 1 MiB / (16 KiB + overhead), all held, none dropped
                assert session.stats()["sink"].max_queue == sent  # the sink never had a turn
                await session.result()
        gate.set()


async def test_large_payloads_reach_process_nodes_as_views_of_shared_memory() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB, above the 64 KiB threshold
    small = b"tiny"
    pipe = pipeline([node("size", "test.Size", "process")])
    result = await pipe.run([payload, small])
    assert [output.item for output in result.outputs] == [
        ["memoryview", len(payload), payload[:4]], ["bytes", 4, small]]


async def test_large_payloads_pass_through_process_chains_intact() -> None:
    payloads = [bytes([index]) * (200 * KIB + index) for index in range(12)]
    pipe = pipeline([node("a", "IdentityNode", "process"), node("b", "IdentityNode", "process"),
                     node("c", "IdentityNode")], [("a", "b"), ("b", "c")])
    result = await pipe.run(payloads)
    assert [output.item for output in result.outputs] == payloads
    assert all(type(output.item) is bytes for output in result.outputs)


async def test_a_batch_takes_scalars_at_once_and_anything_else_item_by_item() -> None:
    def encode(item: object) -> object:
        raise AssertionError("scalars are not encoded")

    batch = WireBatch(encode)
    assert batch.add_plain([1, 2.5, "three", True, None])
    assert batch.parts() == ([], [1, 2.5, "three", True, None])
    assert not batch.add_plain([4])  # (only into an empty batch: the order holds)
    assert len(batch) == 5
    mixed = WireBatch(encode)
    assert not mixed.add_plain([1, b"bytes"]) and len(mixed) == 0  # nothing taken


async def test_a_segment_is_read_out_whole_or_refused_when_its_size_is_not_the_announced(
) -> None:
    writer = SegmentWriter(f"{PREFIX}test-read-{os.getpid()}-")
    data = bytes(range(256)) * 4096  # 1 MiB
    name, size = writer.write(data)
    try:
        assert read_segment(name, size) == data
        with pytest.raises(ValueError, match=f"segment {name} holds {size} bytes, not the "
                                             f"{size + 1} announced"):
            read_segment(name, size + 1)
    finally:
        unlink(name)


async def test_items_with_large_parts_leave_the_pipeline_as_bytes_and_leave_no_segment(
) -> None:
    packets = [test_nodes.Packet(f"p{index}", bytes([index]) * (300 * KIB), b"n")
               for index in range(5)]
    whole = b"w" * (300 * KIB)
    pipe = pipeline([node("a", "IdentityNode", "process"), node("b", "IdentityNode", "process")],
                    [("a", "b")])
    async with ActorSystem() as system, pipe.session(system) as session:
        await session.send_all([*packets, whole])
        session.close_input()
        outputs = [output.item async for output in session.outputs()]
        prefix = session.prefix
    assert outputs == [*packets, whole]
    assert all(type(item.data) is bytes for item in outputs[:-1]) and type(outputs[-1]) is bytes
    assert segments(prefix) == []


async def test_large_payloads_go_from_process_to_process_and_leave_no_segment() -> None:
    payloads = [bytes([index]) * (200 * KIB + index) for index in range(20)]
    pipe = pipeline([node(name, "IdentityNode", "process") for name in "abc"],
                    [("a", "b"), ("b", "c")])
    async with ActorSystem() as system, pipe.session(system) as session, \
            anyio.create_task_group() as group:
        group.start_soon(session.feed, payloads)
        outputs = [output.item async for output in session.outputs()]
        prefix = session.prefix
        assert [name for name in segments(prefix) if "-n" in name] == []  # all read, all gone
    assert outputs == payloads
    assert segments(prefix) == []


async def test_shared_memory_is_released_when_a_node_process_is_killed(tmp_path: Path) -> None:
    held = tmp_path / "held"
    pipe = pipeline([node("hold", "test.Hold", "process", path=str(held))],
                    on_node_crash="continue")
    async with ActorSystem() as system, pipe.session(system) as session:
        await session.send(b"z" * (512 * KIB))
        await until(held.exists)
        assert len(segments(session.prefix)) >= 2  # the payload and the cursor
        pid = session.stats()["hold"].pid
        assert pid is not None
        import os
        import signal

        os.kill(pid, signal.SIGKILL)
        await until(lambda: session.stats()["hold"].pid not in (pid, None))  # restarted
        # The payload was the item in hand: reported failed, its segment removed.
        assert [name for name in segments(session.prefix) if "-p-" in name] == []
        assert [failure.type_name for failure in session.failures] == ["ProcessDied"]
        prefix = session.prefix
    assert segments(prefix) == []
