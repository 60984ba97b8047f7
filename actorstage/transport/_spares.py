"""Spare children: forked ahead of time, connected, waiting for an actor to run.

With ``start="forkserver"``, a system keeps ``ProcessOptions.spares``
children ready for each kind of child it starts (the same forkserver,
transport and limits): forked from the forkserver (which has the last
actor's module imported), their event loop running, their connection to
the parent open and their hello said. A spawn that finds one sends it the
actor's ``SpawnSpec`` and is done with a round trip, where a fork, a loop,
an HTTP/2 connection and a hello would take ten times as long. The spawn
that takes a spare (or finds none) starts a new one in the background, once
its own actor has started.

A spare is an ordinary child of this system in all but its actor: the
guard knows it, it dies with its parent, and the system ends it when it
closes. One that dies while it waits is dropped when it is next looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from actorstage import _shm
from actorstage._telemetry import for_child
from actorstage.transport._guard import lineage
from actorstage.transport._payloads import prefix_of

if TYPE_CHECKING:
    from actorstage.actors._system import ActorSystem
    from actorstage.transport._conn import Conn
    from actorstage.transport._forkserver import ForkedProcess
    from actorstage.transport._options import ProcessOptions
    from actorstage.transport._server import BridgeServer, Expected

__all__ = ["Spare", "SparePool"]

log = logging.getLogger("actorstage.transport")

Key = tuple[Any, ...]


@dataclass
class Spare:
    proc: ForkedProcess
    conn: Conn | None  # None for stdio: the child's pipes are its connection
    server: BridgeServer | None
    expected: Expected | None


class SparePool:
    """A system's spare children, by the kind of child they can become."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.spares: dict[Key, list[Spare]] = {}
        self.making: dict[Key, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    @staticmethod
    def key(options: ProcessOptions, command: list[str], env: dict[str, str]) -> Key:
        return (tuple(command), tuple(sorted(env.items())), options.cwd, options.transport,
                options.host, options.max_frame_size, options.link_idle_timeout,
                options.handshake_timeout)

    def take(self, key: Key) -> Spare | None:
        """A live spare for ``key``, if one is ready."""
        spares = self.spares.get(key)
        while spares:
            spare = spares.pop()
            closed = getattr(spare.conn, "closed", None)  # (a GrpcConn's; stdio: none)
            if spare.proc.returncode is None and not (
                    isinstance(closed, asyncio.Future) and closed.done()):
                return spare
            self._end(spare)
        return None

    def refill(self, key: Key, options: ProcessOptions, command: list[str],
               env: dict[str, str], request: dict[str, Any]) -> None:
        """Start spares in the background until ``key`` has ``options.spares`` of them."""
        if self.closed:
            return
        wanted = options.spares - len(self.spares.get(key, ())) - self.making.get(key, 0)
        for _ in range(max(wanted, 0)):
            self.making[key] = self.making.get(key, 0) + 1
            task = asyncio.ensure_future(self._make(key, options, command, env, request))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _make(self, key: Key, options: ProcessOptions, command: list[str],
                    env: dict[str, str], request: dict[str, Any]) -> None:
        system = self.system
        spare: Spare | None = None
        try:
            guard = await system._guard()
            server = await system._forkserver(command, env, options.cwd)
            boot: dict[str, Any] = {
                "transport": options.transport, "ppid": server.pid, "owner": os.getpid(),
                "telemetry": for_child(),
                "max_frame_size": options.max_frame_size,
                "link_idle": options.link_idle_timeout, "ancestors": lineage(), "spare": True}
            bridge = expected = None
            if options.transport != "stdio":
                bridge, expected = await system._expect_child(options, boot, "spare")
            proc = await server.fork(dict(request, boot=msgspec.json.encode(boot)),
                                     options.max_frame_size + 1024)
            if guard is not None:
                guard.child(proc.pid, proc.pidfd)
                guard.sweep(str(_shm.SHM_DIR), prefix_of(proc.pid))
            spare = Spare(proc, None, bridge, expected)
            assert proc.stdin is not None
            if expected is not None:
                from actorstage.transport._server import hello_or_exit

                proc.stdin.close()
                async with asyncio.timeout(options.start_timeout):
                    conn = await hello_or_exit(expected, proc)
                if conn is None:
                    raise ConnectionError(f"the spare child (pid {proc.pid}) exited")
                spare.conn = conn
                await conn.open_reply()
            if not self.closed:
                self.spares.setdefault(key, []).append(spare)
                spare = None
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the next spawn forks as usual, and tries again
            log.warning("could not start a spare child process: %s", exc)
        finally:
            self.making[key] -= 1
            if spare is not None:
                self._end(spare)

    def _end(self, spare: Spare) -> None:
        if spare.server is not None and spare.expected is not None:
            spare.server.forget(spare.expected)
        with contextlib.suppress(ProcessLookupError, OSError):
            spare.proc.kill()
        task = asyncio.ensure_future(self._reap(spare))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _reap(spare: Spare) -> None:
        if spare.conn is not None:
            with contextlib.suppress(Exception):
                await spare.conn.aclose()
        if spare.proc.stdin is not None:
            with contextlib.suppress(Exception):
                spare.proc.stdin.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(spare.proc.wait(), 5.0)
        if spare.proc.returncode is None:
            log.warning("spare child %s did not exit", spare.proc.pid)
        _shm.sweep(prefix_of(spare.proc.pid))

    async def aclose(self) -> None:
        """End every spare (the system is closing)."""
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5.0)
        spares = [spare for group in self.spares.values() for spare in group]
        self.spares.clear()
        for spare in spares:
            self._end(spare)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=10.0)


def request_for(factory: type, main: tuple[str, str]) -> dict[str, Any]:
    """What the forkserver needs to fork a spare like a child of ``factory`` (its module
    and the program's script, imported already)."""
    return {"module": factory.__module__, "main_path": main[0], "main_module": main[1],
            "sys_path": [entry for entry in sys.path if entry]}
