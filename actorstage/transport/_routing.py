"""Refs that travel: every process of a tree is a node, and a path says where an actor is.

Actor paths are global in a tree: a child process's actors have the paths
they would have in one process (``/user/boss/reporter/helper``). So a path
alone tells the way to its actor, from any node: a node owns the paths at
and below its root actor (``/user`` in the root process, the process
actor's path in a child); a path below one of its process actors leads down
that actor's link; any other path leads up the link to the parent.

An ``ActorRef`` travels as its path (a MessagePack extension, see
``_codec``). Where it arrives, it becomes the local actor's own ref if the
actor lives in that process, or a ``RemoteRef``: one per path and node, so
refs of one actor compare and hash equal however they came. A message to a
remote ref goes hop by hop over the links of the tree (``ROUTE_TELL``,
``ROUTE_ASK``): each node passes it on towards the path, and the node that
owns the path delivers it, or answers that the actor is not there. Routed
messages are not credited: their backpressure is the mailboxes' and the
streams' own.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import TYPE_CHECKING, Any

from actorstage.actors._cell import Outgoing
from actorstage.actors._ref import ActorRef
from actorstage.exceptions import ActorDeadError

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell
    from actorstage.actors._system import ActorSystem
    from actorstage.transport._link import Link

__all__ = ["ROUTER", "RemoteRef", "Router"]

log = logging.getLogger("actorstage.transport")

# The node that is decoding a message now: refs in it become refs of this node.
ROUTER: contextvars.ContextVar[Router | None] = contextvars.ContextVar(
    "actorstage_router", default=None)


class Router:
    """One node of the tree: where each path leads from here."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.root_path = "/user"  # the paths this node owns: this one and those below it
        self.up: Link | None = None  # the link to the parent process (a child node)
        self.remote: dict[str, RemoteRef] = {}

    # -- where a path leads ---------------------------------------------------------------

    def owns(self, path: str) -> bool:
        root = self.root_path
        return path == root or path.startswith(root + "/")

    def find(self, path: str) -> tuple[Cell | None, Link | None]:
        """``(cell, None)`` for an actor of this node (a process actor's cell included),
        ``(None, link)`` for the next hop towards it, ``(None, None)`` when it is nowhere."""
        if not self.owns(path):
            return None, self.up
        guardian = self.system._guardian_cell
        if guardian is None:
            return None, None
        cell = guardian
        rest = path[len(guardian.path):].strip("/").split("/") if path != guardian.path else []
        for index, part in enumerate(rest):
            child = cell.children.get(part)
            if child is None:
                return None, None
            cell = child
            if cell.process is not None and index < len(rest) - 1:  # deeper: its process
                link = getattr(cell.actor, "link", None)
                return None, link if link is not None and not link.closed else None
        return (cell, None) if cell is not guardian else (None, None)

    def ref(self, path: str) -> ActorRef:
        """The ref of the actor at ``path`` as seen from this node."""
        cell, _link = self.find(path)
        if cell is not None:
            return cell.ref
        ref = self.remote.get(path)
        if ref is None:
            ref = self.remote[path] = RemoteRef._at(self, path)
        return ref

    # -- sending ---------------------------------------------------------------------------

    def tell(self, path: str, name: str, body: bytes, message: Any) -> None:
        """Deliver or pass on a tell; one to an actor that is nowhere is a dead letter."""
        cell, link = self.find(path)
        if cell is not None:
            self._deliver(cell, message, name, body, None)
        elif link is not None:
            link.route(path, name, body, None, 0.0)
        else:
            self._nowhere(path, message, None)

    def ask(self, path: str, name: str, body: bytes, message: Any,
            reply: asyncio.Future[Any], timeout: float) -> None:
        """Deliver or pass on an ask; its answer completes ``reply``."""
        cell, link = self.find(path)
        if cell is not None:
            self._deliver(cell, message, name, body, reply)
        elif link is not None:
            link.route(path, name, body, reply, timeout)
        else:
            self._nowhere(path, message, reply)

    def _deliver(self, cell: Cell, message: Any, name: str, body: bytes, reply: Any) -> None:
        if not cell.accepting:
            cell.dead_letter(message, reply, cell.dead_reason())
            return
        if cell.process is not None:  # its mailbox holds encoded messages, for its link
            cell.append(Outgoing(message, name, body), reply)
            pump = cell.pump
            if pump is not None and cell.deliverable:
                pump()
        else:
            cell.append(message, reply)

    def _nowhere(self, path: str, message: Any, reply: Any) -> None:
        reason = f"no actor at {path} (it stopped, or never was)"
        if isinstance(reply, asyncio.Future) and not reply.done():
            reply.set_exception(ActorDeadError(path, reason))
        self.system.dead_letters._publish(self.ref(path), message, reason)

    # -- arriving ---------------------------------------------------------------------------

    def arrived(self, link: Link, ident: int, path: str, name: str, body: bytes,
                timeout: float) -> asyncio.Future[Any] | None:
        """A routed message came in on ``link``: deliver it here or pass it on.

        ``ident`` is 0 for a tell; an ask is answered on ``link`` under ``ident``.
        """
        from actorstage.transport._codec import CODEC

        try:
            message = CODEC.decode(name, body)
        except Exception as exc:
            if ident:
                link.answer_route(ident, None, exc)
            else:
                log.error("a message routed to %s could not be decoded: %s", path, exc)
            return None
        if not ident:
            self.tell(path, name, body, message)
            return None
        reply: asyncio.Future[Any] = link.loop.create_future()
        reply.add_done_callback(lambda done: link.answer_route(ident, done, None))
        if timeout > 0:
            link.loop.call_later(timeout, _expire, reply, path)
        self.ask(path, name, body, message, reply, timeout)
        return reply


def _expire(reply: asyncio.Future[Any], path: str) -> None:
    if not reply.done():
        reply.set_exception(TimeoutError(f"the ask to {path} passed its deadline"))


class RemoteRef(ActorRef):
    """The ref of an actor in another process of the tree, reached hop by hop."""

    __slots__ = ("_path", "_router")

    _router: Router
    _path: str

    @classmethod
    def _at(cls, router: Router, path: str) -> RemoteRef:
        ref = object.__new__(cls)
        ref._router = router
        ref._path = path
        return ref

    @property
    def path(self) -> str:
        return self._path

    @property
    def name(self) -> str:
        return self._path.rsplit("/", 1)[-1]

    def __repr__(self) -> str:
        return f"<RemoteRef {self._path}>"

    def __reduce__(self) -> Any:
        raise TypeError("an actor ref cannot be pickled; send it in a message instead")

    def _encode(self, message: Any) -> tuple[str, bytes]:
        from actorstage.transport._codec import CODEC
        from actorstage.transport._link import outgoing

        out = outgoing(CODEC, self._path, message)
        return out.type, out.body

    async def tell(self, message: Any) -> None:
        """Send ``message``; to an actor that is nowhere, it becomes a dead letter."""
        name, body = self._encode(message)
        self._router.tell(self._path, name, body, message)

    def tell_nowait(self, message: Any) -> None:
        name, body = self._encode(message)
        self._router.tell(self._path, name, body, message)

    async def ask(self, message: Any) -> Any:
        """Send ``message`` and wait for the reply; ``ActorDeadError`` at once when the
        actor is nowhere. The caller's deadline travels with the ask."""
        import anyio

        name, body = self._encode(message)
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        deadline = anyio.current_effective_deadline()
        timeout = max(deadline - loop.time(), 0.001) if deadline != float("inf") else 0.0
        self._router.ask(self._path, name, body, message, reply, timeout)
        try:
            return await reply
        except asyncio.CancelledError:
            reply.cancel()
            raise
