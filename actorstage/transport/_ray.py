"""Process actors placed on a Ray cluster: ``ProcessOptions(placement=RayPlacement(...))``.

Ray schedules, actorstage talks. The placement asks Ray for an actor with the
requested resources (CPUs, GPUs, custom resources, a runtime environment, a
scheduling strategy); Ray puts it on a node where they fit (or it waits, up
to the process actor's ``start_timeout``). That Ray actor starts ``actorstage
join`` as its own child process, with the join bundle in its environment, and
waits on it; the process connects back to the parent over TCP (with TLS off
loopback) and is from then on an ordinary process actor of the tree. Messages
never go through Ray: they travel on actorstage's own link.

Its end is the Ray actor's: when the process stops, the Ray actor's call
returns and the actor is released; when the Ray actor dies (``ray.kill``, its
node lost), its child dies with it (a parent-death signal), the link drops,
and the supervisor restarts the process actor by policy, for which Ray places
a new Ray actor. A kill from actorstage is ``ray.kill``.

Ray is imported only here, when a placement starts a process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from typing import Any

from actorstage.transport._placement import ENV_JOIN, JoinedProcess

__all__ = ["RayPlacement"]

_HOSTS: dict[tuple[Any, ...], Any] = {}  # the remote class, by its options


class RayPlacement:
    """Where Ray should run a process actor (see the module's text). ``address``: the
    cluster (``ray.init``'s; ``None``: the one this process is connected to, or
    ``RAY_ADDRESS``); the rest are Ray's actor options."""

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

    def __repr__(self) -> str:
        wants = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, **self.resources}
        return f"RayPlacement({self.address or 'the connected cluster'}, {wants})"

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
        remote: Any = ray.remote(RayHost)
        host = remote.options(**{key: value for key, value in options.items()
                                 if value is not None}).remote()
        return JoinedProcess(RayLaunched(host, host.run.remote(bundle, sys.path)))


class RayHost:
    """The Ray actor that hosts a process actor's process: runs ``actorstage join`` as its
    child (which dies with it) and returns its exit status."""

    def run(self, bundle: str, paths: list[str]) -> int:
        env = dict(os.environ, **{ENV_JOIN: bundle, "ACTORSTAGE_DIE_WITH_PARENT": "1",
                                  "ACTORSTAGE_RAY_NODE": self.node()})
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).strip(os.pathsep)
        done = subprocess.run([sys.executable, "-m", "actorstage", "join"], env=env,
                              stdin=subprocess.DEVNULL, check=False)
        return done.returncode

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())


class RayLaunched:
    """What the parent holds of a Ray-placed process: its end, and a kill."""

    def __init__(self, host: Any, running: Any) -> None:
        self.host = host
        self.running = running

    async def wait(self) -> int | None:
        try:
            status = await self.running
        except Exception:  # the Ray actor died (killed, its node lost): no status
            return None
        return int(status)

    def kill(self) -> None:
        import ray

        ray.kill(self.host)
