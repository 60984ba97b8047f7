"""Helpers for testing code that uses actorstage.

``Probe`` is an actor that records what it receives, so a test can wait
for a message instead of sleeping::

    probe = await Probe.spawn(system)
    await worker.tell(Job(reply_to=probe.ref))
    done = await probe.expect(JobDone)

``wait_until`` waits for a condition no event announces, and
``leftover_tasks`` helps a test assert that nothing kept running.
``postgres_server()`` runs a throwaway PostgreSQL server, for testing a durable
runner on a real database; ``ray_cluster()`` a throwaway Ray cluster on loopback, for
testing process actors placed on Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from actorstage.actors._actor import Actor
from actorstage.actors._message import Terminated
from actorstage.actors._ref import ActorRef
from actorstage.actors._system import ActorSystem

__all__ = ["Probe", "leftover_tasks", "postgres_server", "ray_cluster", "wait_until"]

T = TypeVar("T")


_SYNC = object()


class _ProbeActor(Actor):
    __slots__ = ("_inbox",)

    def __init__(self, inbox: asyncio.Queue[Any]) -> None:
        self._inbox = inbox

    async def receive(self, message: Any) -> Any:
        if message is not _SYNC:
            self._inbox.put_nowait(message)
        return None


class Probe:
    """An actor that records every message it receives, for tests to await.

    Attributes:
        ref: The probe's actor ref; give it to the code under test.
        received: Every message received so far, in order.
    """

    def __init__(self, ref: ActorRef, inbox: asyncio.Queue[Any]) -> None:
        self.ref = ref
        self.received: list[Any] = []
        self._inbox = inbox

    @classmethod
    async def spawn(cls, system: ActorSystem, name: str | None = None) -> Probe:
        """Spawn a probe actor in ``system``."""
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        ref = await system.spawn(_ProbeActor, inbox, name=name, mailbox_size=100_000)
        return cls(ref, inbox)

    async def receive(self) -> Any:
        """The next message (bound the wait with ``anyio.fail_after``)."""
        message = await self._inbox.get()
        self.received.append(message)
        return message

    async def expect(self, kind: type[T], where: Callable[[T], bool] | None = None) -> T:
        """Wait for the next message of type ``kind`` (and matching ``where``).

        Messages that do not match are kept in ``received`` and skipped.
        """
        while True:
            message = await self.receive()
            if isinstance(message, kind) and (where is None or where(message)):
                return message

    async def expect_terminated(self, ref: ActorRef) -> Terminated:
        """Wait for ``Terminated`` of ``ref`` (watch it first with ``watch``)."""
        return await self.expect(Terminated, lambda t: t.ref == ref)

    def watch(self, ref: ActorRef) -> None:
        """Have the probe watch ``ref``: it will receive ``Terminated`` once."""
        from actorstage.actors._watch import watch

        watch(self.ref._cell, ref._cell)

    async def sync(self) -> None:
        """Wait until every message sent to the probe before this call has been received.

        Messages are handled in order, so after ``sync`` returns, ``pending()``
        counts all of them.
        """
        await self.ref.ask(_SYNC)

    def pending(self) -> int:
        """Messages received but not yet taken by ``receive``/``expect`` (see ``sync``)."""
        return self._inbox.qsize()


async def wait_until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` is true, checking it after every turn of the event loop.

    For states no event announces; bound the wait with ``anyio.fail_after``.
    """
    while not condition():  # noqa: ASYNC110 - an arbitrary condition has no event to wait on
        await asyncio.sleep(0)


def leftover_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks that are running now and were not in ``before`` (other than the caller)."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()]


@contextlib.contextmanager
def postgres_server(options: dict[str, str] | None = None) -> Iterator[str]:
    """A throwaway PostgreSQL server: ``with postgres_server() as url:`` gives
    ``postgresql://postgres@127.0.0.1:PORT`` (add ``/DATABASE``; ``postgres`` exists).

    It runs the binaries of Debian's ``postgresql`` package (or ``initdb`` on the
    PATH) on a free loopback port and a private socket folder, with fsync off, as the
    ``postgres`` user when run as root; it is stopped (by its pid) and its files removed
    on leaving. ``FileNotFoundError`` when PostgreSQL is not installed.
    """
    import glob
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or \
        [path for path in [shutil.which("initdb")] if path]
    if not found:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    bindir = Path(found[-1]).resolve().parent
    user = "postgres" if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="actorstage-pg-", dir="/tmp"))
    data, sockets, log = home / "data", home / "sockets", home / "postgres.log"
    sockets.mkdir()
    if user is not None:
        shutil.chown(home, user, user)
        shutil.chown(sockets, user, user)
    server: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True,
                       capture_output=True, user=user, timeout=120)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        settings = {"listen_addresses": "127.0.0.1", "fsync": "off", "autovacuum": "off",
                    "max_connections": "200", **(options or {})}
        with log.open("wb") as output:
            server = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k",
                 str(sockets), *(part for name, value in settings.items()
                                 for part in ("-c", f"{name}={value}"))],
                stdout=subprocess.DEVNULL, stderr=output, user=user)
        for _ in range(300):
            if subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port),
                               "-U", "postgres"], capture_output=True).returncode == 0:
                break
            if server.poll() is not None:
                raise RuntimeError(f"postgres did not start: {log.read_text()!r}")
            time.sleep(0.1)
        else:
            raise RuntimeError("postgres did not accept connections within 30 s")
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # a fast shutdown
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def ray_cluster(nodes: dict[str, dict[str, float]] | None = None, *,
                num_cpus: int = 2) -> Iterator[Any]:
    """A throwaway Ray cluster on this machine, all of it on loopback: ``with
    ray_cluster({"node_b": {"node_b": 1}}) as cluster:`` runs a head and one more raylet
    per entry of ``nodes``, which offers those custom resources. ``cluster.address`` is
    its address (for ``RayPlacement``), ``cluster.node_ids[name]`` each raylet's node id
    (``"head"`` too). This process is connected to it while it runs. On leaving, Ray is
    shut down and the cluster stopped. Needs Ray (``pip install 'actorstage[ray]'``).
    """
    import logging
    import os

    # Ray's own switch for one-machine clusters: every address it picks is loopback.
    saved = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    enabled, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    cluster: Any = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": num_cpus, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
        cluster.node_ids = {"head": cluster.head_node.node_id}
        for name, resources in (nodes or {}).items():
            node = cluster.add_node(num_cpus=num_cpus, resources=resources,
                                    node_ip_address="127.0.0.1")
            cluster.node_ids[name] = node.node_id
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = enabled
        if saved is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved
