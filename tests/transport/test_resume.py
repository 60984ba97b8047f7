"""``resume``: a coroutine begun outside any task (``Link.send_now``) finished in one."""

from __future__ import annotations

import asyncio

import pytest

from actorstage.transport._link import resume

pytestmark = pytest.mark.anyio


async def test_resume_runs_the_rest_passing_results_errors_and_bare_yields_in() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    waiting = asyncio.Event()
    seen: list[object] = []

    async def body() -> str:
        seen.append(await first)
        await asyncio.sleep(0)  # a bare yield
        waiting.set()
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
    await waiting.wait()  # (it waits on `second` by now, in the task)
    second.set_exception(KeyError("two"))
    assert await task == "done"
    assert seen == [1, "two"]


async def test_resume_hands_a_cancellation_to_the_coroutine_where_it_waits() -> None:
    loop = asyncio.get_running_loop()
    resumed, never = loop.create_future(), loop.create_future()
    waiting = asyncio.Event()
    cleaned = []

    async def body() -> None:
        await resumed  # (its first step yields this, outside any task)
        waiting.set()
        try:
            await never
        finally:
            cleaned.append(True)

    coro = body()
    task = loop.create_task(resume(coro, coro.send(None)))
    resumed.set_result(None)
    await waiting.wait()  # (it waits on `never` by now, in the task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    assert never.cancelled()  # (what it waited on was cancelled too, as in a task of its own)
