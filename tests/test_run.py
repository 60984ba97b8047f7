"""actorstage.run, and the library inside event loops it did not create."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import actorstage
from actorstage import Actor, ActorSystem


class Echo(Actor):
    async def receive(self, message: Any) -> Any:
        return message


async def _roundtrip(value: int) -> tuple[int, str]:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo)
        loop_type = type(asyncio.get_running_loop()).__module__
        return await ref.ask(value), loop_type


def test_run_uses_uvloop_when_installed() -> None:
    value, loop_module = actorstage.run(_roundtrip, 7)
    assert value == 7
    assert loop_module.startswith("uvloop")


def test_run_can_be_told_to_use_plain_asyncio() -> None:
    value, loop_module = actorstage.run(_roundtrip, 8, use_uvloop=False)
    assert value == 8
    assert loop_module.startswith("asyncio")


def test_the_library_sets_no_event_loop_policy() -> None:
    before = asyncio.get_event_loop_policy()
    actorstage.run(_roundtrip, 1)
    assert asyncio.get_event_loop_policy() is before


def test_it_runs_inside_an_existing_asyncio_loop() -> None:
    assert asyncio.run(_roundtrip(3)) == (3, "asyncio.unix_events")


@pytest.mark.anyio
async def test_an_error_in_the_body_propagates_unwrapped() -> None:
    with pytest.raises(KeyError, match="from the body"):
        async with ActorSystem() as system:
            await system.spawn(Echo)
            raise KeyError("from the body")
