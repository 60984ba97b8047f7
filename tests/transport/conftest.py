"""Every process-actor test must leave no process and no socket directory of its own behind.

Only what this test process started counts: its descendants (it is a child
subreaper, so orphaned grandchildren come back to it) and the socket
directories in its private temporary folder (see ``tests/conftest.py``).
Other actorstage programs on the machine are none of its business.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from collections.abc import Iterator

import pytest


def descendants() -> set[int]:
    """Pids of the live processes (zombies excepted) that descend from this one."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def socket_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "actorstage-*")))


@contextlib.contextmanager
def no_leftovers() -> Iterator[None]:
    """Fails unless every process and socket directory started inside is gone after it."""
    processes, dirs = descendants(), socket_dirs()
    yield
    deadline = time.monotonic() + 5.0  # an orphaned grandchild may still be on its way out
    while True:
        left = descendants() - processes
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"child processes left behind: {sorted(left)}"
    assert not socket_dirs() - dirs, f"socket directories left: {socket_dirs() - dirs}"


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    with no_leftovers():
        yield
