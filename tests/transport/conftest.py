"""Every process-actor test must leave no child process and no socket directory behind."""

from __future__ import annotations

import glob
import os
import tempfile
import time
from collections.abc import Iterator

import pytest


def actorstage_processes() -> set[int]:
    """Pids of live processes (zombies included) that run an actorstage child.

    Pipeline node processes rename themselves (``actorstage node ID ...``).
    """
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
                if (b"actorstage.transport" in command or command.startswith(b"actorstage node ")
                        or _is_zombie_child(entry)):
                    pids.add(int(entry))
        except OSError:
            continue
    return pids


def _is_zombie_child(pid: str) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return fields[0] == "Z" and int(fields[1]) == os.getpid()


def socket_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "actorstage-*")))


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    processes, dirs = actorstage_processes(), socket_dirs()
    yield
    deadline = time.monotonic() + 5.0  # an orphaned grandchild may still be on its way out
    while True:
        left = actorstage_processes() - processes
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"child processes left behind: {sorted(left)}"
    assert not socket_dirs() - dirs, f"socket directories left: {socket_dirs() - dirs}"
