"""``ChildEnd``: what runs in the child process once it has its bootstrap line."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import logging
import os
import select
import shutil
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

import msgspec

from actorstage._betterproto import betterproto2
from actorstage._proto.actorstage.bridge.v1 import (
    Envelope,
    Lifecycle,
    LifecycleKind,
    LogRecord,
    RemoteError,
    Signal,
    SignalKind,
    SpawnSpec,
)
from actorstage.actors._actor import Actor
from actorstage.actors._lifecycle import shutdown, start_child
from actorstage.actors._message import ExitReason
from actorstage.actors._system import ActorSystem
from actorstage.exceptions import ActorCrashedError
from actorstage.transport._child import load_main
from actorstage.transport._codec import CODEC
from actorstage.transport._conn import Conn, StdioConn, read_stream, write_stream
from actorstage.transport._link import Link, ProcessRef, error_body
from actorstage.transport._routing import ROUTER

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell
    from actorstage.transport._tls import TreeTls

__all__ = ["ChildEnd"]

log = logging.getLogger("actorstage.transport")

_SPEC_TIMEOUT = 30.0
_LOST_GRACE = 1.0  # the tree's time to stop once the parent is gone (the guard waits 1.2 s)
_FLUSH_TIMEOUT = 2.0
_GRPC_MAX = 2**31 - 1
_OWNER_EXIT_WAIT = 0.05  # a killed parent's socket closes a moment before it counts as exited


class _ChildGuardian(Actor):
    """The child system's root: reports its one actor's exit to the parent process."""

    _traced = False  # (the runtime's own: see Actor._traced)

    __slots__ = ("end",)

    def __init__(self, end: ChildEnd) -> None:
        self.end = end

    async def receive(self, message: Any) -> Any:
        raise TypeError("the child's root takes no messages")

    def _policy(self) -> _ChildGuardian:
        return self

    @property
    def link(self) -> Link | None:
        """The bridge, for asks to the parent actor that are given up."""
        return self.end.link

    async def child_exited(
        self, parent: Cell, child: Cell, reason: ExitReason, error: ActorCrashedError | None
    ) -> None:
        self.end.report_exit(reason, error)
        await shutdown(child, reason, error)
        self.end.finish("exited")

    def child_removed(self, parent: Cell, child: Cell) -> None:
        pass


class _Forward(logging.Handler):
    """Sends this process's log records to the parent over the link."""

    def __init__(self, end: ChildEnd, path: str) -> None:
        super().__init__()
        self.end = end
        self.path = path
        self.pid = os.getpid()
        self.thread = threading.get_ident()
        self.loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc_text = record.exc_text or ""
            if record.exc_info and not exc_text:
                exc_text = logging.Formatter().formatException(record.exc_info)
            envelope = Envelope(log=LogRecord(
                logger=record.name, level=record.levelno, message=record.getMessage(),
                path=self.path, pid=self.pid, created=record.created, exc_text=exc_text,
            ))
            if threading.get_ident() == self.thread:
                self.end.send_log(envelope, record)
            else:
                self.loop.call_soon_threadsafe(self.end.send_log, envelope, record)
        except Exception:
            self.handleError(record)


CURRENT: ChildEnd | None = None  # this process's end, for tests and debugging


class ChildEnd:
    """Connects to the parent, runs the actor, serves signals, reports the end."""

    def __init__(self, boot: dict[str, Any]) -> None:
        global CURRENT
        CURRENT = self
        self.boot = boot
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[str] = self.loop.create_future()
        self.link: Link | None = None
        self.cell: Cell | None = None
        self.system: ActorSystem | None = None
        self.reported = False
        self.signals: asyncio.Queue[SignalKind] = asyncio.Queue()
        self.owner_fd: int | None = None  # a pidfd of the parent process, to see it die
        self.tls: TreeTls | None = None  # this process's certificate of the tree, if TCP+TLS
        with contextlib.suppress(AttributeError, OSError, KeyError):
            self.owner_fd = os.pidfd_open(int(boot["owner"]))

    async def run(self) -> int:
        conn = await self._connect()
        async with contextlib.AsyncExitStack() as stack:
            system: ActorSystem | None = None
            if self.boot.get("spare"):  # what can be done before the actor is known, is
                await _warm_up()
                system = await stack.enter_async_context(ActorSystem("child"))
            if "spec" in self.boot:  # forked: the spec came with the request (the forkserver)
                spec = SpawnSpec().parse(base64.b64decode(self.boot["spec"]))
            else:
                # A spare waits for its actor as long as it takes (it dies with its parent).
                wait = None if system is not None else _SPEC_TIMEOUT
                spec = _spec_of(await asyncio.wait_for(conn.recv(), wait))
            if system is None:
                system = await stack.enter_async_context(ActorSystem("child"))
            system.name = f"child:{spec.path}"
            system._mailbox_size = spec.mailbox_size or 1000
            system._shutdown_timeout = spec.shutdown_timeout or 5.0
            return await self._run(conn, spec, system)

    async def _run(self, conn: Conn, spec: SpawnSpec, system: ActorSystem) -> int:
        for entry in spec.sys_path:
            if entry not in sys.path:
                sys.path.append(entry)
        self.loop.add_signal_handler(signal.SIGTERM, self.finish, "terminated")
        parent_path = spec.path.rsplit("/", 1)[0] or "/"
        name = spec.path.rsplit("/", 1)[1]
        self.system = system
        system._tls = self.tls  # (its own children and direct links use it too)
        guardian = system._guardian_cell
        assert guardian is not None
        guardian.path = parent_path
        guardian.paused = spec.paused
        guardian.actor = _ChildGuardian(self)
        guardian.actor._cell = guardian
        link = self.link = Link(
            conn, spec.path, system._root,
            heartbeat_interval=spec.heartbeat_interval or 1.0,
            heartbeat_timeout=spec.heartbeat_timeout or 10.0,
            on_control=self._control, on_lost=lambda problem, cause: self.finish("lost"),
        )
        router = link.router = system._node()
        router.root_path, router.up = spec.path, link  # this node owns the actor's subtree
        link.apart = bool(self.boot.get("joined"))  # (its parent may be on another machine)
        # Sockets are welcome here (a process that joined, maybe from another machine, takes
        # its messages through the tree: its doors would be unix sockets of its machine).
        router.direct = self.boot["transport"] != "stdio" and not self.boot.get("joined")
        router.idle_timeout = float(self.boot.get("link_idle", 30.0))
        if spec.parent_mailbox:  # the root stands for the parent actor: what it gets, goes
            guardian.capacity = spec.parent_mailbox
            guardian.pump = link.pump
            guardian.ref = ProcessRef._from_cell(guardian)
            link.out_cell = guardian
            link.credits = spec.parent_mailbox
        link.start()
        self._forward_logs(spec)
        try:
            token = ROUTER.set(router)  # refs among the arguments: refs of this node
            try:
                factory, args, kwargs = _load(spec)
            finally:
                ROUTER.reset(token)
            cell = await start_child(
                guardian, factory, args, kwargs, name=name, capacity=spec.mailbox_size or None,
                shutdown_timeout=spec.shutdown_timeout or None,
            )
        except Exception as exc:
            error = exc if isinstance(exc, ActorCrashedError) else \
                ActorCrashedError.from_exception(spec.path, exc, during="starting")
            link.send_control(_lifecycle(LifecycleKind.START_FAILED, error=error))
            await link.flush(_FLUSH_TIMEOUT)
            await link.aclose()
            return 0
        self.cell = cell
        link.in_cell = cell
        link.send_control(_lifecycle(LifecycleKind.STARTED, pid=os.getpid()))
        system._root.start(self._serve_signals())
        why = await self.done
        await self._stop(why)
        self._restore_logging()
        await link.flush(_FLUSH_TIMEOUT)
        await link.aclose()
        return 0

    async def _connect(self) -> Conn:
        boot = self.boot
        limit = int(boot.get("max_frame_size", _GRPC_MAX))
        if boot["transport"] == "stdio":
            fd_in, fd_out = boot["fds"]
            reader = await read_stream(self.loop, fd_in, limit + 1024)
            return StdioConn(reader, await write_stream(self.loop, fd_out), limit)
        from actorstage.transport._dial import dial

        tls = None
        if boot.get("tls"):  # TCP with TLS: this process's certificate of the tree
            from actorstage.transport._tls import TreeTls

            tls = self.tls = TreeTls.from_boot(boot["tls"])
        return await dial(boot["address"], boot["token"], boot["secret"], limit, tls)

    # -- signals from the parent ------------------------------------------------------

    def _control(self, envelope: Envelope) -> None:
        name, body = betterproto2.which_one_of(envelope, "body")
        if isinstance(body, Signal):
            if body.kind == SignalKind.STOP:
                self.finish("stop")
            else:
                self.signals.put_nowait(body.kind)
        elif name not in ("heartbeat", "spawn"):
            log.warning("child of %s got an unexpected %r envelope; ignored",
                        self.link.path if self.link else "?", name)

    async def _serve_signals(self) -> None:
        while True:
            kind = await self.signals.get()
            cell, system, link = self.cell, self.system, self.link
            if cell is None or system is None or link is None:
                continue
            if kind == SignalKind.PAUSE:
                await system.pause(cell.ref)
                link.send_control(_lifecycle(LifecycleKind.PAUSED))
            elif kind == SignalKind.RESUME:
                await system.resume(cell.ref)
                link.send_control(_lifecycle(LifecycleKind.RESUMED))

    def finish(self, why: str) -> None:
        if not self.done.done():
            self.done.set_result(why)

    def report_exit(self, reason: ExitReason, error: ActorCrashedError | None) -> None:
        if self.reported or self.link is None:
            return
        self.reported = True
        self.link.ending = True
        self.link.send_control(_lifecycle(LifecycleKind.EXITED, reason=str(reason), error=error))

    async def _stop(self, why: str) -> None:
        cell = self.cell
        if cell is None:
            return
        if why == "stop":  # the parent asked: a graceful stop, like a local one
            if self.link is not None:
                self.link.ending = True
            await shutdown(cell, ExitReason.STOPPED)
            self.report_exit(ExitReason.STOPPED, None)
            return
        if why in ("lost", "terminated"):
            self._remove_dead_parents_socket()
            try:
                async with asyncio.timeout(_LOST_GRACE):
                    await shutdown(cell, ExitReason.SHUTDOWN)
            except TimeoutError:
                sys.stderr.write(f"actorstage child {cell.path}: the tree did not stop "
                                 f"within {_LOST_GRACE}s after the parent went away\n")
                os._exit(1)
        await asyncio.sleep(0)

    def _owner_gone(self) -> bool:
        """Whether the parent process (the actor system, not a forkserver) has died."""
        fd = self.owner_fd
        if fd is None:
            return os.getppid() != self.boot.get("ppid")
        readable, _, _ = select.select([fd], [], [], _OWNER_EXIT_WAIT)  # readable once it exits
        return bool(readable)

    def _remove_dead_parents_socket(self) -> None:
        """A parent killed outright cannot remove its socket directory: do it for it."""
        address = str(self.boot.get("address", ""))
        if not address.startswith("unix:") or not self._owner_gone():
            return  # the parent lives (it only closed the stream): the directory is its own
        directory = os.path.dirname(address[len("unix:"):])
        if os.path.basename(directory).startswith("actorstage-"):
            shutil.rmtree(directory, ignore_errors=True)

    # -- logging ----------------------------------------------------------------------

    def _forward_logs(self, spec: SpawnSpec) -> None:
        root = logging.getLogger()
        self.handler = _Forward(self, spec.path)
        self.saved_handlers = list(root.handlers)
        for handler in self.saved_handlers:
            root.removeHandler(handler)
        root.addHandler(self.handler)
        root.setLevel(spec.log_level or logging.WARNING)

    def _restore_logging(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)

    def send_log(self, envelope: Envelope, record: logging.LogRecord) -> None:
        link = self.link
        if link is not None and not link.closed:
            link.send_control(envelope)
        else:
            sys.stderr.write(logging.Formatter(logging.BASIC_FORMAT).format(record) + "\n")


def _spec_of(received: Any) -> SpawnSpec:
    if received is None:
        raise ConnectionError("the parent closed the stream before sending the actor's spec")
    envelopes, _ = received
    for envelope in envelopes:
        name, body = betterproto2.which_one_of(envelope, "body")
        if name == "spawn":
            assert isinstance(body, SpawnSpec)
            return body
    raise ConnectionError("the parent's first frame holds no spawn spec")


class _WarmUp(Actor):
    _traced = False  # (the runtime's own: see Actor._traced)

    async def receive(self, message: Any) -> Any:
        return message


async def _warm_up() -> None:
    """A spare child runs what every actor's start runs, once, while it waits for its actor.

    A forked child shares its parent's memory until it writes to it, and Python writes
    to every object it uses (reference counts): the first run of anything copies pages.
    Done here, it is done before anyone waits for it.
    """
    async with ActorSystem("warm-up") as system:
        ref = await system.spawn(_WarmUp)
        await ref.ask(ExitReason.NORMAL)
        await system.stop(ref)


def _load(spec: SpawnSpec) -> tuple[type[Actor], tuple[Any, ...], dict[str, Any]]:
    load_main(spec.main_path, spec.main_module)
    module_name, _, qualname = spec.actor.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Actor)):
        raise TypeError(f"{spec.actor!r} is not an Actor subclass")
    encoded_args, encoded_kwargs = msgspec.msgpack.decode(spec.args)
    args = tuple(CODEC.decode(name, body) for name, body in encoded_args)
    kwargs = {key: CODEC.decode(name, body) for key, (name, body) in encoded_kwargs.items()}
    return obj, args, kwargs


def _lifecycle(
    kind: LifecycleKind, *, pid: int = 0, reason: str = "", error: BaseException | None = None
) -> Envelope:
    remote = None
    if error is not None:
        body = error_body(error, "")
        remote = RemoteError(path=body.path, type_name=body.type_name, message=body.message,
                             traceback=body.traceback, during=body.during)
    return Envelope(lifecycle=Lifecycle(kind=kind, pid=pid, reason=reason, error=remote))
