"""Process actors placed on a Ray cluster: ``ProcessOptions(placement=RayPlacement(...))``.

Ray schedules, actorstage talks. The placement asks Ray for an actor with the
requested resources (CPUs, GPUs, custom resources, a runtime environment, a
scheduling strategy); Ray puts it on a node where they fit (or it waits, up
to the process actor's ``start_timeout``). That Ray actor's worker process
becomes the process actor's process: it runs ``join_main`` with the join
bundle, connects back to the parent over TCP (with TLS off loopback), and is
from then on an ordinary process actor of the tree. Messages never go
through Ray: they travel on actorstage's own link.

Its end is the Ray actor's: when the actor stops, the Ray actor's call
returns its status and the parent releases the Ray actor; when the Ray actor
dies (``ray.kill``, its node lost), the process is gone with it, the link
drops, and the supervisor restarts the process actor by policy, for which Ray
places a new Ray actor. A kill from actorstage is ``ray.kill``.

Ray is imported only here, when a placement starts a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import Any

from actorstage.transport._placement import JoinedProcess, decode_bundle

__all__ = ["RayPlacement"]

_HOST: list[Any] = []  # RayHost as a Ray actor class, made once


class RayPlacement:
    """Where Ray should run a process actor (see the module's text). ``address``: the
    cluster (``ray.init``'s; ``None``: the one this process is connected to, else Ray's
    own rule: ``$RAY_ADDRESS``, else a new local instance); the rest are Ray's actor
    options."""

    def __init__(self, address: str | None = None, *, num_cpus: float = 1,
                 num_gpus: float = 0, resources: dict[str, float] | None = None,
                 runtime_env: dict[str, Any] | None = None,
                 scheduling_strategy: Any = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = dict(resources or {})
        self.runtime_env = runtime_env
        self.scheduling_strategy = scheduling_strategy

    def _wants(self) -> str:
        return str({"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, **self.resources})

    def __repr__(self) -> str:
        return f"RayPlacement({self.address or 'the connected cluster'}, {self._wants()})"

    async def start(self, bundle: str) -> JoinedProcess:
        import ray

        if not ray.is_initialized():
            await asyncio.to_thread(ray.init, address=self.address, logging_level=logging.ERROR,
                                    log_to_driver=False)
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                   "resources": self.resources or None,
                                   "runtime_env": self.runtime_env}
        if self.scheduling_strategy is not None:
            options["scheduling_strategy"] = self.scheduling_strategy
        if not _HOST:
            _HOST.append(ray.remote(RayHost))
        remote: Any = _HOST[0]
        chosen = {key: value for key, value in options.items() if value is not None}
        host = remote.options(**chosen).remote(decode_bundle(bundle).get("path", ""))
        return JoinedProcess(RayLaunched(host, host.run.remote(bundle, sys.path),
                                         self._wants()))


class RayHost:
    """The Ray actor that hosts a process actor: its worker process becomes the process
    actor's process (no second interpreter to start), and ``run`` returns its exit status
    when the actor has stopped."""

    def __init__(self, title: str = "") -> None:
        self.title = title

    def __repr__(self) -> str:  # what the Ray dashboard and ``ray list actors`` show
        return f"actorstage {self.title}" if self.title else "actorstage"

    def run(self, bundle: str, paths: list[str]) -> int:
        import ray

        from actorstage.transport._child import join_main

        os.environ["ACTORSTAGE_RAY_NODE"] = str(ray.get_runtime_context().get_node_id())
        sys.path.extend(path for path in paths if path not in sys.path)
        with contextlib.suppress(ImportError):  # (what `ps` on its node shows)
            import setproctitle

            setproctitle.setproctitle(f"ray::actorstage {self.title}")
        return join_main(bundle)


class RayLaunched:
    """What the parent holds of a Ray-placed process: its end, a kill, and, while it has
    not joined, whether Ray has placed it yet."""

    def __init__(self, host: Any, running: Any, wants: str) -> None:
        self.host = host
        self.running = running
        self.wants = wants
        self.placed = asyncio.ensure_future(self._placed())

    async def _placed(self) -> bool:
        try:
            await self.host.__ray_ready__.remote()
        except Exception:  # (dead before it was placed: it never will be)
            return False
        return True

    def explain(self) -> str:
        """Why it may not have joined yet, for the start timeout's error."""
        placed = self.placed
        if not placed.done() or placed.cancelled():
            return (f"Ray has not placed it: no node has {self.wants} free (Ray waits for "
                    "them; `ray status` shows what the cluster has)")
        if not placed.result():
            return "its Ray actor died before Ray placed it"
        return "Ray placed it, but it did not connect back (is the parent's address " \
               "reachable from that node? ProcessOptions.host)"

    async def wait(self) -> int | None:
        try:
            status = await self.running
        except Exception:  # the Ray actor died (killed, its node lost): no status
            return None
        finally:
            self.placed.cancel()
        with contextlib.suppress(Exception):  # (Ray may be shut down by now)
            self.kill()  # its worker process ran the actor: it ends with it
        return int(status)

    def kill(self) -> None:
        import ray

        self.placed.cancel()
        ray.kill(self.host)
