"""``ActorSystem``: the root of an actor tree, used as an async context manager."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from actorstage._metrics import SYSTEMS as LIVE_SYSTEMS
from actorstage._metrics import auto as metrics_auto
from actorstage._metrics import system_closed as metrics_system_closed
from actorstage._telemetry import auto as tracing_auto
from actorstage.actors import _lifecycle
from actorstage.actors._actor import Actor, Spawner
from actorstage.actors._cell import RUNNING, STOPPED, STOPPING, Cell, acting_cell
from actorstage.actors._deadletters import DeadLetters
from actorstage.actors._message import ExitReason
from actorstage.actors._ref import ActorRef
from actorstage.actors._tasks import TaskOwner
from actorstage.actors._tree import TreeEvents, TreeNode, snapshot
from actorstage.exceptions import ActorDeadError, ActorstageError, InvalidDefinitionError

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from actorstage.observer import Observer
    from actorstage.transport._forkserver import ForkServer
    from actorstage.transport._guard import Guard
    from actorstage.transport._options import ProcessOptions
    from actorstage.transport._routing import Router
    from actorstage.transport._server import BridgeServer, Expected
    from actorstage.transport._spares import SparePool
    from actorstage.transport._tls import TreeTls

__all__ = ["ActorSystem"]

log = logging.getLogger("actorstage")

T = TypeVar("T")


class _Guardian(Actor):
    """The parent of every actor spawned by the system itself (``/user``)."""

    _traced = False  # (the runtime's own: see Actor._traced)

    __slots__ = ()

    async def receive(self, message: Any) -> Any:
        raise TypeError("the /user guardian takes no messages")


def running_loop(what: str) -> asyncio.AbstractEventLoop:
    """The running asyncio loop, or an error that says actorstage needs one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        import sniffio

        library = sniffio.current_async_library()
    except Exception:  # no async library at all
        library = ""
    where = f"this is {library}" if library else "no event loop runs here"
    raise RuntimeError(
        f"{what} needs a running asyncio event loop, and {where}: actorstage runs on asyncio, "
        "with or without uvloop. Start it with actorstage.run(main), asyncio.run(main()) "
        "or anyio.run(main) (its default backend is asyncio)") from None


_SYSTEMS = [0]  # actor systems running in this process


class ActorSystem(Spawner):
    """The root of an actor tree.

    Use it as an async context manager; leaving the block stops every actor,
    the last spawned first, each within its shutdown timeout::

        async with ActorSystem() as system:
            ref = await system.spawn(Counter)
            await ref.tell(Increment())

    Args:
        name: A label for logs.
        mailbox_size: Default mailbox bound for actors spawned without one.
        shutdown_timeout: Seconds an actor spawned outside a supervisor gets to
            finish its message in hand when stopped, before it is cancelled.
        process_defaults: The ``ProcessOptions`` that ``process=True`` means
            in this system, for example ``ProcessOptions(start="forkserver")``
            to start every process actor warm.
        tls: The tree's CA for process actors over TCP with TLS, when it is given
            (``TreeTls.from_ca(ca_cert, ca_key)``); by default the system makes one on
            first need.
    """

    def __init__(
        self, name: str = "actorstage", *, mailbox_size: int = 1000, shutdown_timeout: float = 5.0,
        process_defaults: ProcessOptions | None = None, tls: TreeTls | None = None,
    ) -> None:
        if not isinstance(mailbox_size, int) or mailbox_size < 1:
            raise InvalidDefinitionError(
                f"mailbox_size must be a positive int, got {mailbox_size!r}"
            )
        if not shutdown_timeout > 0:
            raise InvalidDefinitionError(
                f"shutdown_timeout must be > 0 seconds, got {shutdown_timeout!r}"
            )
        if process_defaults is not None:
            from actorstage.transport._options import ProcessOptions

            if not isinstance(process_defaults, ProcessOptions):
                raise InvalidDefinitionError(
                    f"process_defaults must be a ProcessOptions, got {process_defaults!r}")
        if tls is not None:
            from actorstage.transport._tls import TreeTls

            if not isinstance(tls, TreeTls):
                raise InvalidDefinitionError(
                    f"tls must be a TreeTls (TreeTls.from_ca(ca_cert, ca_key)), got {tls!r}")
        self.process_defaults = process_defaults
        self.name = name
        self._mailbox_size = mailbox_size
        self._shutdown_timeout = shutdown_timeout
        self._names = itertools.count(1)
        self.dead_letters = DeadLetters()
        self.tree_events = TreeEvents()
        self._running = False
        self._guardian_cell: Cell | None = None
        self._bridges: dict[tuple[str, str, bool], BridgeServer] = {}
        self._tls = tls  # this process's certificate of the tree (TCP+TLS), made on first need
        self._placed = False  # it placed a process elsewhere (payloads inline while it runs)
        self._bridge_lock: asyncio.Lock | None = None
        self._forkservers: dict[tuple[Any, ...], ForkServer] = {}
        self._guard_process: Guard | None = None
        self._spares: SparePool | None = None
        self._router: Router | None = None

    # -- lifetime ----------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        if self._running or self._guardian_cell is not None:
            raise ActorstageError(f"actor system {self.name!r} was already started; make a new one")
        self._loop = running_loop("ActorSystem")
        tracing_auto()  # (on when an OpenTelemetry SDK is configured: see _telemetry)
        metrics_auto()  # (the same, for metrics: see _metrics)
        LIVE_SYSTEMS.add(self)
        self._failure: BaseException | None = None
        self._ended = asyncio.Event()
        self._tg: TaskGroup = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._watch_failure, name=f"actorstage:{self.name}:watch")
        self._root = TaskOwner(self._loop, self._fatal)
        guardian = Cell(self, None, "user", _Guardian, (), {}, 1, None, self._root)
        guardian.actor = _Guardian()
        guardian.actor._cell = guardian
        guardian.set_state(RUNNING)
        self._guardian_cell = guardian
        self._running = True
        _SYSTEMS[0] += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        finally:
            metrics_system_closed(self)
            if self._placed and not any(system._placed for system in LIVE_SYSTEMS):
                from actorstage.transport._payloads import ARENA

                ARENA.off = False  # (no system here has placed a process any more)
            self._ended.set()
            try:
                await self._tg.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                # The task group wraps even the body's own exception; users get it as raised.
                errors = group.exceptions
                if exc is not None and len(errors) == 1 and errors[0] is exc:
                    return None
                if len(errors) == 1:
                    raise errors[0] from None
                raise
        return None

    async def aclose(self) -> None:
        """Stop every actor (the last started first), then the system itself."""
        guardian = self._guardian_cell
        if guardian is None or guardian.state == STOPPED:
            return
        self._running = False
        guardian.set_state(STOPPING)
        async with guardian.get_lock():
            await _lifecycle.stop_children(guardian)
        guardian.set_state(STOPPED)
        if self._router is not None:
            await self._router.aclose()  # direct links to other processes of the tree
        bridges, self._bridges = list(self._bridges.values()), {}
        for bridge in bridges:
            await bridge.aclose()
        spares, self._spares = self._spares, None
        if spares is not None:
            await spares.aclose()
        forkservers, self._forkservers = list(self._forkservers.values()), {}
        for forkserver in forkservers:
            await forkserver.aclose()
        guard, self._guard_process = self._guard_process, None
        if guard is not None:
            await guard.aclose()
        _SYSTEMS[0] -= 1
        payloads = sys.modules.get("actorstage.transport._payloads")
        if payloads is not None and not _SYSTEMS[0]:  # the last system of this process
            payloads.ARENA.close()  # its large payloads' shared memory
        await self._root.aclose()

    def _spare_pool(self) -> SparePool:
        """The spare children of this system (see ``transport._spares``)."""
        if self._spares is None:
            from actorstage.transport._spares import SparePool

            self._spares = SparePool(self)
        return self._spares

    def _node(self) -> Router:
        """This system as a node of its process tree: where each actor path leads."""
        if self._router is None:
            from actorstage.transport._routing import Router

            self._router = Router(self)
        return self._router

    async def _guard(self) -> Guard | None:
        """The process that ends this system's children if it dies, started on first need."""
        from actorstage.transport._guard import Guard

        if self._guard_process is not None or not hasattr(os, "pidfd_open"):
            return self._guard_process
        if self._bridge_lock is None:
            self._bridge_lock = asyncio.Lock()
        async with self._bridge_lock:
            if self._guard_process is None:
                guard = Guard()
                try:
                    await guard.start()
                except OSError as exc:
                    log.error("cannot start the guard process (%s): children of system %r "
                              "will not be killed if it dies", exc, self.name)
                    return None
                from actorstage import _shm
                from actorstage.transport._payloads import prefix_of

                guard.sweep(str(_shm.SHM_DIR), prefix_of(os.getpid()))  # our payloads' slots
                self._guard_process = guard
        return self._guard_process

    def _tree_tls(self) -> TreeTls:
        """This process's certificate of its tree (the root makes the tree's CA on first
        need; a child was given its own by its parent)."""
        if self._tls is None:
            from actorstage.transport._tls import TreeTls

            self._tls = TreeTls.create(self.name)
        return self._tls

    async def _expect_child(self, options: ProcessOptions, boot: dict[str, Any],
                            name: str) -> tuple[BridgeServer, Expected]:
        """The bridge a child about to start connects to, and the one-time token and secret
        it says hello with; both go into its ``boot``, with (over TLS) its own certificate
        of the tree, issued to ``name``, and the CA, to certify its own children."""
        bridge = await self._bridge(options.transport, options.host,
                                    options.handshake_timeout, options.use_tls)
        expected = bridge.expect(options.max_frame_size)
        boot.update(address=bridge.address, token=expected.token, secret=expected.secret)
        if options.use_tls:
            boot["tls"] = self._tree_tls().issue(name).to_boot()
        return bridge, expected

    async def _bridge(self, transport: str, host: str, handshake_timeout: float,
                      tls: bool = False) -> BridgeServer:
        """The server the children of this system connect to, started on first need."""
        from actorstage.transport._server import BridgeServer

        key = (transport, host if transport == "tcp" else "", tls)
        bridge = self._bridges.get(key)
        if bridge is not None:
            return bridge
        if self._bridge_lock is None:
            self._bridge_lock = asyncio.Lock()
        async with self._bridge_lock:
            bridge = self._bridges.get(key)
            if bridge is None:
                bridge = BridgeServer(transport, host, handshake_timeout,
                                      self._tree_tls() if tls else None)
                await bridge.start()
                self._bridges[key] = bridge
                if bridge.directory is not None and self._guard_process is not None:
                    self._guard_process.remove_dir(bridge.directory)
        return bridge

    async def _forkserver(
        self, command: list[str], env: dict[str, str], cwd: str | None
    ) -> ForkServer:
        """The forkserver for this interpreter, environment and directory, started on need."""
        from actorstage.transport._forkserver import ForkServer

        key = (tuple(command), tuple(sorted(env.items())), cwd)
        if self._bridge_lock is None:
            self._bridge_lock = asyncio.Lock()
        async with self._bridge_lock:
            forkserver = self._forkservers.get(key)
            if forkserver is None or not forkserver.alive:
                if forkserver is not None:
                    await forkserver.aclose()
                forkserver = ForkServer(command, env, cwd)
                await forkserver.start()
                self._forkservers[key] = forkserver
                if self._guard_process is not None:
                    self._guard_process.child(forkserver.pid)
        return forkserver

    async def _watch_failure(self) -> None:
        await self._ended.wait()
        if self._failure is not None:
            raise self._failure

    def _fatal(self, exc: BaseException) -> None:
        """An internal task failed unexpectedly: fail the whole system, loudly."""
        log.critical("actor system %r failed", self.name, exc_info=exc)
        if self._failure is None:
            self._failure = exc
        self._ended.set()

    @property
    def running(self) -> bool:
        """Whether the system accepts new actors."""
        return self._running

    def _guardian(self) -> Cell:
        guardian = self._guardian_cell
        if guardian is None or not self._running:
            raise ActorstageError(
                f"actor system {self.name!r} is not running; "
                "use it as `async with ActorSystem() as system:`"
            )
        return guardian

    def _auto_name(self, factory: type[Actor]) -> str:
        return f"{factory.__name__.lower()}-{next(self._names)}"

    # -- spawning and finding ---------------------------------------------

    def _spawn_parent(self) -> Cell:
        return self._guardian()

    def lookup(self, path: str) -> ActorRef | None:
        """The actor at ``path`` (such as ``/user/sup/worker``), or ``None``.

        An actor of this process is looked up at once (``None`` if none runs
        there). For a path that lives in another process of the tree (below a
        process actor, or outside a child's own subtree) the ref comes back
        without asking that process; ``await find(path)`` asks.
        """
        self._guardian()
        node = self._node()
        cell, link = node.find(path)
        if cell is not None:
            return cell.ref
        return node.ref(path) if link is not None else None

    async def find(self, path: str) -> ActorRef | None:
        """The actor at ``path`` in any process of the tree, if one runs there now."""
        self._guardian()
        node = self._node()
        cell, link = node.find(path)
        if cell is not None:
            return cell.ref if cell.accepting else None
        if link is None:
            return None
        from actorstage.transport._routing import _Identify

        return node.ref(path) if await node.call(path, _Identify()) else None

    async def register(self, name: str, ref: ActorRef) -> None:
        """Give ``ref`` a name that every process of the tree can look up with ``whereis``.

        Names are kept by the root process and are unique in the tree; a name
        goes when its actor stops. Raises ``InvalidDefinitionError`` when
        another actor holds the name.
        """
        from actorstage.transport._routing import REGISTRY, _Register

        if not isinstance(name, str) or not name:
            raise InvalidDefinitionError(f"a registered name is a non-empty str, got {name!r}")
        holder = await self._node().call(REGISTRY, _Register(name, ref.path))
        if holder:
            raise InvalidDefinitionError(f"the name {name!r} is taken by {holder}")

    async def unregister(self, name: str) -> None:
        """Forget ``name`` (nothing happens if it is not registered)."""
        from actorstage.transport._routing import REGISTRY, _Unregister

        await self._node().call(REGISTRY, _Unregister(name))

    async def whereis(self, name: str) -> ActorRef | None:
        """The actor registered under ``name`` anywhere in the tree, or ``None``."""
        from actorstage.transport._routing import REGISTRY, _WhereIs

        path = await self._node().call(REGISTRY, _WhereIs(name))
        return self.lookup(path) if path else None

    def observer(self, host: str = "127.0.0.1", port: int = 0, *,
                 token: str | None = None) -> Observer:
        """The live observer page of this system, served on ``host``:``port`` once entered
        (``async with system.observer(port=8000) as observer: print(observer.url)``). With
        a ``token``, the page may pause, resume, stop and restart actors. See
        ``actorstage.observer``."""
        from actorstage.observer import Observer

        return Observer(self, host, port, token=token)

    def tree(self) -> TreeNode:
        """A snapshot of the whole tree, rooted at ``/user``."""
        return snapshot(self._guardian(), kind="system")

    # -- signals -----------------------------------------------------------

    async def stop(self, ref: ActorRef) -> None:
        """Stop ``ref`` and its subtree on purpose; it is not restarted.

        Its children stop first (the last started first); its handler gets its
        shutdown timeout to finish, then is cancelled. Queued messages become
        dead letters and pending asks fail with ``ActorDeadError``. Returns
        when it has stopped, except when called from inside that subtree,
        where it returns at once (waiting would wait on the caller itself).
        """
        self._guardian()
        cell = ref._cell
        parent = cell.parent
        assert parent is not None
        inside = _inside(acting_cell(), cell)
        if cell.state >= STOPPING or parent.state >= STOPPING:
            if not inside:  # a stop is under way already: wait for it
                await _lifecycle.wait_stopped(cell)
            return

        async def stop_it() -> None:
            await _lifecycle.shutdown(cell, ExitReason.STOPPED)

        if inside:
            parent.post(stop_it)
            return
        await self._in_lane(parent, stop_it)

    async def pause(self, ref: ActorRef) -> None:
        """Pause ``ref`` and its subtree after the messages in hand.

        User messages queue up (bounded) and are delivered in order after
        ``resume``; asks wait for the resume or the caller's deadline.
        Signals (stop, pause, resume) still act. Returns when no handler of
        the subtree runs any more (except the caller's own, when called from
        inside it).
        """
        self._guardian()
        await _lifecycle.pause(ref._cell)

    async def resume(self, ref: ActorRef) -> None:
        """Resume ``ref`` and its subtree; queued messages are delivered in order."""
        self._guardian()
        await _lifecycle.resume(ref._cell)

    async def restart(self, ref: ActorRef) -> None:
        """Restart ``ref`` now, as its supervisor does after a crash: its children stop, a
        new instance of its class starts (``on_start`` again) and its mailbox is kept. It
        counts as a restart, not as a crash (no supervisor's intensity is charged). Raises
        ``ActorDeadError`` if it has stopped."""
        self._guardian()
        cell = ref._cell
        parent = cell.parent
        assert parent is not None
        if cell.state >= STOPPING:
            raise ActorDeadError(cell.path, cell.dead_reason())

        async def restart_it() -> None:
            if cell.state < STOPPING:
                await _lifecycle.restart(cell)

        await self._in_lane(parent, restart_it)

    async def _in_lane(self, cell: Cell, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` in ``cell``'s control lane and wait for its result."""
        if cell.state >= STOPPING:
            raise ActorDeadError(cell.path, cell.dead_reason())
        done: asyncio.Future[T] = self._loop.create_future()

        async def run() -> None:
            try:
                result = await operation()
            except Exception as exc:
                if done.done():
                    log.warning("control operation on %s failed after its caller left: %r",
                                cell.path, exc)
                else:
                    done.set_exception(exc)
            except BaseException:
                if not done.done():
                    done.set_exception(ActorDeadError(cell.path, "shutting down"))
                raise
            else:
                if not done.done():
                    done.set_result(result)

        cell.post(run)
        return await done


def _inside(cell: Cell | None, root: Cell) -> bool:
    while cell is not None:
        if cell is root:
            return True
        cell = cell.parent
    return False
