"""Metrics through the OpenTelemetry metrics API, read back with the SDK's in-memory
reader: messages handled, mailbox depth, ask latency, restarts, dead letters, processes
alive, executions by status, pipeline node items and time."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actorstage import Actor, ActorSystem
from actorstage.workflows import ActionDef, Runner, StageDef, WorkflowDef

pytestmark = pytest.mark.anyio


def _points(reader: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _value(points: dict[str, list[Any]], name: str, **attributes: Any) -> Any:
    for point in points.get(name, ()):
        if all(point.attributes.get(key) == value for key, value in attributes.items()):
            return point
    raise AssertionError(f"no {name} with {attributes} in {points.get(name)}")


class Counting(Actor):
    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("asked to")
        if isinstance(message, anyio.Event):
            await message.wait()
        return message


def _handled(points: dict[str, list[Any]]) -> int:
    """Messages handled by Counting actors so far in this process (a counter since it
    started: other tests' count too)."""
    return sum(point.value for point in points.get("actorstage.messages.handled", ())
               if point.attributes.get("actorstage.actor.class") == "Counting")


async def test_the_runtime_s_metrics_are_read_through_the_sdk(metric_reader: Any) -> None:
    async with ActorSystem() as system:
        before = _handled(_points(metric_reader))  # (metrics are on once a system starts)
        actor = await system.spawn(Counting, name="counting")
        for number in range(10):
            await actor.tell(number)
        for number in range(5):
            assert await actor.ask(number) == number
        with pytest.raises(Exception, match="asked to"):
            await actor.ask("crash")
        gate = anyio.Event()
        await actor.tell(gate)  # it waits on this one: the next four wait in its mailbox
        for number in range(4):
            await actor.tell(number)
        await anyio.sleep(0.05)
        process = await system.spawn(Counting, name="elsewhere", process=True)
        assert await process.ask(1) == 1
        points = _points(metric_reader)
        assert _value(points, "actorstage.mailbox.depth",
                      **{"actorstage.actor.class": "Counting"}).value == 4
        assert _value(points, "actorstage.processes").value == 1
        gate.set()
        await actor.ask("last")
        await system.stop(actor)
        await actor.tell("late")  # a dead letter
        points = _points(metric_reader)
    handled = _handled(points) - before
    assert handled == 10 + 5 + 1 + 4 + 1  # the crashed one is a restart, not a handled one
    asks = _value(points, "actorstage.ask.duration", **{"actorstage.actor.class": "Counting"})
    assert asks.count >= 7 and asks.sum > 0
    assert _value(points, "actorstage.restarts",
                  **{"actorstage.actor.class": "Counting"}).value == 1
    dead = sum(point.value for point in points["actorstage.dead_letters"])
    assert dead >= 1
    later = _points(metric_reader)  # the system has closed: its counts stay counted
    assert sum(point.value for point in later["actorstage.dead_letters"]) >= dead
    assert _handled(later) - before == handled


async def test_executions_and_pipeline_nodes_are_counted(metric_reader: Any) -> None:
    from tests.pipelines import nodes  # noqa: F401 - registers the test nodes
    from tests.pipelines.helpers import node, pipeline

    defn = WorkflowDef(id="counted", stages=[StageDef(id="s", actions=[
        ActionDef(id="put", action="store.set", params={"key": "k", "value": 1})])])
    async with Runner() as runner:
        for _ in range(3):
            await runner.execute(defn)
        failing = WorkflowDef(id="failing", stages=[StageDef(id="s", actions=[
            ActionDef(id="boom", action="fail", params={"message": "no"})])])
        await runner.execute(failing)
        waiting = WorkflowDef(id="waiting", stages=[StageDef(id="s", actions=[
            ActionDef(id="nap", action="sleep", params={"seconds": 30})])])
        execution = await runner.start(waiting)
        await anyio.sleep(0.1)
        points = _points(metric_reader)
        assert _value(points, "actorstage.executions",
                      **{"actorstage.workflow.status": "running"}).value == 1
        await execution.cancel()
        await execution.result()
    result = await pipeline([node("twice", "test.Double")]).run(range(30))
    assert len(result.outputs) == 30
    points = _points(metric_reader)
    assert _value(points, "actorstage.executions.ended",
                  **{"actorstage.workflow.status": "succeeded"}).value == 3
    assert _value(points, "actorstage.executions.ended",
                  **{"actorstage.workflow.status": "failed"}).value == 1
    assert _value(points, "actorstage.pipeline.node.items",
                  **{"actorstage.node.id": "twice"}).value == 30
    assert _value(points, "actorstage.pipeline.node.duration",
                  **{"actorstage.node.id": "twice"}).count >= 1


async def test_metrics_are_off_without_an_sdk() -> None:
    from actorstage import _metrics
    from actorstage.actors._ref import ActorRef

    async with ActorSystem() as system:
        assert not _metrics.STATE.on
        assert ActorRef.ask.__qualname__ == "ActorRef.ask"
        actor = await system.spawn(Counting)
        assert await actor.ask(1) == 1


async def test_tracing_and_metrics_switch_off_in_either_order(
        metric_reader: Any, spans: Any) -> None:
    from actorstage import _metrics, _sends, _telemetry
    from actorstage.actors._ref import ActorRef

    def timed() -> int:
        points = _points(metric_reader).get("actorstage.ask.duration", ())
        return sum(point.count for point in points
                   if point.attributes.get("actorstage.actor.class") == "Counting")

    async with ActorSystem() as system:  # (each switched on by its SDK)
        assert _metrics.STATE.on and _telemetry.STATE.tracing
        actor = await system.spawn(Counting)
        before = timed()
        await actor.ask(1)
        assert timed() == before + 1
        _telemetry.disable()  # tracing off first: asks stay timed
        await actor.ask(2)
        assert timed() == before + 2
        assert ActorRef.tell is _sends._OWN[(ActorRef, "tell")]  # (tracing's wrapper gone)
        _telemetry.enable()
        _metrics.disable()  # now metrics off first: sends stay traced, asks untimed
        with _telemetry.STATE.tracer.start_as_current_span("outer"):
            await actor.ask(3)
        assert timed() == before + 2
        assert any(span.name.startswith("ask ") for span in spans.get_finished_spans())
        _telemetry.disable()
    for name in _sends.NAMES:
        assert getattr(ActorRef, name) is _sends._OWN[(ActorRef, name)]
