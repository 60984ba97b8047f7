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
tells are credited link by link (see ``_link``): a sender whose link has no
credit left waits, like one facing a full mailbox.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from actorstage import _shm
from actorstage._sends import register as wrapped_sends
from actorstage.actors._cell import Answer, Outgoing
from actorstage.actors._ref import ActorRef
from actorstage.exceptions import ActorCrashedError, ActorDeadError, MailboxFullError
from actorstage.transport._codec import RemoteErrorBody

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell, Receipt
    from actorstage.actors._message import Terminated
    from actorstage.actors._system import ActorSystem
    from actorstage.transport._link import Link

__all__ = ["ROUTER", "ROUTE_WINDOW", "RemoteRef", "Router"]

log = logging.getLogger("actorstage.transport")

class _Watch(msgspec.Struct, frozen=True, array_like=True):
    """Routed to ``target``: tell ``watcher`` when it ends."""

    target: str
    watcher: str


class _Unwatch(msgspec.Struct, frozen=True, array_like=True):
    target: str
    watcher: str


class _Ended(msgspec.Struct, frozen=True, array_like=True):
    """Routed to ``watcher``: ``target`` ended (the ``Terminated`` it gets)."""

    target: str
    watcher: str
    reason: str
    error: RemoteErrorBody | None = None


class _Identify(msgspec.Struct, frozen=True, array_like=True):
    """Asked of a path: whether an actor runs there (``system.find``)."""


class _Register(msgspec.Struct, frozen=True, array_like=True):
    """Asked of the registry: give ``name`` to the actor at ``path``."""

    name: str
    path: str


class _Unregister(msgspec.Struct, frozen=True, array_like=True):
    name: str


class _WhereIs(msgspec.Struct, frozen=True, array_like=True):
    """Asked of the registry: the path registered under ``name`` ("" for none)."""

    name: str


class _Door(msgspec.Struct, frozen=True, array_like=True):
    """Asked of a path: a one-time way in for a direct link to the process that holds it."""

    path: str


class _DoorAnswer(msgspec.Struct, frozen=True, array_like=True):
    root: str  # the paths the answering process owns
    address: str = ""  # "": no direct link to it (a stdio process); go through the tree
    token: str = ""
    secret: str = ""


_CONTROLS = (_Watch, _Unwatch, _Ended)
_REGISTRY_CALLS = (_Register, _Unregister, _WhereIs)
REGISTRY = "/registry"  # the path of the tree's name registry, kept by the root process
_PEER_FRAME = 64 * 1024 * 1024  # the largest frame on a direct link
ROUTE_WINDOW = 1000  # routed tells on their way over one link (or held), at most


class _RemoteWatcher:
    """Stands, in the watched actor's ``watchers``, for a watcher in another process."""

    __slots__ = ("router", "watcher", "watching")

    def __init__(self, router: Router, watcher: str) -> None:
        self.router = router
        self.watcher = watcher
        self.watching: dict[Any, None] | None = None

    def __hash__(self) -> int:
        return hash(self.watcher)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _RemoteWatcher) and other.watcher == self.watcher

    def put_forced(self, notice: Terminated) -> None:
        """The watched actor ended: send the watcher its ``Terminated``."""
        from actorstage.transport._link import error_body

        error = error_body(notice.error, notice.ref.path) if notice.error is not None else None
        self.router.control(_Ended(notice.ref.path, self.watcher, str(notice.reason), error))


# The node that is decoding a message now: refs in it become refs of this node.
ROUTER: contextvars.ContextVar[Router | None] = contextvars.ContextVar(
    "actorstage_router", default=None)


class Router:
    """One node of the tree: where each path leads from here."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.root_path = "/user"  # the paths this node owns: this one and those below it
        self.up: Link | None = None  # the link to the parent process (a child node)
        # One RemoteRef per path while anyone holds it (so refs of an actor compare equal).
        self.remote: weakref.WeakValueDictionary[str, RemoteRef] = weakref.WeakValueDictionary()
        # Watches that went out on a link: (target, watcher) pairs, told UNREACHABLE when
        # the link is lost, since nothing more can come back that way.
        self.through: dict[Link, set[tuple[str, str]]] = {}
        self.names: dict[str, str] = {}  # the registry (in the root process): name -> path
        # Direct links: to a process that is neither parent nor child, messages go on a
        # link of their own, opened on first use (see _send) and closed when idle.
        self.direct = True  # False in a process that talks to its parent over stdio
        self.idle_timeout = 30.0
        self.peers: dict[str, Link] = {}  # a process's root path -> the link to take there
        self.accepted: set[Link] = set()  # direct links other processes opened to this one
        # Messages for processes whose direct link is opening: (path, send, waiter).
        self.held: deque[tuple[str, Callable[[Link], Any], asyncio.Future[None] | None]] = \
            deque()
        self.opening = False
        self.opened: asyncio.Future[None] | None = None  # settled as each opening ends
        self.tasks: set[asyncio.Task[Any]] = set()

    # -- where a path leads ---------------------------------------------------------------

    def owns(self, path: str) -> bool:
        root = self.root_path
        return path == root or path.startswith(root + "/")

    def find(self, path: str) -> tuple[Cell | None, Link | None]:
        """``(cell, None)`` for an actor of this node (a process actor's cell included),
        ``(None, link)`` for the next hop towards it, ``(None, None)`` when it is nowhere."""
        if not self.owns(path):
            up = self.up
            return None, up if up is not None and not up.closed else None
        guardian = self.system._guardian_cell
        if guardian is None:
            return None, None
        cell = guardian
        rest = path[len(guardian.path):].strip("/").split("/") if path != guardian.path else []
        for index, part in enumerate(rest):
            child = cell.children.get(part)
            if child is None:  # one starting is there too: what reaches it waits, as here
                starting = cell.starting
                child = starting.get(part) if starting else None
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

    # -- watching across processes ---------------------------------------------------------

    def watch(self, watcher: Cell, path: str) -> None:
        """``watcher`` gets ``Terminated`` once when the actor at ``path`` ends, its
        process dies or the way to it is lost for good (see ``ExitReason``)."""
        self.control(_Watch(path, watcher.path))

    def unwatch(self, watcher: Cell, path: str) -> None:
        self.control(_Unwatch(path, watcher.path))

    def control(self, message: _Watch | _Unwatch | _Ended) -> None:
        from actorstage.transport._codec import CODEC

        name, body = CODEC.encode(message)
        path = message.watcher if isinstance(message, _Ended) else message.target
        self.tell(path, name, body, message)

    def _controlled(self, cell: Cell | None, message: Any) -> None:
        """A watch control reached the node that owns its path (``cell``: its actor)."""
        from actorstage.actors._message import ExitReason, Terminated
        from actorstage.actors._watch import unwatch, watch

        if isinstance(message, _Ended):
            if message.watcher == REGISTRY and self.up is None:  # a registered actor ended
                for name, path in list(self.names.items()):
                    if path == message.target:
                        del self.names[name]
            elif cell is not None:
                error = None
                if message.error is not None:
                    body = message.error
                    error = ActorCrashedError(body.path, body.type_name, body.message,
                                              body.traceback, during=body.during)
                cell.put_forced(Terminated(self.ref(message.target), ExitReason(message.reason),
                                           error))
            return
        proxy = _RemoteWatcher(self, message.watcher)
        if cell is None:
            if isinstance(message, _Watch):
                self.control(_Ended(message.target, message.watcher, str(ExitReason.NOT_FOUND)))
        elif isinstance(message, _Watch):
            watch(proxy, cell)  # type: ignore[arg-type]
        else:
            unwatch(proxy, cell)  # type: ignore[arg-type]

    # -- the registry and lookups ---------------------------------------------------------

    async def call(self, path: str, message: Any) -> Any:
        """Ask ``message`` of ``path`` (a control of ours: identify, the registry)."""
        from actorstage.transport._codec import CODEC

        name, body = CODEC.encode(message)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.ask(path, name, body, message, reply, 0.0)
        return await reply

    def _registry(self, message: Any, reply: asyncio.Future[Any]) -> None:
        """A registry call reached the root process."""
        names = self.names
        if isinstance(message, _WhereIs):
            reply.set_result(names.get(message.name, ""))
        elif isinstance(message, _Unregister):
            names.pop(message.name, None)
            reply.set_result(True)
        elif isinstance(message, _Register):
            holder = names.get(message.name)
            if holder is not None and holder != message.path:
                reply.set_result(holder)  # taken: the caller raises, naming the holder
                return
            names[message.name] = message.path
            self.control(_Watch(message.path, REGISTRY))  # it goes when its actor ends
            reply.set_result("")

    def lost(self, link: Link) -> None:
        """``link`` is gone: every watch that went out on it ends ``UNREACHABLE``."""
        from actorstage.actors._message import ExitReason

        for target, watcher in sorted(self.through.pop(link, ())):
            self.control(_Ended(target, watcher, str(ExitReason.UNREACHABLE)))

    # -- sending ---------------------------------------------------------------------------

    def tell(self, path: str, name: str, body: bytes, message: Any,
             receipt: Receipt | None = None, *, nowait: bool = False,
             found: tuple[Cell | None, Link | None] | None = None,
             ) -> asyncio.Future[None] | None:
        """Deliver or pass on a tell; one to an actor that is nowhere is a dead letter.

        A tell that must wait for a credit returns a future its sender awaits
        (``nowait``: ``MailboxFullError`` instead). ``receipt``: it came in on a
        link, whose credit goes back once it leaves this process or its mailbox
        (a control of the runtime's takes none). ``found``: ``find(path)``, if
        the caller has it already.
        """
        cell, link = found if found is not None else self.find(path)
        if message.__class__ in _CONTROLS:
            if isinstance(message, _Ended):  # it is answered: no UNREACHABLE for it later
                pair = (message.target, message.watcher)
                for watches in self.through.values():
                    watches.discard(pair)
            if link is None:
                self._controlled(cell, message)
                return None
            if link.closed:  # the way there is gone: a watch ends UNREACHABLE at once
                if isinstance(message, _Watch):
                    from actorstage.actors._message import ExitReason

                    self.control(_Ended(message.target, message.watcher,
                                        str(ExitReason.UNREACHABLE)))
                return None
            watches = self.through.setdefault(link, set())
            if isinstance(message, _Watch):
                watches.add((message.target, message.watcher))
            elif isinstance(message, _Unwatch):
                watches.discard((message.target, message.watcher))
            link.route(path, name, body, None, 0.0)  # (the runtime's own: not credited)
            return None
        if cell is not None:
            self._deliver(cell, message, name, body, receipt)
        elif link is not None:
            waiter: asyncio.Future[None] | None = self._send(path, link, lambda on: on.route(
                path, name, body, None, 0.0, credited=True, receipt=receipt, message=message,
                nowait=nowait), nowait=nowait)
            return waiter
        else:
            self._nowhere(path, message, None)
            if receipt is not None:
                receipt.delivered()
        return None

    def ask(self, path: str, name: str, body: bytes, message: Any,
            reply: asyncio.Future[Any], timeout: float,
            found: tuple[Cell | None, Link | None] | None = None) -> None:
        """Deliver or pass on an ask; its answer completes ``reply``."""
        cell, link = found if found is not None else self.find(path)
        kind = message.__class__
        if kind is _Identify and link is None:
            reply.set_result(cell is not None and cell.accepting)
            return
        if kind in _REGISTRY_CALLS and link is None:
            self._registry(message, reply)
            return
        if (kind is _Identify or kind in _REGISTRY_CALLS) and link is not None:
            link.route(path, name, body, reply, timeout)  # (the runtime's own: on the tree)
            return
        if kind is _Door:
            if cell is not None and cell.process is not None:  # it runs in that process
                link = getattr(cell.actor, "link", None)
                if link is None or link.closed:
                    reply.set_exception(ActorDeadError(path, "its process is not running"))
                    return
            if link is None:
                self._spawn(self._open_door(reply))
            else:
                link.route(path, name, body, reply, timeout)  # doors are asked on the tree
            return
        if cell is not None:
            self._deliver(cell, message, name, body, reply)
        elif link is not None:
            self._send(path, link, lambda on: on.route(path, name, body, reply, timeout))
        else:
            self._nowhere(path, message, reply)

    # -- direct links ----------------------------------------------------------------------

    def _send(self, path: str, link: Link, send: Callable[[Link], Any], *,
              nowait: bool = False) -> Any:
        """Send on a direct link when the tree would go up (to a sibling or a cousin).

        The first message for a process not known yet is held while a direct link
        to it opens, and so is every later one for a process not known yet: they
        leave in order once it is open (or known to be out of reach), so messages
        between two actors keep their order. Past a window's worth of them, a
        sender waits (the future returned) until its message has left.
        """
        if link is not self.up or not self.direct:
            return send(link)
        peer = self._peer(path)
        if peer is not None and not self.held:
            return send(peer)
        waiter = None
        if len(self.held) >= ROUTE_WINDOW:
            if nowait:
                raise MailboxFullError(path, ROUTE_WINDOW)
            waiter = asyncio.get_running_loop().create_future()
        self.held.append((path, send, waiter))
        if not self.opening:
            self._drain()
        return waiter

    async def prepare(self, path: str) -> None:
        """Open the direct link towards ``path`` now, where its first message would open
        one, and wait until it is open (or known to be out of reach: the tree it is then).
        What is sent meanwhile waits for it, as it would then."""
        while True:
            cell, link = self.find(path)
            if cell is not None or link is None or link is not self.up or not self.direct \
                    or self._peer(path) is not None:
                return
            if not self.opening and not self.held:
                self.opening = True
                self._spawn(self._open(path))
            if self.opened is None:
                self.opened = asyncio.get_running_loop().create_future()
            await asyncio.shield(self.opened)  # (one opening ended: maybe another begins)

    def _peer(self, path: str) -> Link | None:
        best, found = -1, None
        for root, link in list(self.peers.items()):
            if (path == root or path.startswith(root + "/")) and len(root) > best:
                if link.closed:
                    del self.peers[root]
                    continue
                best, found = len(root), link
        return found

    def _drain(self) -> None:
        held = self.held
        while held:
            path, send, waiter = held[0]
            peer = self._peer(path)
            if peer is None:
                self.opening = True
                self._spawn(self._open(path))
                return
            held.popleft()
            if waiter is not None and waiter.cancelled():
                continue  # its sender gave up waiting: it is not sent (as with a full mailbox)
            sent = send(peer)
            if waiter is not None:  # its sender waits until it has left
                if isinstance(sent, asyncio.Future):
                    sent.add_done_callback(functools.partial(_resolve, waiter))
                else:
                    _resolve(waiter)

    async def _open(self, path: str) -> None:
        """Ask the process that holds ``path`` for a door, and open a direct link to it."""
        up = self.up
        try:
            answer: _DoorAnswer = await self.call(path, _Door(path))
            if answer.address and up is not None:
                from actorstage.transport._dial import dial

                conn = await asyncio.wait_for(
                    dial(answer.address, answer.token, answer.secret, _PEER_FRAME,
                         self.system._tls), 5.0)
                try:  # the other side's first frame says it took the hello: until then,
                    # its server holds the connection to a few KiB (see _grpc.GrpcServer)
                    welcome = await asyncio.wait_for(conn.recv(), 5.0)
                    if welcome is None:
                        raise ConnectionError("the other process closed the direct link")
                except BaseException:
                    await conn.aclose()
                    raise
                self.peers[answer.root] = self._peer_link(conn, answer.root)
            elif up is not None:  # no door (the root, or stdio): this path goes up the tree
                self.peers[path] = up
        except Exception as exc:  # no door: the tree it is, for that path
            log.debug("no direct link towards %s (%s): through the tree", path, exc)
            if up is not None:
                self.peers[path] = up
        finally:
            self.opening = False
            opened, self.opened = self.opened, None
            if opened is not None:
                opened.set_result(None)
        self._drain()

    async def _open_door(self, reply: asyncio.Future[Any]) -> None:
        """Another process asked for a direct link to this one: a one-time secret for it.

        The root process gives none: every process's link to its parent leads there.
        """
        if not self.direct or self.up is None or self.system._guardian_cell is None:
            reply.set_result(_DoorAnswer(self.root_path))
            return
        try:
            await self.system._guard()  # (it removes the socket directory if we are killed)
            server = await self.system._bridge("unix", "", 5.0)
        except Exception as exc:  # no door; it goes through the tree
            log.warning("no direct links to %s: %s", self.root_path, exc)
            reply.set_result(_DoorAnswer(self.root_path))
            return
        expected = server.expect(_PEER_FRAME)
        reply.set_result(_DoorAnswer(self.root_path, server.address, expected.token,
                                     expected.secret))
        try:
            conn, _pid = await asyncio.wait_for(asyncio.shield(expected.arrived), 10.0)
        except (TimeoutError, asyncio.CancelledError):
            server.forget(expected)
            if not expected.arrived.done():
                expected.arrived.cancel()
            return
        link = self._peer_link(conn, "")
        self.accepted.add(link)
        from actorstage._proto.actorstage.bridge.v1 import Envelope, Heartbeat

        link.send_control(Envelope(heartbeat=Heartbeat(sent_at=time.time())))  # welcome

    def _peer_link(self, conn: Any, root: str) -> Link:
        from actorstage.transport._link import Link

        link = Link(conn, f"direct link to {root or 'a peer'}", self.system._root,
                    heartbeat_interval=1.0, heartbeat_timeout=10.0,
                    on_control=lambda envelope: None,
                    on_lost=lambda problem, cause: self._peer_lost(link, root, problem))
        link.router = self
        link.start()
        if root:
            self._spawn(self._close_when_idle(link, root))
        return link

    def _peer_lost(self, link: Link, root: str, problem: str) -> None:
        if self.peers.get(root) is link:
            del self.peers[root]
        self.accepted.discard(link)
        link.fail_pending(lambda: ActorDeadError(root or link.path,
                                                 f"the direct link was lost: {problem}"))
        self._spawn(link.conn.aclose())

    async def _close_when_idle(self, link: Link, root: str) -> None:
        """Close a direct link nobody used for ``idle_timeout`` seconds (this side opened
        it; the other side sees the stream end)."""
        loop = asyncio.get_running_loop()
        while not link.closed:
            left = link.used + self.idle_timeout - loop.time()
            if left > 0 or link.pending:
                await asyncio.sleep(max(left, 0.05))
                continue
            if self.peers.get(root) is link:
                del self.peers[root]
            await link.aclose()
            await link.conn.aclose()
            return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def aclose(self) -> None:
        """Close the direct links (the system is closing)."""
        links = [link for link in self.peers.values() if link is not self.up]
        links += list(self.accepted)
        self.peers.clear()
        self.accepted.clear()
        for link in links:
            await link.aclose()
            await link.conn.aclose()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)

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

        found = cell, link_on = self.find(path)
        try:
            if (link_on is not None or (cell is not None and cell.process is not None)) and \
                    name not in _runtime_names():
                if _apart(cell, link_on) and _SLOT_NAME in body:
                    # Its payloads are in this machine's shared memory, and the process it
                    # goes to may not be: read out, they go inline (this process sends all
                    # inline, as one that placed a process elsewhere, or was placed).
                    message: Any = CODEC.decode(name, body)
                    name, body = CODEC.encode(message)
                else:
                    message = _Passing(name)  # it goes on, as it came (payloads stay put)
            else:
                message = CODEC.decode(name, body)
        except Exception as exc:
            if ident:
                link.answer_route(ident, None, exc)
            else:
                log.error("a message routed to %s could not be decoded: %s", path, exc)
                link.route_receipt.delivered()
            return None
        if not ident:
            self.tell(path, name, body, message, link.route_receipt, found=found)
            return None
        reply = Answer(lambda done: link.answer_route(ident, done, None), link.loop)
        if timeout > 0:
            link.loop.call_later(timeout, _expire, reply, path)
        self.ask(path, name, body, message, reply, timeout, found)
        return reply


_SLOT_NAME = f"{_shm.PREFIX}m".encode()  # how a payload's slot is named in a body


def _apart(cell: Cell | None, link: Link | None) -> bool:
    """Whether the next hop towards an actor is a process that may share no memory with
    this one (on the link ``link``, or the process actor ``cell`` itself)."""
    if link is None and cell is not None:
        link = getattr(cell.actor, "link", None)
    return link is not None and link.apart


class _Passing:
    """A message this node passes on without decoding it (what dead letters show of it)."""

    __slots__ = ("type",)

    def __init__(self, type: str) -> None:
        self.type = type

    def __repr__(self) -> str:
        return f"<a message of type {self.type or 'value'}, passing through>"


@functools.cache
def _runtime_names() -> frozenset[str]:
    """The type names of the runtime's own routed messages, which every node reads."""
    from actorstage.transport._codec import type_name

    return frozenset(type_name(cls) for cls in (*_CONTROLS, *_REGISTRY_CALLS, _Identify, _Door))


def _resolve(waiter: asyncio.Future[None], _sent: Any = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _expire(reply: asyncio.Future[Any], path: str) -> None:
    if not reply.done():
        reply.set_exception(TimeoutError(f"the ask to {path} passed its deadline"))


class RemoteRef(ActorRef):
    """The ref of an actor in another process of the tree, reached hop by hop."""

    __slots__ = ("__weakref__", "_path", "_router")

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

    async def prepare(self) -> None:
        """Open the direct link to this actor's process now, if there will be one, so that
        the first message does not wait for it (``Router.prepare``)."""
        await self._router.prepare(self._path)

    def _encode(self, message: Any) -> tuple[str, bytes]:
        from actorstage.transport._codec import CODEC
        from actorstage.transport._link import outgoing

        out = outgoing(CODEC, self._path, message)
        return out.type, out.body

    async def tell(self, message: Any) -> None:
        """Send ``message``; to an actor that is nowhere, it becomes a dead letter.

        Waits while the way there has no credit left (``ROUTE_WINDOW`` tells on
        their way over a link, not yet taken out of the far mailbox)."""
        name, body = self._encode(message)
        waiter = self._router.tell(self._path, name, body, message)
        if waiter is not None:
            try:
                await waiter
            except asyncio.CancelledError:
                waiter.cancel()  # not sent, as a tell cancelled on a full mailbox
                raise

    def tell_nowait(self, message: Any) -> None:
        """Send ``message`` now, or raise ``MailboxFullError`` if it would have to wait."""
        name, body = self._encode(message)
        self._router.tell(self._path, name, body, message, nowait=True)

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


wrapped_sends(RemoteRef)  # (tracing and metrics wrap its sends when on: see _sends)
