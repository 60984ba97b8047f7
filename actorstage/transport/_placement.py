"""Process actors whose process the parent does not start itself: it joins.

``ProcessOptions(transport="tcp", placement=JoinPlacement(launch))`` has the parent
make a join bundle (its bridge's address, a one-time token and secret, and over
TLS a certificate of the tree for the child) and call ``launch(bundle)``, which
starts the process wherever it runs (a container, a pod, a unit of systemd, a
Ray actor) with the bundle in its environment (``ACTORSTAGE_JOIN``) or in a
file, never on its command line. That process runs ``actorstage join``
(``join_main()``), connects back, and is from then on an ordinary process
actor of the tree: supervised, restarted (``launch`` is called again), paused,
stopped. Its end is seen through its link, or through what ``launch`` returned
(an object with ``async wait()``, and ``kill()``, both optional).

A joined process may run on another machine: payloads never go through shared
memory with it (the parent's process sends them inline while the system that
placed it runs), and it takes no direct links (its messages to siblings go
through the tree).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ENV_JOIN", "JoinPlacement", "JoinedProcess", "decode_bundle", "encode_bundle"]

ENV_JOIN = "ACTORSTAGE_JOIN"
LOST_GRACE = 2.0  # seconds a lost link waits for the launcher to report the process's end


class JoinPlacement:
    """Start a process actor's process with ``launch(bundle)`` (see the module's text)."""

    def __init__(self, launch: Callable[[str], Awaitable[Any]]) -> None:
        if not callable(launch):
            from actorstage.exceptions import InvalidDefinitionError

            raise InvalidDefinitionError(f"JoinPlacement needs a launch function, got {launch!r}")
        self.launch = launch

    def __repr__(self) -> str:
        return f"JoinPlacement({getattr(self.launch, '__qualname__', self.launch)!r})"

    async def start(self, bundle: str) -> JoinedProcess:
        return JoinedProcess(await self.launch(bundle))


def encode_bundle(boot: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(boot).encode()).decode()


def decode_bundle(text: str) -> dict[str, Any]:
    try:
        boot = json.loads(base64.urlsafe_b64decode(text.strip().encode()))
    except ValueError as exc:
        raise ValueError(f"not a join bundle of actorstage ({exc})") from None
    if not isinstance(boot, dict) or not boot.get("joined") or "address" not in boot:
        raise ValueError("not a join bundle of actorstage (no address)")
    return boot


class JoinedProcess:
    """What the parent's host keeps of a joined process, in place of a subprocess: its
    pid once it has said hello, its end (from its launcher, or its link's loss), a kill
    through its launcher."""

    stdin = stdout = stderr = None

    def __init__(self, launched: Any) -> None:
        self.launched = launched
        self.pid = 0
        self.returncode: int | None = None
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watcher: asyncio.Task[None] | None = None
        self._grace: asyncio.TimerHandle | None = None
        wait = getattr(launched, "wait", None)
        if wait is not None:
            self._watcher = asyncio.ensure_future(self._watch(wait))

    async def _watch(self, wait: Callable[[], Awaitable[Any]]) -> None:
        status = await wait()
        self._end(status if isinstance(status, int) else None)

    def _end(self, status: int | None) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if not self.exited.done():
            self.returncode = status
            self.exited.set_result(None)

    def lost(self) -> None:
        """Its link is gone: it has ended, as its launcher says within ``LOST_GRACE``
        seconds (its status), or else with its status unknown."""
        if self._watcher is None or self._watcher.done():
            self._end(None)
        elif self._grace is None:
            self._grace = asyncio.get_running_loop().call_later(LOST_GRACE, self._give_up)

    def _give_up(self) -> None:
        self._grace = None
        if self._watcher is not None:
            self._watcher.cancel()
        self._end(None)

    async def wait(self) -> int | None:
        await asyncio.shield(self.exited)
        return self.returncode

    def terminate(self) -> None:
        self.kill()

    def explain(self) -> str:
        """What its launcher can say about why it has not joined yet (may be nothing)."""
        explain = getattr(self.launched, "explain", None)
        return str(explain()) if explain is not None else ""

    def kill(self) -> None:
        kill = getattr(self.launched, "kill", None)
        if kill is not None:
            with contextlib.suppress(Exception):
                kill()
        self._end(None)
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
