"""``resume``: a coroutine begun outside any task (``Link.send_now``) finished in one."""

from __future__ import annotations

import asyncio

import pytest

from actorstage.transport._link import resume

pytestmark = pytest.mark.anyio


async def test_resume_runs_the_rest_passing_results_errors_and_bare_yields_in() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    seen: list[object] = []

    async def body() -> str:
        seen.append(await first)
        await asyncio.sleep(0)  # a bare yield
        try:
            await second
        except KeyError as exc:
            seen.append(exc.args[0])
        return "done"

    coro = body()
    waits_on = coro.send(None)  # its first step, outside any task
    assert waits_on is first
    task = loop.create_task(resume(coro, waits_on))
    first.set_result(1)
    await asyncio.sleep(0.01)
    second.set_exception(KeyError("two"))
    assert await task == "done"
    assert seen == [1, "two"]


async def test_resume_hands_a_cancellation_to_the_coroutine_where_it_waits() -> None:
    loop = asyncio.get_running_loop()
    never = loop.create_future()
    cleaned = []

    async def body() -> None:
        try:
            await never
        finally:
            cleaned.append(True)

    coro = body()
    task = loop.create_task(resume(coro, coro.send(None)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    assert never.cancelled()  # (what it waited on was cancelled too, as in a task of its own)
