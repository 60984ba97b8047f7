"""The actor tree behind the web examples: counters per key, and a pool of process actors.

``/user/counters`` is a supervisor that gets one ``Counter`` per key, started
on demand by ``/user/keys``. ``/user/pool`` supervises ``POOL_SIZE``
``Hasher`` actors, each in a child process of its own, so CPU-heavy work
never blocks the web server's event loop.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any

from actorstage import Actor, ActorRef, ActorSystem, ChildSpec, Message, Supervisor
from actorstage.supervisors import SupervisorRef

POOL_SIZE = 2
MAX_KEYS = 10_000
DEFAULT_TIMEOUT = 5.0  # seconds a request may take when it does not say
MAX_TIMEOUT = 60.0


class Add(Message, frozen=True):
    amount: int = 1


class Crash(Message, frozen=True):
    """Makes a counter fail on purpose (its supervisor restarts it, from zero)."""


class CounterFor(Message, frozen=True):
    key: str


class Hash(Message, frozen=True):
    data: str
    rounds: int  # 0: fail on purpose (its supervisor restarts the process)


class Hashed(Message, frozen=True):
    digest: str
    pid: int


class TooManyKeys(Exception):
    """More keys than the app keeps counters for."""


class Counter(Actor):
    """The count of one key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.count = 0

    async def receive(self, message: Add | Crash) -> int:
        if isinstance(message, Crash):
            raise RuntimeError(f"counter {self.key!r} crashed on purpose")
        self.count += message.amount
        return self.count


class Keys(Actor):
    """Hands out the counter of a key, starting it the first time the key is seen.

    One actor answers these, one message at a time, so two requests for a new
    key never start two counters.
    """

    def __init__(self, counters: SupervisorRef) -> None:
        self.counters = counters
        self.refs: dict[str, ActorRef] = {}

    async def receive(self, message: CounterFor) -> ActorRef:
        ref = self.refs.get(message.key)
        if ref is None:
            if len(self.refs) >= MAX_KEYS:
                raise TooManyKeys(f"this app keeps at most {MAX_KEYS} counters")
            spec = ChildSpec(f"counter-{len(self.refs) + 1}", Counter, (message.key,))
            ref = self.refs[message.key] = await self.counters.start_child(spec)
        return ref


class Hasher(Actor):
    """CPU-bound work in a process of its own: iterated SHA-256."""

    async def receive(self, message: Hash) -> Hashed:
        if message.rounds == 0:
            raise RuntimeError(f"hasher in process {os.getpid()} failed on purpose")
        digest = message.data.encode()
        for _ in range(message.rounds):
            digest = hashlib.sha256(digest).digest()
        return Hashed(digest.hex(), os.getpid())


def request_timeout(header: str | None) -> float:
    """The seconds an ``X-Request-Timeout`` header gives a request; ``ValueError`` naming
    what is wrong with it."""
    if header is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(header)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"X-Request-Timeout must be a number of seconds in "
                         f"(0, {MAX_TIMEOUT:g}], got {header!r}")
    return seconds


async def build(system: ActorSystem) -> dict[str, Any]:
    """Start the tree; what request handlers need, for the app's state."""
    counters = await system.spawn(Supervisor, name="counters", max_restarts=100, within=1.0)
    keys = await system.spawn(Keys, counters, name="keys")
    await system.spawn(Supervisor, name="pool", max_restarts=10, within=5.0, children=[
        ChildSpec(f"hasher-{n}", Hasher, process=True) for n in range(1, POOL_SIZE + 1)])
    workers = [system.lookup(f"/user/pool/hasher-{n}") for n in range(1, POOL_SIZE + 1)]
    return {"keys": keys, "workers": itertools.cycle(workers)}


class Broken(Actor):
    """An actor that cannot start: the app must not start either."""

    async def on_start(self) -> None:
        raise RuntimeError("the broken worker cannot reach its database")

    async def receive(self, message: object) -> None:
        pass
