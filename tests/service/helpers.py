"""Workflows and a client for the service tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from grpclib.client import Channel

from actorstage.service import (
    ExecuteRequest,
    ProgressEvent,
    RunnerServer,
    RunnerStub,
    ServiceConfig,
    WatchExecutionRequest,
    open_service,
)

S = TypeVar("S")


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
    """An in-process service on a loopback port, and a grpclib client of its runner."""
    async with serving_with(RunnerStub, **settings) as served:
        yield served


@asynccontextmanager
async def serving_with(stub: Callable[[Channel], S], **settings: Any) -> AsyncIterator[
        tuple[RunnerServer, S]]:
    """An in-process service on a loopback port, and ``stub`` on a grpclib channel to it."""
    settings.setdefault("port", 0)
    async with open_service(ServiceConfig(**settings)) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            yield server, stub(channel)
        finally:
            channel.close()


async def run(stub: RunnerStub, request: ExecuteRequest, **kwargs: Any) -> list[ProgressEvent]:
    return [event async for event in stub.execute(request, **kwargs)]


async def until(stub: RunnerStub, execution_id: str, kind: str, after_seq: int = 0) -> int:
    """Watch ``execution_id`` until an event of ``kind``; its seq."""
    async for event in stub.watch_execution(WatchExecutionRequest(execution_id, after_seq)):
        if event.kind == kind:
            return event.seq
    raise AssertionError(f"execution {execution_id} ended without a {kind} event")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while we read
        return False
