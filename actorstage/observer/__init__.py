"""The live observer: a page that shows an actor system as it runs.

``async with system.observer(port=8000) as observer:`` serves it (``observer.url``):
the supervision tree (local and process actors, pids, status, restarts, mailbox
depth, messages per second), crashes with their tracebacks, escalations, pauses
and resumes; this process's workflow executions with their progress; its pipeline
sessions' nodes, with throughput and queue charts. It updates by server-sent
events. Actions on actors (pause, resume, stop, restart) are off unless a
``token`` is given; the page sends it as ``Authorization: Bearer``.
``observer_app(system)`` is the same as an ASGI app, to mount in a web backend
(``aiohttp_observer(system)``: as an aiohttp sub-app).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actorstage.observer._asgi import aiohttp_observer, observer_app
from actorstage.observer._http import HttpServer
from actorstage.observer._model import Watch

if TYPE_CHECKING:
    from actorstage.actors._system import ActorSystem

__all__ = ["Observer", "aiohttp_observer", "observer_app"]


class Observer:
    """The observer of ``system``, served on ``host``:``port`` (0: any free port)."""

    def __init__(self, system: ActorSystem, host: str = "127.0.0.1", port: int = 0, *,
                 token: str | None = None) -> None:
        self.watch = Watch(system, token)
        self._http = HttpServer(self.watch, host, port)
        self.host = host

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        await self.watch.start()
        try:
            await self._http.start()
        except BaseException:
            await self.watch.stop()
            raise

    async def close(self) -> None:
        await self.watch.stop()  # (which ends the pages' event streams)
        await self._http.close()

    async def __aenter__(self) -> Observer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


for _name in ("aiohttp_observer", "observer_app"):
    globals()[_name].__module__ = __name__
del _name
