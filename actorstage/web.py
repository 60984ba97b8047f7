"""An ``ActorSystem`` for the lifetime of a web app: ASGI (Starlette, FastAPI) and aiohttp.

The app owns the tree: it starts with the app, before the first request, and
stops when the app shuts down, after the last one. Nothing here imports a web
framework; the frameworks are optional extras (``pip install actorstage[web]``).

ASGI::

    app = FastAPI(lifespan=actorstage.web.lifespan(setup))

    @app.get("/count/{key}")
    async def count(key: str, request: Request) -> int:
        system = actorstage.web.system_of(request)
        ...

aiohttp::

    app = web.Application()
    app.cleanup_ctx.append(actorstage.web.aiohttp_context(setup))

``setup(system)`` spawns the app's actors and may return a mapping of what
handlers need (refs, say): ASGI handlers find each entry in
``request.state``, aiohttp handlers with ``state_of(request)[name]``. If
``setup`` raises (an actor whose ``on_start`` fails raises
``ActorCrashedError``), the app does not start: the framework reports the
error and exits, and what ``setup`` started is stopped first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from actorstage.actors._system import ActorSystem
from actorstage.transport._options import ProcessOptions

__all__ = ["aiohttp_context", "lifespan", "running_system", "state_of", "system_of"]

log = logging.getLogger("actorstage.web")

Setup = Callable[[ActorSystem], Awaitable[Mapping[str, Any] | None]]

SYSTEM = "actor_system"  # the name of the system in the app's state
_AIOHTTP_STATE: Any = None  # the aiohttp AppKey of the state, made on first use


@asynccontextmanager
async def running_system(setup: Setup | None = None, *, name: str = "web",
                         shutdown_timeout: float = 10.0,
                         process_defaults: ProcessOptions | None = None) -> AsyncIterator[
        dict[str, Any]]:
    """A started system, as the state a web app keeps: ``{"actor_system": system, **setup's}``.

    Leaving it stops every actor, the last started first; each top-level actor
    gets ``shutdown_timeout`` seconds to finish the message in hand before it
    is cancelled, and a process actor's process is killed if it does not exit.
    """
    async with ActorSystem(name, shutdown_timeout=shutdown_timeout,
                           process_defaults=process_defaults) as system:
        extra = await setup(system) if setup is not None else None
        state: dict[str, Any] = {SYSTEM: system, **(extra or {})}
        log.info("actor system %r started for the app", name)
        try:
            yield state
        finally:
            log.info("the app is stopping: stopping actor system %r", name)


def lifespan(setup: Setup | None = None, *, name: str = "web", shutdown_timeout: float = 10.0,
             process_defaults: ProcessOptions | None = None) -> Callable[
        [Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """An ASGI lifespan (``FastAPI(lifespan=...)``, ``Starlette(lifespan=...)``) that runs
    ``running_system`` for the app's lifetime; its state is each request's ``request.state``.
    """

    def app_lifespan(app: Any) -> AbstractAsyncContextManager[dict[str, Any]]:
        return running_system(setup, name=name, shutdown_timeout=shutdown_timeout,
                              process_defaults=process_defaults)

    return app_lifespan


def aiohttp_context(setup: Setup | None = None, *, name: str = "web",
                    shutdown_timeout: float = 10.0,
                    process_defaults: ProcessOptions | None = None) -> Callable[
        [Any], AsyncIterator[None]]:
    """An aiohttp cleanup context (``app.cleanup_ctx.append(...)``) that runs
    ``running_system`` from the app's startup to its cleanup."""

    async def context(app: Any) -> AsyncIterator[None]:
        async with running_system(setup, name=name, shutdown_timeout=shutdown_timeout,
                                  process_defaults=process_defaults) as state:
            app[_aiohttp_key()] = state
            yield

    return context


def _aiohttp_key() -> Any:
    global _AIOHTTP_STATE
    if _AIOHTTP_STATE is None:
        from aiohttp import web

        _AIOHTTP_STATE = web.AppKey("actorstage_state", dict)
    return _AIOHTTP_STATE


def state_of(request: Any) -> Mapping[str, Any]:
    """The app's state for a request (Starlette, FastAPI or aiohttp), or for an aiohttp
    ``Application``: the system under ``"actor_system"``, and what ``setup`` returned."""
    app = request if hasattr(request, "cleanup_ctx") else getattr(request, "app", None)
    if _AIOHTTP_STATE is not None and app is not None and hasattr(app, "cleanup_ctx"):
        state = app.get(_AIOHTTP_STATE)
        if state is not None:
            return state  # type: ignore[no-any-return]
    scope_state = getattr(request, "scope", {}).get("state")
    if isinstance(scope_state, Mapping) and SYSTEM in scope_state:
        return scope_state
    raise LookupError(
        "this app has no actor system: give it actorstage.web.lifespan(...) (ASGI) or "
        "append actorstage.web.aiohttp_context(...) to app.cleanup_ctx (aiohttp)")


def system_of(request: Any) -> ActorSystem:
    """The ``ActorSystem`` of the app serving ``request`` (or of an aiohttp app)."""
    system = state_of(request)[SYSTEM]
    assert isinstance(system, ActorSystem)
    return system
