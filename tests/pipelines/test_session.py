"""Running pipelines: native and process nodes, fan-out and fan-in, order, failures."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from actorstage import ActorSystem
from actorstage.pipelines import PipelineError
from tests.pipelines import nodes as test_nodes
from tests.pipelines.helpers import node, pipeline, until

pytestmark = pytest.mark.anyio

EXECUTORS = ["native", "process"]


def diamond(executor: str) -> Any:
    """a fans out to b and c (tagged differently), both fan in to d."""
    return pipeline(
        [node("a", "test.Double", executor), node("b", "test.Tag", executor, tag="b"),
         node("c", "test.Tag", executor, tag="c"), node("d", "test.Double", executor)],
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_fan_out_and_fan_in_keep_order_along_each_connection(executor: str) -> None:
    result = await diamond(executor).run(range(300))
    items = [output.item for output in result.outputs]
    assert {output.node_id for output in result.outputs} == {"d"}
    for tag in ("b", "c"):
        values = [item.value for item in items if item.source == tag]
        assert values == [value * 4 for value in range(300)]  # all of them, in order
    stats = result.nodes
    assert stats["a"].items_in == 300 and stats["a"].items_out == 300
    assert stats["d"].items_in == 600 and stats["d"].items_out == 600
    assert all(stat.executor == executor for stat in stats.values())
    assert result.failures == []


async def test_native_and_process_runs_give_identical_outputs() -> None:
    native = await diamond("native").run(range(50))
    process = await diamond("process").run(range(50))
    assert Counter(map(repr, native.outputs)) == Counter(map(repr, process.outputs))


async def test_process_nodes_run_in_their_own_named_processes() -> None:
    pipe = pipeline([node("first", "test.Pid", "process"), node("second", "test.Pid", "process")])
    async with ActorSystem() as system, pipe.session(system) as session:
        pids = {name: stats.pid or 0 for name, stats in session.stats().items()}
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        for node_id, pid in pids.items():
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert title.startswith(f"actorstage node {node_id} (test {session.id})"), title
        await session.send("x")
        session.close_input()
        outputs = [output async for output in session.outputs()]
        assert sorted(output.item for output in outputs) == sorted(map(int, pids.values()))
    for pid in pids.values():  # ending the session ended its processes
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_an_exception_fails_the_session_by_default(executor: str) -> None:
    pipe = pipeline([node("c", "test.Crash", executor, on=3, raise_it=True)])
    with pytest.raises(PipelineError, match=r"node 'c' failed on its item 4: ValueError: "
                                            r"cannot take 3"):
        await pipe.run(range(10))


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_the_outputs_before_a_failure_come_out_and_none_after_it(executor: str) -> None:
    pipe = pipeline([node("c", "test.Crash", executor, on=3, raise_it=True)])
    got: list[Any] = []
    async with ActorSystem() as system, pipe.session(system) as session:
        await session.feed(range(10))  # one batch: the process node has them all at once
        with pytest.raises(PipelineError, match="failed on its item 4"):
            async for output in session.outputs():
                got.append(output.item)
    assert got == [0, 1, 2]


async def test_session_ids_that_could_clash_are_refused() -> None:
    pipe = pipeline([node("c", "IdentityNode")])
    async with ActorSystem() as system:
        for bad in ("a-b", "", "x" * 65, "a/b"):
            with pytest.raises(ValueError, match=r"must be 1-64 letters, digits, _ or \."):
                pipe.session(system, session_id=bad)


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_with_continue_a_failed_item_is_reported_and_the_rest_go_on(executor: str) -> None:
    pipe = pipeline([node("c", "test.Crash", executor, on=3, raise_it=True)],
                    on_node_crash="continue")
    result = await pipe.run(range(10))
    assert [output.item for output in result.outputs] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    [failure] = result.failures
    assert (failure.node_id, failure.item_number, failure.type_name) == ("c", 4, "ValueError")
    assert "cannot take 3" in failure.message and "Traceback" in failure.traceback
    assert result.nodes["c"].failed == 1


@pytest.mark.parametrize("on_node_crash", ["fail", "continue"])
async def test_process_chains_stream_straight_from_process_to_process(
        on_node_crash: str) -> None:
    pipe = pipeline([node("a", "test.Double", "process"), node("b", "test.Double", "process"),
                     node("c", "test.Tag", "process", tag="t"),
                     node("d", "test.Double", "process")],
                    [("a", "b"), ("b", "c"), ("c", "d")], on_node_crash=on_node_crash)
    async with ActorSystem() as system, pipe.session(system) as session, \
            anyio.create_task_group() as group:
        group.start_soon(session.feed, range(5000))
        outputs = [output.item async for output in session.outputs()]
        result = await session.result()
        inboxes = {node_id: port.inbox.max_depth for node_id, port in session.ports.items()}
    assert outputs == [test_nodes.Tagged("t", value * 8) for value in range(5000)]
    assert all(stats.items_in == stats.items_out == 5000 for stats in result.nodes.values())
    if on_node_crash == "fail":  # b, c and d got every item from the process before them
        assert inboxes["b"] == inboxes["c"] == inboxes["d"] == 0
    else:  # under "continue" the parent keeps each item until it is done: all go through it
        assert min(inboxes.values()) > 0


@pytest.mark.parametrize("on_node_crash", ["fail", "continue"])
async def test_mixed_items_keep_their_order_and_type_through_process_nodes(
        on_node_crash: str) -> None:
    """A batch of scalars goes as plain values until an item that is not one (then as
    WireItems): order and types hold either way, and across batches that differ."""
    mixed: list[Any] = [1, "a", 2.5, True, (1, 2), b"x", 3, {"k": {4}},  # (None: no output)
                        test_nodes.Tagged("t", 5), "z", False]
    items = [*range(3000), *mixed, *range(2000), *mixed * 300, *range(10)]
    pipe = pipeline([node("a", "IdentityNode", "process"), node("b", "IdentityNode", "process"),
                     node("c", "IdentityNode")], [("a", "b"), ("b", "c")],
                    on_node_crash=on_node_crash)
    outputs = [output.item for output in (await pipe.run(items)).outputs]
    assert outputs == items
    assert [type(item) for item in outputs] == [type(item) for item in items]


async def test_an_input_may_go_to_one_root_only() -> None:
    pipe = pipeline([node("a", "test.Tag", tag="a"), node("b", "test.Tag", tag="b"),
                     node("c", "test.Double")], [("a", "c"), ("b", "c")])
    async with ActorSystem() as system, pipe.session(system) as session:
        await session.send(1, to="b")
        await session.send(2)  # to both roots
        with pytest.raises(ValueError, match=r"node 'c' takes its items from the nodes "
                                             r"connected to it.*roots are 'a', 'b'"):
            await session.send(3, to="c")
        with pytest.raises(ValueError, match="no node has the id 'z'"):
            await session.send(3, to="z")
        session.close_input()
        outputs = [(output.item.source, output.item.value)
                   async for output in session.outputs()]
    assert sorted(outputs) == [("a", 4), ("b", 2), ("b", 4)]


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("on_node_crash", ["fail", "continue"])
async def test_outputs_carry_the_origin_of_the_input_they_came_from(
        executor: str, on_node_crash: str) -> None:
    """Through one-to-one nodes, a node that gives several items per input (Ticker), and
    what a collector's flush gives (the origin of the last item it had)."""
    pipe = pipeline([node("a", "test.Double", executor), node("b", "test.Ticker", executor),
                     node("c", "IdentityNode", executor), node("d", "CollectorNode", executor)],
                    [("a", "b"), ("b", "c"), ("c", "d")], on_node_crash=on_node_crash)
    ticks = pipeline([node("a", "test.Double", executor), node("b", "test.Ticker", executor),
                      node("c", "IdentityNode", executor)], [("a", "b"), ("b", "c")],
                     on_node_crash=on_node_crash)
    async with ActorSystem() as system:
        async with ticks.session(system, origins=True) as session:
            for sequence, count in enumerate([1, 2, 0, 3], 1):
                await session.send(count, origin=f"chunk-{sequence}")
            session.close_input()
            outputs = [(output.origin, output.item) async for output in session.outputs()]
        assert outputs == [("chunk-1", 0), ("chunk-1", 1),  # 1, doubled: two ticks
                           *(("chunk-2", value) for value in range(4)),
                           *(("chunk-4", value) for value in range(6))]  # chunk-3: none
        async with pipe.session(system, origins=True) as session:
            await session.send(1, origin=7)
            await session.send(1, origin=8)
            session.close_input()
            [output] = [output async for output in session.outputs()]
        assert (output.origin, output.item) == (8, [0, 1, 0, 1])
        async with pipe.session(system) as plain:
            with pytest.raises(ValueError, match="origins=True"):
                await plain.send(1, origin=1)


async def test_a_direct_chain_carries_generated_items_and_what_flush_gives_at_the_end(
) -> None:
    pipe = pipeline([node("a", "test.Ticker", "process"), node("b", "test.Double", "process"),
                     node("c", "CollectorNode", "process"), node("d", "IdentityNode", "process")],
                    [("a", "b"), ("b", "c"), ("c", "d")])
    result = await pipe.run([3, 5])
    assert [output.item for output in result.outputs] == [[0, 2, 4, 0, 2, 4, 6, 8]]
    counts = {node_id: (stats.items_in, stats.items_out)
              for node_id, stats in result.nodes.items()}
    assert counts == {"a": (2, 8), "b": (8, 8), "c": (8, 1), "d": (1, 1)}
    assert [output.item for output in (await pipe.run([])).outputs] == [[]]  # flush, at once


async def test_a_direct_chain_streams_from_process_to_process_not_through_the_parent(
) -> None:
    # The session actor connects its nodes while it is still starting: the door asked
    # of the next node's process must reach that process, and the link must be open
    # before the session starts (not delay the first item).
    pipe = pipeline([node("a", "test.Links", "process"), node("b", "IdentityNode", "process")],
                    [("a", "b")])
    async with ActorSystem() as system, pipe.session(system) as session:
        await session.send(1)
        session.close_input()
        [output] = [output async for output in session.outputs()]
        assert output.item == [f"/user/pipeline-{session.id}/b/process-1"]


async def test_a_failure_inside_a_direct_chain_fails_the_session_naming_node_and_item() -> None:
    raising = pipeline([node("a", "test.Double", "process"),
                        node("b", "test.Crash", "process", on=10, raise_it=True),
                        node("c", "test.Double", "process")], [("a", "b"), ("b", "c")])
    with pytest.raises(PipelineError, match=r"node 'b' failed on its item 6: ValueError: "
                                            r"cannot take 10"):
        await raising.run(range(50))
    killed = pipeline([node("a", "test.Double", "process"),
                       node("b", "test.Crash", "process", on=10),
                       node("c", "test.Double", "process")], [("a", "b"), ("b", "c")])
    with pytest.raises(PipelineError, match=r"node 'b': its process \(pid \d+\) died while "
                                            r"processing its item 6: .*SIGKILL"):
        await killed.run(range(50))


async def test_a_killed_process_node_fails_the_session_under_fail() -> None:
    pipe = pipeline([node("k", "test.Crash", "process", on=5)])
    with pytest.raises(PipelineError, match=r"node 'k': its process \(pid \d+\) died while "
                                            r"processing its item 6: .*SIGKILL"):
        await pipe.run(range(20))


@pytest.mark.parametrize("on", [0, 5, 19])  # the first item, one in the middle, the last
async def test_a_killed_process_node_is_restarted_under_continue(tmp_path: Path, on: int) -> None:
    once = tmp_path / "crashed"
    pipe = pipeline([node("k", "test.Crash", "process", on=on, once_file=str(once)),
                     node("sink", "test.Double")], [("k", "sink")], on_node_crash="continue")
    with anyio.fail_after(30):
        result = await pipe.run(range(20))
    assert once.exists()
    assert [output.item for output in result.outputs] == [2 * v for v in range(20) if v != on]
    [failure] = result.failures
    assert (failure.node_id, failure.item_number, failure.type_name) == (
        "k", on + 1, "ProcessDied")
    assert "SIGKILL" in failure.message
    assert result.nodes["k"].restarts == 1


async def test_a_killed_process_node_that_fans_in_takes_back_the_right_item(
        tmp_path: Path) -> None:
    # k's batches mix items of two connections: the one its process died on is failed
    # and released to the connection it came from, the others go to the new process.
    once = tmp_path / "crashed"
    pipe = pipeline([node("a", "IdentityNode"), node("b", "test.Double"),
                     node("c", "IdentityNode"),
                     node("k", "test.Crash", "process", on=7, once_file=str(once)),
                     node("sink", "IdentityNode")],
                    [("a", "b"), ("a", "c"), ("b", "k"), ("c", "k"), ("k", "sink")],
                    on_node_crash="continue", channel_capacity=4)
    with anyio.fail_after(30):
        result = await pipe.run(range(40))
    assert once.exists()  # (7 comes only from c: b's items are even)
    assert sorted(output.item for output in result.outputs) == sorted(
        [2 * v for v in range(40)] + [v for v in range(40) if v != 7])
    [failure] = result.failures
    assert (failure.node_id, failure.type_name) == ("k", "ProcessDied")
    assert result.nodes["k"].items_out == 79 and result.nodes["k"].restarts == 1


async def test_a_process_node_that_keeps_dying_fails_after_max_node_restarts() -> None:
    pipe = pipeline([node("k", "test.Crash", "process", on=1)],
                    on_node_crash="continue", max_node_restarts=0)
    with pytest.raises(PipelineError, match=r"died more than max_node_restarts \(0\) times"):
        await pipe.run([0, 1, 2])


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_a_setup_past_init_timeout_fails_the_start_and_leaves_nothing(
    executor: str
) -> None:
    pipe = pipeline([node("ok", "IdentityNode", executor),
                     node("slow", "test.SlowSetup", executor, seconds=30)],
                    [("ok", "slow")], init_timeout_secs=0.5)
    async with ActorSystem() as system:
        with anyio.fail_after(20):
            with pytest.raises(PipelineError, match=r"node 'slow' failed to start: TimeoutError: "
                                                    r"node 'slow' did not finish setup within "
                                                    r"0.5 s \(init_timeout_secs\)"):
                async with pipe.session(system):
                    pass  # pragma: no cover - the start fails
        assert system.tree().children == ()


async def test_the_session_reports_unknown_node_modules_in_a_process(tmp_path: Path) -> None:
    pipe = pipeline([node("a", "IdentityNode", "process")])
    # Only the node process imports it: the parent would refuse it before the start.
    settings = dataclasses.replace(pipe.plan.settings, imports=("no_such_module_for_nodes",))
    pipe.plan = dataclasses.replace(pipe.plan, settings=settings)
    with pytest.raises(PipelineError, match="cannot import node module 'no_such_module_for_nodes'"):
        await pipe.run([1])


async def test_cancelling_a_session_stops_its_processes_and_loops() -> None:
    test_nodes.GATES["never"] = anyio.Event()  # type: ignore[assignment]
    pipe = pipeline([node("p", "IdentityNode", "process"), node("g", "test.Gated", gate="never")],
                    [("p", "g")], cleanup_grace_period_secs=0.5)
    async with ActorSystem() as system:
        async with pipe.session(system) as session:
            await session.send(1)
            await until(lambda: test_nodes.TAKEN.get("never", 0) == 1)
            pid = session.stats()["p"].pid
        assert session.error is not None and "cancelled" in str(session.error)
        assert pid is not None
        cmdline = Path(f"/proc/{pid}/cmdline")  # gone, or a zombie's empty command line
        assert not cmdline.exists() or cmdline.read_bytes() == b""
        assert system.tree().children == ()
