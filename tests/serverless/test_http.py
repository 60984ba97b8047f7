"""``call: http`` against an HTTP server the test runs on a loopback port: URI templates,
bodies, headers, queries, output modes, redirects, authentication, and the communication
error a try/catch takes (the conformance kit's try scenarios, with a local server)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from actorstage.serverless import WorkflowError, execute, parse_definition

pytestmark = pytest.mark.anyio

HEAD = "document: {dsl: '1.0.3', namespace: default, name: http, version: '1.0.0'}\n"


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def pet(request: web.Request) -> web.Response:
        number = int(request.match_info["id"])
        if number == 404:
            raise web.HTTPNotFound(text="no such pet")
        return web.json_response({"id": number, "name": f"pet-{number}"})

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"method": request.method, "query": dict(request.query),
                                  "header": request.headers.get("X-Trace"),
                                  "auth": request.headers.get("Authorization"),
                                  "body": await request.json() if request.can_read_body
                                  else None})

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/pets/7")

    async def unavailable(request: web.Request) -> web.Response:
        raise web.HTTPServiceUnavailable()

    app = web.Application()
    app.add_routes([web.get("/pets/{id}", pet), web.route("*", "/echo", echo),
                    web.get("/moved", moved), web.get("/down", unavailable)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def run(body: str, data: Any = None) -> Any:
    return await execute(parse_definition(HEAD + body), data)


async def test_get_with_a_uri_template_and_output_filtering(server: str) -> None:
    out = await run(f"""
do:
  - getPet:
      call: http
      with: {{method: get, endpoint: {{uri: '{server}/pets/{{petId}}'}}}}
      output: {{as: .name}}
  - pair:
      set: {{names: '${{ [$input, "x"] }}'}}
""", {"petId": 3})
    assert out == {"names": ["pet-3", "x"]}


async def test_post_sends_body_headers_and_query_and_output_modes(server: str) -> None:
    out = await run(f"""
do:
  - send:
      call: http
      with:
        method: post
        endpoint: '{server}/echo'
        headers: {{X-Trace: '${{ .trace }}'}}
        query: {{page: 2}}
        body: {{greeting: '${{ "hello " + .who }}'}}
""", {"trace": "t-1", "who": "you"})
    assert out == {"method": "POST", "query": {"page": "2"}, "header": "t-1", "auth": None,
                   "body": {"greeting": "hello you"}}
    response = await run(f"""
do:
  - full: {{call: http, with: {{method: get, endpoint: '{server}/pets/5', output: response}}}}
""")
    assert response["statusCode"] == 200 and response["content"] == {"id": 5, "name": "pet-5"}
    assert response["request"]["method"] == "GET"
    raw = await run(f"""
do:
  - bytes: {{call: http, with: {{method: get, endpoint: '{server}/pets/5', output: raw}}}}
""")
    assert base64.b64decode(raw) == b'{"id": 5, "name": "pet-5"}'


async def test_authentication_basic_bearer_and_by_name(server: str) -> None:
    out = await run(f"""
use:
  authentications:
    api: {{bearer: {{token: s3cret}}}}
do:
  - basic:
      call: http
      with:
        method: get
        endpoint:
          uri: '{server}/echo'
          authentication: {{basic: {{username: ann, password: pw}}}}
      output: {{as: '{{basic: .auth}}'}}
  - named:
      call: http
      with: {{method: get, endpoint: {{uri: '{server}/echo', authentication: api}}}}
      output: {{as: '$input + {{bearer: .auth}}'}}
""")
    assert out == {"basic": "Basic " + base64.b64encode(b"ann:pw").decode(),
                   "bearer": "Bearer s3cret"}


async def test_errors_are_the_dsls_communication_errors_and_try_catches_them(
        server: str) -> None:
    caught = await run(f"""
do:
  - tryGetPet:
      try:
        - getPet:
            call: http
            with: {{method: get, endpoint: '{server}/pets/404'}}
      catch:
        errors: {{with: {{type: 'https://serverlessworkflow.io/spec/1.0.0/errors/communication',
                         status: 404}}}}
        as: err
        do:
          - setError: {{set: {{error: '${{ $err }}'}}}}
""")
    error = caught["error"]
    assert (error["status"], error["instance"]) == (404, "/do/0/tryGetPet/try/0/getPet")
    assert error["type"].endswith("/errors/communication") and error["title"] == "HTTP 404"
    with pytest.raises(WorkflowError) as uncaught:
        await run(f"""
do:
  - tryGetPet:
      try: [{{down: {{call: http, with: {{method: get, endpoint: '{server}/down'}}}}}}]
      catch: {{errors: {{with: {{status: 404}}}}}}
""")
    assert uncaught.value.error["status"] == 503
    with pytest.raises(WorkflowError, match="HTTP 302"):
        await run(f"do:\n  - m: {{call: http, with: {{method: get, "
                  f"endpoint: '{server}/moved'}}}}\n")
    followed = await run(f"""
do:
  - m: {{call: http, with: {{method: get, endpoint: '{server}/moved', redirect: true}}}}
""")
    assert followed == {"id": 7, "name": "pet-7"}
    with pytest.raises(WorkflowError, match="status 500"):  # nobody listens there
        await run("do:\n  - x: {call: http, with: {method: get, endpoint: 'http://127.0.0.1:1/'}}\n")
