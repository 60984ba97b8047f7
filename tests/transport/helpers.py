"""Helpers the process-actor tests share (not imported by child processes)."""

from __future__ import annotations

from typing import Any

from actorstage import ActorRef, ActorSystem, ChildSpec, ProcessOptions, Supervisor

# Heartbeats fast enough that a test notices a hung or dead child within 1.5 s.
FAST = ProcessOptions(heartbeat_interval=0.2, heartbeat_timeout=1.5)


async def supervised(
    system: ActorSystem, factory: type[Any], process: ProcessOptions | bool, name: str = "w"
) -> ActorRef:
    """The ref of a process actor started under a fresh one-for-one supervisor."""
    sup = await system.spawn(Supervisor, children=[ChildSpec(name, factory, process=process)])
    ref = system.lookup(f"{sup.path}/{name}")
    assert ref is not None
    return ref


def tree_of(root: int) -> set[int]:
    """The live descendants of process ``root`` (zombies excepted)."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_and_wait(proc: Any, pids: set[int], within: float = 2.0,
                  gone: Any = lambda: True) -> None:
    """SIGKILL ``proc``; assert that ``pids`` are gone (and ``gone()`` holds) ``within`` s."""
    import time

    proc.kill()
    proc.wait(timeout=5)
    deadline = time.monotonic() + within
    while (any(map(alive, pids)) or not gone()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [pid for pid in pids if alive(pid)], "descendants outlived their parent"


def end(proc: Any, pids: set[int]) -> None:
    """After a test: kill what it started that is still there (when it failed), by pid."""
    import os
    import signal

    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.communicate()  # reaps it and closes the pipes
