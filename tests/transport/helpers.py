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
