"""OpenTelemetry trace context through actors, processes, workflows and the runner service,
read back from the SDK's in-memory exporter (this process) and from a real OTLP/gRPC
receiver (child processes export there with the SDK's OTLP exporter)."""

from __future__ import annotations

import os
from typing import Any

import anyio
import httpx
import pytest
from grpclib.client import Channel
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from actorstage import Actor, ActorSystem, Message, ProcessOptions
from actorstage.service import ExecuteRequest, RunnerStub, ServiceConfig, open_service
from actorstage.workflows import ActionDef, Runner, StageDef, WorkflowDef
from tests.observability.otlp import ReceivedSpan, TraceReceiver
from tests.service.helpers import SHORT, until

pytestmark = pytest.mark.anyio
ONLY_ASYNCIO = pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")])


class Double(Actor):
    async def receive(self, message: int) -> int:
        if message < 0:
            raise ValueError("no negatives")
        return message * 2


class Relay(Actor):
    def __init__(self, target: Any) -> None:
        self.target = target

    async def receive(self, message: int) -> int:
        await self.target.tell(message)
        result: int = await self.target.ask(message)
        return result


def _attrs(item: Any) -> dict[str, Any]:
    return dict(item.attributes or {})


def _parent(span: Any) -> int:
    assert span.parent is not None, f"{span.name} has no parent"
    return int(span.parent.span_id)


def _tree(spans: InMemorySpanExporter) -> dict[str, Any]:
    return {span.name: span for span in spans.get_finished_spans()}


async def test_an_ask_and_a_tell_are_handled_in_spans_of_the_sender_s_trace(
        spans: InMemorySpanExporter) -> None:
    async with ActorSystem() as system:
        double = await system.spawn(Double, name="double")
        relay = await system.spawn(Relay, double, name="relay")
        with trace.get_tracer("test").start_as_current_span("request") as root:
            assert await relay.ask(21) == 42
        await anyio.sleep(0.05)  # (the tell's span ends once it is handled)
    finished = spans.get_finished_spans()
    by_path = {(_attrs(span)["actorstage.actor.path"], span.name): span
               for span in finished if span.name != "request"}
    relay_span = by_path[("/user/relay", "ask int")]
    assert _parent(relay_span) == root.get_span_context().span_id
    assert relay_span.kind == SpanKind.SERVER
    tell_span = by_path[("/user/double", "tell int")]
    ask_span = by_path[("/user/double", "ask int")]
    assert tell_span.kind == SpanKind.CONSUMER
    for child in (tell_span, ask_span):  # sent from inside relay's handler: its children
        assert _parent(child) == relay_span.context.span_id
        assert child.context.trace_id == root.get_span_context().trace_id
    assert _attrs(ask_span)["actorstage.message.kind"] == "ask"
    assert _attrs(ask_span)["actorstage.message.type"] == "builtins:int"
    assert _attrs(ask_span)["actorstage.actor.class"] == "Double"


async def test_outside_a_trace_nothing_is_wrapped_or_recorded(
        spans: InMemorySpanExporter) -> None:
    async with ActorSystem() as system:
        double = await system.spawn(Double)
        assert await double.ask(2) == 4
    assert spans.get_finished_spans() == ()


async def test_a_crash_is_the_span_s_exception_and_a_dead_letter_an_event(
        spans: InMemorySpanExporter) -> None:
    async with ActorSystem() as system:
        double = await system.spawn(Double, name="double")
        with trace.get_tracer("test").start_as_current_span("request"), \
                pytest.raises(Exception, match="no negatives"):
            await double.ask(-1)
        await system.stop(double)
        with trace.get_tracer("test").start_as_current_span("late"):
            await double.tell(5)  # stopped: a dead letter
    found = _tree(spans)
    crashed = found["ask int"]
    assert crashed.status.status_code == StatusCode.ERROR
    assert [event.name for event in crashed.events] == ["exception"]
    assert str(_attrs(crashed.events[0])["exception.type"]).endswith("ValueError")
    [event] = found["late"].events
    assert event.name == "actorstage.dead_letter"
    assert _attrs(event)["actorstage.actor.path"] == "/user/double"
    restarted = found["restart /user/double"]  # (the crash's restart, by the default policy)
    assert _attrs(restarted)["actorstage.restarts"] == 1


async def test_tracing_is_off_without_an_sdk() -> None:
    from actorstage import _telemetry
    from actorstage.actors._ref import ActorRef

    async with ActorSystem() as system:
        assert not _telemetry.STATE.tracing
        assert "send" not in ActorRef.tell.__qualname__  # the plain method, not a wrapper
        double = await system.spawn(Double)
        assert await double.ask(1) == 2


@ONLY_ASYNCIO
async def test_a_process_actor_s_spans_reach_an_otlp_receiver_in_the_sender_s_trace(
        spans: InMemorySpanExporter, receiver: TraceReceiver) -> None:
    async with ActorSystem() as system:
        double = await system.spawn(Double, name="double", process=True)
        with trace.get_tracer("test").start_as_current_span("request") as root:
            assert await double.ask(4) == 8
        await receiver.wait_for(lambda received: any(
            span.name == "ask int" for span in received))
    [handled] = [span for span in receiver.spans if span.name == "ask int"]
    context = root.get_span_context()
    assert (handled.trace_id, handled.parent_id) == (context.trace_id, context.span_id)
    assert handled.attributes["actorstage.actor.path"] == "/user/double"
    assert handled.resource["process.pid"] == handled.attributes["process.pid"] != os.getpid()


# -- one trace, three processes: a FastAPI request, a process actor, a spawned workflow ------

class Order(Message, frozen=True):
    item: str


def _workflow() -> WorkflowDef:
    return WorkflowDef(id="fulfil", stages=[StageDef(id="ship", actions=[
        ActionDef(id="pick", action="store.set", params={"key": "picked", "value": True}),
        ActionDef(id="pack", action="store.set", params={"key": "packed", "value": True})])])


class Planner(Actor):
    """In a child process: runs each order's workflow in a child process of its own."""

    async def receive(self, message: Order) -> dict[str, Any]:
        async with Runner() as runner:
            execution = await runner.start(_workflow(), store={"item": message.item},
                                           process=True)
            result = await execution.result()
        return {"store": result.store, "planner": os.getpid()}


def _app(planner: Any) -> Any:
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = FastAPI()

    @app.post("/orders/{item}")
    async def order(item: str) -> dict[str, Any]:
        answer: dict[str, Any] = await planner.ask(Order(item))
        return answer

    FastAPIInstrumentor.instrument_app(app)
    return app


@ONLY_ASYNCIO
async def test_one_trace_from_a_fastapi_request_through_a_process_actor_to_a_spawned_workflow(
        spans: InMemorySpanExporter, receiver: TraceReceiver) -> None:
    async with ActorSystem() as system:
        planner = await system.spawn(Planner, name="planner",
                                     process=ProcessOptions(start="spawn"))
        app = _app(planner)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://shop") as client:
            response = await client.post("/orders/teapot", timeout=60)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["store"] == {"item": "teapot", "picked": True, "packed": True}
        await receiver.wait_for(lambda received: {"ask Order", "workflow fulfil",
                                                  "action ship/pick", "action ship/pack"}
                                <= {span.name for span in received})
    [request] = [span for span in spans.get_finished_spans()
                 if span.kind == SpanKind.SERVER and "orders" in span.name]
    children: dict[str, ReceivedSpan] = {span.name: span for span in receiver.spans}
    asked, run = children["ask Order"], children["workflow fulfil"]
    trace_id = request.context.trace_id
    assert {span.trace_id for span in children.values()} == {trace_id}
    assert asked.parent_id == request.context.span_id  # the request's span, over a link
    assert run.parent_id == asked.span_id  # the handler's span, into a second child
    for action in ("action ship/pick", "action ship/pack"):
        assert children[action].parent_id == run.span_id
        assert children[action].attributes["actorstage.execution.id"] == \
            run.attributes["actorstage.execution.id"]
    pids = {os.getpid(), asked.attributes["process.pid"], run.attributes["process.pid"]}
    assert len(pids) == 3 and answer["planner"] == asked.attributes["process.pid"]


async def test_a_runner_service_rpc_continues_the_caller_s_trace(
        spans: InMemorySpanExporter) -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with open_service(ServiceConfig(port=0)) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            stub = RunnerStub(channel)
            await stub.execute_async(ExecuteRequest(execution_id="traced", workflow=SHORT),
                                     metadata={"traceparent": caller})
            await until(stub, "traced", "workflow_finished")
        finally:
            channel.close()
    found = _tree(spans)
    rpc = found["actorstage.v1.Runner/ExecuteAsync"]
    assert rpc.kind == SpanKind.SERVER
    assert rpc.context.trace_id == 0x0af7651916cd43dd8448eb211c80319c
    assert _parent(rpc) == 0xb7ad6b7169203331
    assert _attrs(rpc)["rpc.method"] == "ExecuteAsync"
    run = found["workflow wf"]
    assert run.context.trace_id == rpc.context.trace_id
    assert _parent(found["action main/put"]) == run.context.span_id


@ONLY_ASYNCIO
async def test_a_pipeline_session_and_its_node_batches_are_spans_of_one_trace(
        spans: InMemorySpanExporter, receiver: TraceReceiver) -> None:
    from tests.pipelines import nodes  # noqa: F401 - registers the test nodes
    from tests.pipelines.helpers import node, pipeline

    pipe = pipeline([node("here", "test.Double"), node("there", "test.Double", "process")],
                    [("here", "there")])
    with trace.get_tracer("test").start_as_current_span("request") as root:
        result = await pipe.run(range(20))
    assert sorted(output.item for output in result.outputs) == [value * 4
                                                               for value in range(20)]
    await receiver.wait_for(lambda received: any(
        span.name == "node there" for span in received))
    found = _tree(spans)
    session = found["pipeline test"]
    assert _parent(session) == root.get_span_context().span_id
    here = [span for span in spans.get_finished_spans() if span.name == "node here"]
    assert here and all(_parent(span) == session.context.span_id for span in here)
    assert sum(_attrs(span)["actorstage.node.items"] for span in here) == 20
    there = [span for span in receiver.spans if span.name == "node there"]
    assert {span.trace_id for span in there} == {session.context.trace_id}
    assert sum(span.attributes["actorstage.node.items"] for span in there) == 20
    assert {span.attributes["process.pid"] for span in there} != {os.getpid()}
