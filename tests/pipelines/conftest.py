"""Pipeline tests start node processes and shared memory: each must leave neither behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actorstage._shm import segments
from tests.transport.conftest import _no_leftover_processes

__all__ = ["_no_leftover_processes"]  # autouse: checked after every pipeline test


@pytest.fixture(autouse=True)
def _no_leftover_segments() -> Iterator[None]:
    before = set(segments("actorstage-"))
    yield
    left = set(segments("actorstage-")) - before
    assert not left, f"shared-memory segments left behind: {sorted(left)}"
