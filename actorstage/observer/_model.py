"""What the observer shows: the tree summarised, the crash log, executions, pipelines.

A ``Watch`` reads the running system (and this process's runners and pipeline
sessions) every tick: a summary of the tree that stays small however many
actors there are (each actor's children beyond ``CHILD_LIMIT`` folded into
one row counting them by status, and at most ``NODE_LIMIT`` rows in all),
each actor's messages per second from its handled count, the executions in
progress and the pipeline nodes' throughput and queues. Tree events (crashes
with their tracebacks, restarts, escalations, pauses) are passed on as they
happen, and the last ``LOG_SIZE`` are kept for a page that connects later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from actorstage._metrics import SESSIONS, cells, runners
from actorstage.actors._tree import TreeEvent, _status

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell
    from actorstage.actors._system import ActorSystem

CHILD_LIMIT = 40  # children listed under one actor; the rest are counted
NODE_LIMIT = 1500  # rows of the tree in one update
LOG_SIZE = 200  # tree events kept for a page that connects later
TICK = 0.5  # seconds between updates
ACTIONS = ("pause", "resume", "stop", "restart")
_encode = msgspec.json.Encoder().encode
# What the page lists first among many children: trouble before quiet.
_RANK = {"restarting": 0, "stopping": 1, "paused": 2, "starting": 3, "running": 4, "stopped": 5}


class ActionRefused(Exception):
    """An action the observer does not take; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Watch:
    """Reads ``system`` for the observer page; see the module's text."""

    def __init__(self, system: ActorSystem, token: str | None = None) -> None:
        self.system = system
        self.token = token  # actions are refused without one
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self._handled: dict[str, tuple[int, float]] = {}  # path: (handled, when)
        self._items: dict[tuple[str, str], tuple[int, float]] = {}  # (session, node): in
        self._listeners: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last: bytes = b""
        self.last: dict[str, Any] | None = None  # the last update (what /api/snapshot gives)

    # -- running ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        """Until stopped, or until the system ends: then the pages' streams end too."""
        tasks = [asyncio.ensure_future(self._forward()), asyncio.ensure_future(self._tick()),
                 asyncio.ensure_future(self.system._ended.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            for queue in self._listeners:
                queue.put_nowait(b"")  # (the end of its stream)

    async def _forward(self) -> None:
        async with self.system.tree_events.subscribe(max_buffer=LOG_SIZE) as events:
            async for event in events:
                entry = _event(event)
                self.log.append(entry)
                self._send(b"event: tree\ndata: " + _encode(entry) + b"\n\n")

    async def _tick(self) -> None:
        while True:
            if self._listeners:  # (nobody watching: nothing is read until someone asks)
                self.last = self.snapshot()
                self._last = b"event: tick\ndata: " + _encode(self.last) + b"\n\n"
                self._send(self._last)
            await asyncio.sleep(TICK)

    def _send(self, chunk: bytes) -> None:
        for queue in self._listeners:
            if queue.qsize() < 64:  # a page that cannot keep up misses updates, not memory
                queue.put_nowait(chunk)

    async def stream(self) -> AsyncIterator[bytes]:
        """Server-sent events for one page: the kept log and the last update at once, then
        every update and tree event as it comes."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._listeners.add(queue)
        try:
            yield b"retry: 1000\n\n"
            for entry in list(self.log):
                yield b"event: tree\ndata: " + _encode(entry) + b"\n\n"
            yield self._last or (b"event: tick\ndata: " + _encode(self.snapshot()) + b"\n\n")
            while chunk := await queue.get():
                yield chunk
        finally:
            self._listeners.discard(queue)

    # -- reading ---------------------------------------------------------------------------

    def current(self) -> dict[str, Any]:
        """The last update while pages watch (a new one would spoil the rates of the next);
        otherwise a new one, its rates since the one before."""
        if self.last is None or not self._listeners:
            self.last = self.snapshot()
        return self.last

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        rates: dict[str, float] = {}
        handled: dict[str, tuple[int, float]] = {}
        previous = self._handled
        statuses: Counter[str] = Counter()
        for cell in cells([self.system]):
            statuses[str(_status(cell))] += 1
            count = cell.handled
            before = previous.get(cell.path)
            if before is not None and now > before[1]:
                rates[cell.path] = max(count - before[0], 0) / (now - before[1])
            handled[cell.path] = (count, now)
        self._handled = handled
        budget = [NODE_LIMIT]
        root = self.system._guardian()
        tree = _row(root, rates, budget)
        return {"time": time.time(), "name": self.system.name, "tree": tree,
                "actors": sum(statuses.values()), "by_status": dict(statuses),
                "rate": round(sum(rates.values()), 1), "actions": self.token is not None,
                "executions": self._executions(), "pipelines": self._pipelines(now)}

    def children(self, path: str, offset: int, limit: int) -> dict[str, Any]:
        """One page of ``path``'s children (each with its own children folded)."""
        cell = _find(self.system, path)
        if cell is None:
            raise ActionRefused(404, f"no actor at {path}")
        rates: dict[str, float] = {}
        kids = _ranked(list(cell.children.values()), rates)
        page = kids[offset:offset + min(max(limit, 1), 500)]
        budget = [len(page)]
        return {"path": path, "offset": offset, "total": len(kids),
                "children": [_row(child, rates, budget, fold=True) for child in page]}

    def _executions(self) -> list[dict[str, Any]]:
        rows = []
        for runner in runners():
            for execution in list(runner._running) + list(runner.ended)[-10:]:
                rows.append({"id": execution.id, "workflow": execution.workflow_id,
                             "status": str(execution.status), "current": execution.current,
                             "steps": execution.steps, "started": execution.started_at})
        rows.sort(key=lambda row: row["started"], reverse=True)
        return rows[:100]

    def _pipelines(self, now: float) -> list[dict[str, Any]]:
        sessions = []
        seen: dict[tuple[str, str], tuple[int, float]] = {}
        for session in list(SESSIONS):
            nodes = []
            for port in session.ports.values():
                key = (session.id, port.node.id)
                items = max(port.received, port.stats.items_in)  # (taken, or done)
                before = self._items.get(key)
                rate = (max(items - before[0], 0) / (now - before[1])
                        if before is not None and now > before[1] else 0.0)
                seen[key] = (items, now)
                nodes.append({"id": port.node.id, "executor": port.node.spec.executor,
                              "items": items, "rate": round(rate, 1),
                              "queue": port.inbox.count, "failed": port.stats.failed})
            sessions.append({"id": session.id, "name": session.plan.name, "nodes": nodes})
        self._items = seen
        return sessions

    # -- acting ----------------------------------------------------------------------------

    async def act(self, action: str, path: str, token: str | None) -> None:
        import hmac

        if self.token is None:
            raise ActionRefused(403, "actions are off: start the observer with a token")
        if token is None or not hmac.compare_digest(token.encode(), self.token.encode()):
            raise ActionRefused(401, "a wrong or missing token")
        if action not in ACTIONS:
            raise ActionRefused(404, f"no action {action!r} (one of {', '.join(ACTIONS)})")
        cell = _find(self.system, path)
        if cell is None or cell.parent is None:
            raise ActionRefused(404, f"no actor at {path!r} (or it is the root)")
        await getattr(self.system, action)(cell.ref)


def _find(system: ActorSystem, path: str) -> Cell | None:
    """The cell at ``path`` in this process (the guardian's too, which routes do not give)."""
    guardian = system._guardian()
    if path in ("", "/", guardian.path):
        return guardian
    return system._node().find(path)[0]


def _ranked(children: list[Cell], rates: dict[str, float]) -> list[Cell]:
    if len(children) <= CHILD_LIMIT:
        return children  # in the order they started
    return sorted(children, key=lambda cell: (_RANK.get(str(_status(cell)), 9),
                                              -rates.get(cell.path, 0.0), cell.name))


def _row(cell: Cell, rates: dict[str, float], budget: list[int], *,
         fold: bool = False) -> dict[str, Any]:
    budget[0] -= 1
    process = cell.process is not None
    row: dict[str, Any] = {
        "path": cell.path, "name": cell.name, "class": cell.factory.__qualname__,
        "kind": "supervisor" if cell.factory._owns_tasks else "process" if process
        else "actor",
        "status": str(_status(cell)), "restarts": cell.restarts,
        "queued": len(cell.queue or ()) + len(cell.waiters or ()),
        "pid": getattr(cell.actor, "pid", None) if process else None,
        "rate": round(rates.get(cell.path, 0.0), 1), "children": [], "more": None}
    children = list(cell.children.values())
    if not children:
        return row
    shown = [] if fold else _ranked(children, rates)[:min(CHILD_LIMIT, max(budget[0], 0))]
    row["children"] = [_row(child, rates, budget) for child in shown]
    listed = set(shown)
    rest = children if fold else [child for child in children if child not in listed]
    if rest:
        statuses = Counter(str(_status(child)) for child in rest)
        row["more"] = {"count": len(rest), "by_status": dict(statuses),
                       "queued": sum(len(child.queue or ()) for child in rest),
                       "rate": round(sum(rates.get(child.path, 0.0) for child in rest), 1)}
    return row


def _event(event: TreeEvent) -> dict[str, Any]:
    escalated = event.kind == "crashed" and event.error.startswith("RestartIntensityError")
    return {"kind": "escalated" if escalated else event.kind, "path": event.path,
            "class": event.actor_type, "restarts": event.restarts, "pid": event.pid,
            "reason": event.reason, "error": event.error, "traceback": event.traceback,
            "time": event.time}


async def answer(watch: Watch, method: str, route: str, query: dict[str, str],
                 headers: dict[str, str]) -> tuple[int, Any, str] | None:
    """The answer to one request of the observer's routes, ``(status, body, content
    type)`` (a body not bytes is sent as JSON), or ``None`` for ``GET /events``, which the
    server streams from ``watch.stream()``. Both servers (``_http``, ``_asgi``) use it."""
    json_type = "application/json"
    if method == "GET" and route == "/events":
        return None
    if method == "GET" and route == "/":
        from importlib import resources

        page = resources.files("actorstage.observer").joinpath("page.html").read_bytes()
        return 200, page, "text/html; charset=utf-8"
    if method == "GET" and route == "/api/snapshot":
        return 200, watch.current(), json_type
    try:
        if method == "GET" and route == "/api/children":
            return 200, watch.children(query.get("path", ""), int(query.get("offset", "0")),
                                       int(query.get("limit", "100"))), json_type
        if method == "POST" and route.startswith("/api/"):
            authorization = headers.get("authorization", "")
            token = authorization[7:] if authorization.startswith("Bearer ") else None
            await watch.act(route[5:], query.get("path", ""), token)
            return 204, b"", json_type
    except ActionRefused as refused:
        return refused.status, {"error": str(refused)}, json_type
    except Exception as exc:  # (a bad number, the actor is gone, the action failed: say so)
        return 400, {"error": f"{type(exc).__name__}: {exc}"}, json_type
    if route in ("/", "/events", "/api/snapshot", "/api/children"):
        return 405, {"error": f"{method} is not allowed on {route}"}, json_type
    return 404, {"error": f"nothing at {route}"}, json_type
