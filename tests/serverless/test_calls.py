"""``call: openapi`` against an OpenAPI document and API served by the test on loopback (the
conformance kit's OpenAPI scenarios, with a local server in place of petstore.swagger.io),
``call: grpc`` against a grpcio server built from a proto file, and ``emit``/``listen``
over the in-process bus."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from aiohttp import web

from actorstage.serverless import Cancelled, WorkflowError, execute, parse_definition
from actorstage.serverless._bus import EventBus
from actorstage.serverless._runtime import Run

pytestmark = pytest.mark.anyio

HEAD = "document: {dsl: '1.0.3', namespace: default, name: calls, version: '1.0.0'}\n"
PETS = {1: {"id": 1, "name": "Rex", "status": "available"},
        2: {"id": 2, "name": "Tom", "status": "sold"},
        3: {"id": 3, "name": "Kit", "status": "available"}}


def _swagger(port: int) -> dict[str, Any]:
    """A Swagger 2.0 document in the shape of the petstore's, for the loopback API."""
    return {
        "swagger": "2.0", "host": f"127.0.0.1:{port}", "basePath": "/v2", "schemes": ["http"],
        "paths": {
            "/pet/findByStatus": {"get": {"operationId": "findPetsByStatus", "parameters": [
                {"name": "status", "in": "query", "required": True, "type": "array"}]}},
            "/pet/{petId}": {"get": {"operationId": "getPetById", "parameters": [
                {"name": "petId", "in": "path", "required": True, "type": "integer"}]}},
            "/pet": {"post": {"operationId": "addPet", "parameters": [
                {"name": "body", "in": "body", "required": True}]}}}}


def _openapi3() -> dict[str, Any]:
    return {"openapi": "3.0.3", "servers": [{"url": "/v3"}], "paths": {
        "/pet/{petId}": {"parameters": [{"name": "petId", "in": "path", "required": True}],
                         "put": {"operationId": "updatePet",
                                 "parameters": [{"name": "X-Trace", "in": "header"}],
                                 "requestBody": {"content": {"application/json": {}}}}}}}


@pytest.fixture
async def api() -> AsyncIterator[str]:
    port_box: list[int] = []

    async def swagger(request: web.Request) -> web.Response:
        return web.json_response(_swagger(port_box[0]))

    async def openapi3(request: web.Request) -> web.Response:  # JSON is YAML too
        return web.Response(text="# an OpenAPI 3 document\n" + json.dumps(_openapi3()),
                            content_type="application/yaml")

    async def by_status(request: web.Request) -> web.Response:
        wanted = request.query.get("status", "").split(",")
        return web.json_response([pet for pet in PETS.values() if pet["status"] in wanted])

    async def pet(request: web.Request) -> web.Response:
        number = int(request.match_info["id"])
        if number not in PETS:
            raise web.HTTPNotFound(text="Pet not found")
        return web.json_response(PETS[number])

    async def add(request: web.Request) -> web.Response:
        return web.json_response({**await request.json(), "id": 99})

    async def update(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "trace":
                                  request.headers.get("X-Trace"), "body": await request.json()})

    app = web.Application()
    app.add_routes([web.get("/swagger.json", swagger), web.get("/openapi.yaml", openapi3),
                    web.get("/v2/pet/findByStatus", by_status), web.get("/v2/pet/{id}", pet),
                    web.post("/v2/pet", add), web.put("/v3/pet/{id}", update)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port_box.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port_box[0]}"
    finally:
        await runner.cleanup()


async def run(body: str, data: Any = None) -> Any:
    return await execute(parse_definition(HEAD + body), data)


async def test_openapi_call_with_content_output_and_output_filtering(api: str) -> None:
    found = await run(f"""
do:
  - findPet:
      call: openapi
      with:
        document: {{endpoint: "{api}/swagger.json"}}
        operationId: findPetsByStatus
        parameters: {{status: '${{ .status }}'}}
      output: {{as: '. | length'}}
""", {"status": "available"})
    assert found == 2


async def test_openapi_call_with_response_output(api: str) -> None:
    answer = await run(f"""
do:
  - getPet:
      call: openapi
      with:
        document: {{endpoint: "{api}/swagger.json"}}
        operationId: getPetById
        parameters: {{petId: '${{ .petId }}'}}
        output: response
""", {"petId": 1})
    assert set(answer) >= {"request", "headers", "statusCode", "content"}
    assert set(answer["request"]) >= {"method", "uri", "headers"}
    assert answer["request"]["method"] == "GET" and answer["statusCode"] == 200
    assert answer["request"]["uri"] == f"{api}/v2/pet/1"
    assert {key: answer["content"][key] for key in ("id", "name", "status")} == PETS[1]


async def test_openapi_bodies_headers_version_3_and_errors(api: str) -> None:
    added = await run(f"""
do:
  - add:
      call: openapi
      with:
        document: {{endpoint: {{uri: "{api}/swagger.json"}}}}
        operationId: addPet
        parameters: {{body: {{name: Fido}}}}
""")
    assert added == {"name": "Fido", "id": 99}
    updated = await run(f"""
do:
  - update:
      call: openapi
      with:
        document: {{endpoint: "{api}/openapi.yaml"}}
        operationId: updatePet
        parameters: {{petId: 5, X-Trace: t-1, name: Rex, status: sold}}
""")
    assert updated == {"id": "5", "trace": "t-1", "body": {"name": "Rex", "status": "sold"}}
    for operation, parameters, text in (
            ("getPetById", "{petId: 404}", "HTTP 404"),
            ("getPetById", "{}", "needs parameter 'petId'"),
            ("noSuchOperation", "{}", "has no operation 'noSuchOperation'")):
        with pytest.raises(WorkflowError, match=text) as caught:
            await run(f"""
do:
  - call:
      call: openapi
      with: {{document: {{endpoint: "{api}/swagger.json"}}, operationId: {operation},
             parameters: {parameters}}}
""")
        assert caught.value.error["type"].endswith("/errors/communication")
        assert caught.value.error["instance"] == "/do/0/call"


GREETER = """
syntax = "proto3";
package greet.v1;
message HelloRequest { string name = 1; int32 times = 2; }
message HelloReply { string message = 1; repeated string echoes = 2; }
service Greeter {
  rpc SayHello (HelloRequest) returns (HelloReply);
  rpc SayHellos (HelloRequest) returns (stream HelloReply);
}
"""


@pytest.fixture(scope="module")
def greeter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A grpcio Greeter server, built with grpc_tools from the same proto file."""
    folder = tmp_path_factory.mktemp("greeter")
    proto = folder / "greet.proto"
    proto.write_text(GREETER)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{folder}",
                    f"--python_out={folder}", f"--grpc_python_out={folder}", "greet.proto"],
                   check=True, capture_output=True)
    sys.path.insert(0, str(folder))
    try:
        import greet_pb2
        import greet_pb2_grpc
    finally:
        sys.path.remove(str(folder))
    pb: ModuleType = greet_pb2

    class Greeter(greet_pb2_grpc.GreeterServicer):  # type: ignore[misc]
        def SayHello(self, request: Any, context: Any) -> Any:
            if request.name == "nobody":
                context.abort(grpc.StatusCode.NOT_FOUND, "no such person")
            auth = dict(context.invocation_metadata()).get("authorization", "")
            return pb.HelloReply(message=f"Hello {request.name}!", echoes=[auth] if auth else [])

        def SayHellos(self, request: Any, context: Any) -> Any:
            for number in range(request.times):
                yield pb.HelloReply(message=f"Hello {request.name} #{number + 1}")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    greet_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield proto, port
    finally:
        server.stop(grace=None).wait(10)


async def test_grpc_calls_a_unary_and_a_server_streaming_method(
        greeter: tuple[Path, int]) -> None:
    proto, port = greeter
    service = f"{{name: greet.v1.Greeter, host: 127.0.0.1, port: {port}}}"
    answer = await run(f"""
use:
  authentications:
    caller: {{bearer: {{token: s3cret}}}}
do:
  - greet:
      call: grpc
      with:
        proto: {{endpoint: "file://{proto}"}}
        service: {{name: greet.v1.Greeter, host: 127.0.0.1, port: {port},
                  authentication: {{use: caller}}}}
        method: SayHello
        arguments: {{name: '${{ .user }}'}}
  - many:
      call: grpc
      with: {{proto: {{endpoint: "file://{proto}"}}, service: {service}, method: SayHellos,
             arguments: {{name: Ada, times: 2}}}}
      output: {{as: '{{first: $input.message, auth: $input.echoes[0], streamed: [.[].message]}}'}}
""", {"user": "Grace"})
    assert answer == {"first": "Hello Grace!", "auth": "Bearer s3cret",
                      "streamed": ["Hello Ada #1", "Hello Ada #2"]}
    for method, arguments, text in (("SayHello", "{name: nobody}", "no such person"),
                                    ("Shout", "{}", "has no method 'Shout'"),
                                    ("SayHello", "{unknown: 1}", "Bad gRPC Arguments")):
        with pytest.raises(WorkflowError, match=text) as caught:
            await run(f"""
do:
  - greet:
      call: grpc
      with: {{proto: {{endpoint: "file://{proto}"}}, service: {service},
             method: {method}, arguments: {arguments}}}
""")
        assert caught.value.error["instance"] == "/do/0/greet"
    with pytest.raises(WorkflowError, match="gRPC NOT_FOUND") as caught:
        await run(f"""
do:
  - greet:
      call: grpc
      with: {{proto: {{endpoint: "file://{proto}"}}, service: {service},
             method: SayHello, arguments: {{name: nobody}}}}
""")
    assert caught.value.error["status"] == 404


async def test_emit_outputs_the_cloud_event_it_published() -> None:
    bus = EventBus()
    definition = parse_definition(HEAD + """
do:
  - emitEvent:
      emit:
        event:
          with:
            source: https://fake-source.com
            type: com.fake-source.user.greeted.v1
            data:
              greetings: ${ "Hello \\(.user.firstName) \\(.user.lastName)!" }
""")
    with bus.listen() as seen:
        event = await execute(definition, run=Run(definition, {
            "user": {"firstName": "John", "lastName": "Doe"}}, bus=bus))
        assert seen.get_nowait() == event
    assert set(event) >= {"id", "specversion", "time", "source", "type", "data"}
    assert (event["source"], event["type"], event["data"]) == (
        "https://fake-source.com", "com.fake-source.user.greeted.v1",
        {"greetings": "Hello John Doe!"})


async def _listening(run: Run, pointer: str) -> None:
    """Until the task at ``pointer`` has started and its listener is on the bus (the one
    before it has left: it leaves before its task finishes)."""
    for _ in range(2000):
        if ("task_started", pointer) in run.events and run.bus.listeners:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{pointer} is not listening after 10 s")


async def test_listen_waits_for_the_events_it_asks_for() -> None:
    definition = parse_definition(HEAD + """
do:
  - vitals:
      listen:
        to:
          any:
            - with: {type: com.hospital.temperature, data: '${ .temperature > 38 }'}
            - with: {type: 'com\\.hospital\\.b.*', data: '${ .bpm < 60 }'}
          until: '${ length == 2 }'
      foreach:
        item: reading
        do:
          - note: {set: {seen: '${ $reading }'}}
      export: {as: '{vitals: .}'}
  - both:
      listen:
        to:
          all:
            - with: {type: com.lab.blood}
            - with: {type: com.lab.urine}
        read: envelope
      output: {as: '[.[].type]'}
      export: {as: '$context + {labs: .}'}
  - shift:
      listen:
        to:
          any: []
          until:
            one: {with: {type: com.shift.ended}}
      output: {as: '$context + {notes: .}'}
""")
    run = Run(definition, {}, bus=EventBus())
    task = asyncio.ensure_future(execute(definition, run=run))

    def publish(kind: str, data: Any = None) -> None:
        run.bus.publish({"source": "ward-7", "type": kind, "data": data})

    await _listening(run, "/do/0/vitals")
    publish("com.hospital.temperature", {"temperature": 36})  # not a fever: not taken
    publish("com.hospital.temperature", {"temperature": 39})
    publish("com.other", {})
    publish("com.hospital.bpm", {"bpm": 50})
    await _listening(run, "/do/1/both")
    for kind in ("com.lab.urine", "com.lab.urine", "com.lab.blood"):
        publish(kind)
    await _listening(run, "/do/2/shift")
    publish("com.note", {"n": 1})
    publish("com.shift.ended")  # ends it; not among what it consumed
    assert await asyncio.wait_for(task, 10) == {
        "vitals": [{"seen": {"temperature": 39}}, {"seen": {"bpm": 50}}],
        "labs": ["com.lab.urine", "com.lab.blood"], "notes": [{"n": 1}]}
    with pytest.raises(ValueError, match="an event needs source"):
        run.bus.publish({"type": "x"})


async def test_a_cancel_ends_a_listen_at_once() -> None:
    definition = parse_definition(HEAD + """
do:
  - forever: {listen: {to: {one: {with: {type: never}}}}}
""")
    run = Run(definition, {}, bus=EventBus())
    task = asyncio.ensure_future(execute(definition, run=run))
    await _listening(run, "/do/0/forever")
    run.control.cancel()
    with pytest.raises(Cancelled):
        await asyncio.wait_for(task, 5)
    assert run.bus.listeners == 0
