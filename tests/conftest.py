"""Every async test runs on asyncio and on uvloop, and must leave no task behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actorstage.testing import leftover_tasks


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def _is_test_runner(task: asyncio.Task[Any]) -> bool:
    return "TestRunner" in getattr(task.get_coro(), "__qualname__", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every async test (they run through anyio) must leave no task behind.
    for item in items:
        if item.get_closest_marker("anyio") is not None and isinstance(item, pytest.Function):
            item.fixturenames.append("_no_leftover_tasks")


@pytest.fixture
async def _no_leftover_tasks(anyio_backend: Any) -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    # Let callbacks that finish cancelled tasks run before looking.
    for _ in range(3):
        await asyncio.sleep(0)
    left = [t for t in leftover_tasks(before) if not _is_test_runner(t)]
    assert not left, f"tasks left running after the test: {left}"
