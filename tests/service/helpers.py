"""Workflows and a client for the service tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from grpclib.client import Channel

from actorstage.service import (
    ExecuteRequest,
    ProgressEvent,
    RunnerServer,
    RunnerStub,
    ServiceConfig,
    open_service,
)


def workflow(*actions: tuple[str, str, dict[str, Any]], workflow_id: str = "wf") -> str:
    """A one-stage workflow definition as YAML-compatible JSON text."""
    return json.dumps({"id": workflow_id, "stages": [{"id": "main", "actions": [
        {"id": action_id, "action": action, "params": params}
        for action_id, action, params in actions]}]})


SHORT = workflow(("hello", "log", {"message": "hi"}),
                 ("put", "store.set", {"key": "answer", "value": 42}))

YAML = """\
id: yaml-flow
stages:
  - id: first
    actions:
      - {id: put, action: store.set, params: {key: greeting, value: hello}}
      - {id: nap, action: sleep, params: {seconds: 0.01}}
"""


def long(seconds: float = 30.0) -> str:
    return workflow(("before", "store.set", {"key": "before", "value": True}),
                    ("nap", "sleep", {"seconds": seconds}),
                    ("after", "store.set", {"key": "after", "value": True}))


@asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[tuple[RunnerServer, RunnerStub]]:
    """An in-process service on a loopback port, and a grpclib client of it."""
    settings.setdefault("port", 0)
    async with open_service(ServiceConfig(**settings)) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            yield server, RunnerStub(channel)
        finally:
            channel.close()


async def run(stub: RunnerStub, request: ExecuteRequest, **kwargs: Any) -> list[ProgressEvent]:
    return [event async for event in stub.execute(request, **kwargs)]
