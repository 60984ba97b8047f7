"""The parent's side of a process actor: one ``ProcessHost`` per incarnation.

The host stands in the actor's cell where a local actor instance would be.
Its ``on_start`` launches the child process and returns once the actor's
``on_start`` has finished over there; the cell's queued messages go to the
child through the link's ``pump`` instead of a local handler; ``close``
stops the child (gracefully, then SIGTERM, then SIGKILL). A restart is a new
host, hence a new process; the cell, its ref and its unsent mailbox stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from actorstage import _shm
from actorstage._betterproto import betterproto2
from actorstage._proto.actorstage.bridge.v1 import (
    Envelope,
    Lifecycle,
    LifecycleKind,
    RemoteError,
    Signal,
    SignalKind,
    SpawnSpec,
)
from actorstage._telemetry import for_child
from actorstage.actors._actor import Actor
from actorstage.actors._cell import STOPPING
from actorstage.actors._message import ExitReason
from actorstage.exceptions import (
    ActorCrashedError,
    ActorDeadError,
    InvalidDefinitionError,
)
from actorstage.transport._codec import CODEC, RemoteErrorBody, type_name
from actorstage.transport._conn import Conn, StdioConn
from actorstage.transport._forkserver import ForkedProcess, ForkError
from actorstage.transport._guard import lineage
from actorstage.transport._link import (
    BAD_FRAME,
    CLOSED,
    SILENT,
    Link,
    ProcessRef,
    error_from_body,
)
from actorstage.transport._payloads import prefix_of
from actorstage.transport._placement import JoinedProcess
from actorstage.transport._spares import Spare, request_for

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell
    from actorstage.transport._options import ProcessOptions
    from actorstage.transport._server import BridgeServer, Expected

__all__ = ["ProcessHost", "ProcessRef", "check_importable", "encode_args"]

log = logging.getLogger("actorstage.transport")

_TAIL = 30  # stderr lines kept for the error report of a child that died
_KILL_GRACE = 1.0  # after SIGTERM, before SIGKILL


def check_importable(factory: type) -> None:
    """Refuse, before anything starts, an actor class a child process could not import."""
    if "<locals>" in factory.__qualname__:
        raise InvalidDefinitionError(
            f"{factory.__qualname__} is defined inside a function; a process actor's class "
            "must be defined at module level, so that the child can import it"
        )
    if _in_main(factory):
        main = sys.modules["__main__"]
        if getattr(main, "__file__", None) is None:
            raise InvalidDefinitionError(
                f"{factory.__qualname__} is defined in an interactive session; a process "
                "actor's class must live in a module or a script file"
            )


def encode_args(path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """The constructor arguments, each as ``(type, body)``; raises naming a bad one."""
    try:
        encoded_args = [CODEC.encode(value) for value in args]
        encoded_kwargs = {name: CODEC.encode(value) for name, value in kwargs.items()}
    except (TypeError, ValueError) as exc:
        raise InvalidDefinitionError(
            f"the arguments of process actor {path!r} cannot be sent to the child: {exc}; "
            "use msgspec-encodable values (msgspec Structs, numbers, str, lists, dicts, ...)"
        ) from None
    return msgspec.msgpack.encode([encoded_args, encoded_kwargs])


def _in_main(factory: type) -> bool:
    """Whether ``factory`` lives in the program's script: ``__main__``, or that script as
    a child process loaded it (``__actorstage_main__``), so grandchildren find it too."""
    return factory.__module__ in ("__main__", "__actorstage_main__", "__mp_main__")


def _main_of(factory: type) -> tuple[str, str]:
    """Where a child finds the parent's ``__main__`` (file, or module), if the class lives there."""
    if not _in_main(factory):
        return "", ""
    return main_location()


def main_location() -> tuple[str, str]:
    """The parent's ``__main__``: ``(script path, "")``, or ``("", module)`` under ``-m``."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):
        return "", str(spec.name)
    return os.path.abspath(getattr(main, "__file__", "") or ""), ""



# Spawned, forked by a forkserver, or started elsewhere and joined.
ChildProcess = asyncio.subprocess.Process | ForkedProcess | JoinedProcess


def _parent_mailbox(parent: Cell | None) -> int:
    """The parent's mailbox size if the child may send it messages, else 0.

    The system's guardian and supervisors take no messages.
    """
    from actorstage.supervisors._supervisor import Supervisor

    if parent is None or parent.parent is None or issubclass(parent.factory, Supervisor):
        return 0
    return parent.capacity


def _running(proc: ChildProcess) -> bool:
    if isinstance(proc, ForkedProcess | JoinedProcess):  # (an end without a status, too)
        return not proc.exited.done()
    return proc.returncode is None


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class ProcessHost(Actor):
    """One incarnation of a process actor, seen from the parent."""

    _traced = False  # (the runtime's own: see Actor._traced)

    __slots__ = (
        "closing",
        "exit_report",
        "expected",
        "forwarders",
        "incarnation",
        "link",
        "paused_ack",
        "pid",
        "proc",
        "resumed_ack",
        "server",
        "started",
        "tail",
    )

    def __init__(self) -> None:
        self.proc: ChildProcess | None = None
        self.pid: int | None = None
        self.link: Link | None = None
        self.server: BridgeServer | None = None
        self.expected: Expected | None = None
        self.started: asyncio.Future[None] | None = None
        self.paused_ack: asyncio.Future[None] | None = None
        self.resumed_ack: asyncio.Future[None] | None = None
        self.exit_report: tuple[ExitReason, ActorCrashedError | None] | None = None
        self.tail: deque[str] = deque(maxlen=_TAIL)
        self.forwarders: list[asyncio.Task[None]] = []
        self.closing = False
        self.incarnation = 0

    async def receive(self, message: Any) -> Any:  # pragma: no cover - the link delivers
        raise TypeError("a process host takes no messages itself")

    # -- start -------------------------------------------------------------------

    async def on_start(self) -> None:
        cell = self._cell
        options: ProcessOptions = cell.process
        self.incarnation = cell.incarnation
        self.started = cell.system._loop.create_future()
        try:
            async with asyncio.timeout(options.start_timeout):
                await self._launch(cell, options)
                await self.started
        except TimeoutError:
            why = self.proc.explain() if isinstance(self.proc, JoinedProcess) else ""
            await self._kill()
            what = (f"its process did not join within {options.start_timeout:g}s "
                    f"(ProcessOptions.start_timeout; placed by {options.placement!r})"
                    f"{': ' + why if why else ''}"
                    if options.placement is not None and not self.pid else
                    f"the child process (pid {self.pid}) did not start within "
                    f"{options.start_timeout:g}s (ProcessOptions.start_timeout)")
            raise ActorCrashedError(cell.path, "TimeoutError", what, self._tail_text(),
                                    during="starting") from None
        except BaseException:
            await self._kill()
            raise
        cell.pump = self.link.pump if self.link is not None else None

    async def _launch(self, cell: Cell, options: ProcessOptions) -> None:
        system = cell.system
        command = list(options.command or (options.python, "-m", "actorstage.transport"))
        env = dict(os.environ)
        for name, value in (options.env or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        if options.start == "forkserver" and options.spares:
            pool = system._spare_pool()
            key = pool.key(options, command, env)
            spare = pool.take(key)
            # Once this actor has started, the next spare is made (not to slow this one).
            assert self.started is not None
            request = request_for(cell.factory, _main_of(cell.factory))

            def refill(started: asyncio.Future[None]) -> None:
                if not started.cancelled() and started.exception() is None:
                    pool.refill(key, options, command, env, request)

            self.started.add_done_callback(refill)
            if spare is not None:
                self._adopt(cell, options, spare)
                return
        guard = await system._guard()  # first: it must know of the child as soon as it exists
        boot: dict[str, Any] = {"transport": options.transport, "ppid": os.getpid(),
                                "telemetry": for_child(),
                                "owner": os.getpid(), "path": cell.path,
                                "max_frame_size": options.max_frame_size,
                                "link_idle": options.link_idle_timeout,
                                "ancestors": lineage()}
        if options.transport != "stdio":
            self.server, self.expected = await system._expect_child(options, boot, cell.path)
        if options.placement is not None:
            await self._join(cell, options, boot)
            return
        try:
            if options.start == "forkserver":
                proc: ChildProcess = await self._fork(cell, command, env, options, boot)
            else:
                proc = await asyncio.create_subprocess_exec(
                    *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, cwd=options.cwd,
                    env=dict(env, ACTORSTAGE_CHILD="1", PYTHONUNBUFFERED="1"),
                    limit=options.max_frame_size + 1024,
                )
        except (OSError, ForkError) as exc:
            raise ActorCrashedError(cell.path, type(exc).__qualname__,
                                    f"cannot start {command[0]!r}: {exc}",
                                    during="starting") from exc
        self.proc = proc
        self.pid = proc.pid
        if guard is not None:
            guard.child(proc.pid, proc.pidfd if isinstance(proc, ForkedProcess) else None)
            guard.sweep(str(_shm.SHM_DIR), prefix_of(proc.pid))  # its large payloads' slots
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        if options.start != "forkserver":  # a forked child had its boot in the request
            proc.stdin.write(msgspec.json.encode(boot) + b"\n")
            await proc.stdin.drain()
        owner = cell.owner
        self.forwarders.append(owner.start(self._forward(proc.stderr, "stderr")))
        conn: Conn
        if options.transport == "stdio":
            conn = StdioConn(proc.stdout, proc.stdin, options.max_frame_size)
        else:
            proc.stdin.close()
            self.forwarders.append(owner.start(self._forward(proc.stdout, "stdout")))
            conn = await self._accept(cell)
        self._link_up(cell, options, proc, conn)
        if "spec" not in boot:  # (a forked child had it in its request)
            assert self.link is not None
            self.link.send_control(Envelope(spawn=self._spec(cell, options)))

    async def _join(self, cell: Cell, options: ProcessOptions, boot: dict[str, Any]) -> None:
        """Have the placement start the process somewhere, with a join bundle; wait for its
        hello (see ``_placement``)."""
        from actorstage.transport._payloads import ARENA
        from actorstage.transport._placement import encode_bundle

        ARENA.off = True  # it may be on another machine: payloads inline while this system runs
        cell.system._placed = True
        bundle = dict(boot, joined=True, ppid=0, path=cell.path)
        for local in ("owner", "ancestors"):  # (what only a child of this machine uses)
            bundle.pop(local, None)
        try:
            proc = await options.placement.start(encode_bundle(bundle))
        except Exception as exc:
            raise ActorCrashedError(cell.path, type(exc).__qualname__,
                                    f"its placement could not launch its process: {exc}",
                                    during="starting") from exc
        self.proc = proc
        conn = await self._accept(cell)
        assert self.expected is not None
        self.pid = proc.pid = self.expected.arrived.result()[1]
        self._link_up(cell, options, proc, conn)
        assert self.link is not None
        self.link.send_control(Envelope(spawn=self._spec(cell, options)))

    def _adopt(self, cell: Cell, options: ProcessOptions, spare: Spare) -> None:
        """Give this actor to a spare child: it is connected already, and waits for a spec."""
        proc = spare.proc
        self.proc = proc
        self.pid = proc.pid
        self.server, self.expected = spare.server, spare.expected
        owner = cell.owner
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.forwarders.append(owner.start(self._forward(proc.stderr, "stderr")))
        conn = spare.conn
        if conn is None:  # stdio
            conn = StdioConn(proc.stdout, proc.stdin, options.max_frame_size)
        else:
            self.forwarders.append(owner.start(self._forward(proc.stdout, "stdout")))
        self._link_up(cell, options, proc, conn)
        assert self.link is not None
        self.link.send_control(Envelope(spawn=self._spec(cell, options)))

    def _link_up(self, cell: Cell, options: ProcessOptions, proc: ChildProcess,
                 conn: Conn) -> None:
        system = cell.system
        owner = cell.owner
        link = self.link = Link(
            conn, cell.path, owner,
            heartbeat_interval=options.heartbeat_interval,
            heartbeat_timeout=options.heartbeat_timeout,
            on_control=self._control, on_lost=self._lost,
        )
        link.out_cell = cell
        link.router = system._node()
        link.apart = isinstance(proc, JoinedProcess)
        if _parent_mailbox(cell.parent):
            link.in_cell = cell.parent  # what the child sends its parent
        link.start()
        owner.start(self._watch_exit(proc))

    async def _fork(
        self, cell: Cell, command: list[str], env: dict[str, str], options: ProcessOptions,
        boot: dict[str, Any],
    ) -> ChildProcess:
        """A child forked by this system's forkserver for these options."""
        server = await cell.system._forkserver(command, env, options.cwd)
        boot["ppid"] = server.pid  # the child's parent is the forkserver, which dies with us
        factory = cell.factory
        main_path, main_module = _main_of(factory)
        boot["spec"] = bytes(self._spec(cell, options))  # saves the child a round trip
        request = {"boot": msgspec.json.encode(boot), "module": factory.__module__,
                   "main_path": main_path, "main_module": main_module,
                   "sys_path": [entry for entry in sys.path if entry]}
        return await server.fork(request, options.max_frame_size + 1024)

    async def _accept(self, cell: Cell) -> Conn:
        """Wait for the child's stream, or for the child's death before it connects."""
        from actorstage.transport._server import hello_or_exit

        assert self.expected is not None and self.proc is not None
        conn: Conn | None = await hello_or_exit(self.expected, self.proc)
        if conn is not None:
            return conn
        await self._drain_forwarders()
        if isinstance(self.proc, JoinedProcess):  # (no pid yet, no output of its own here)
            raise ActorCrashedError(
                cell.path, "ProcessExited",
                f"its process (placed by {cell.process.placement!r}) ended with status "
                f"{self._status_text(self.proc.returncode)} before it connected (as one "
                "does that the parent refuses, or that cannot verify the parent's "
                "certificate); its own log says why", during="starting")
        raise ActorCrashedError(
            cell.path, "ProcessExited",
            f"the child process (pid {self.pid}) exited with status "
            f"{self._status_text(self.proc.returncode)} before it connected",
            self._tail_text(), during="starting",
        )

    def _spec(self, cell: Cell, options: ProcessOptions) -> SpawnSpec:
        factory = cell.factory
        main_path, main_module = _main_of(factory)
        return SpawnSpec(
            path=cell.path,
            actor=type_name(factory),
            args=encode_args(cell.path, *cell.arguments),
            mailbox_size=cell.capacity,
            shutdown_timeout=cell.shutdown_timeout or 0.0,
            heartbeat_interval=options.heartbeat_interval,
            heartbeat_timeout=options.heartbeat_timeout,
            main_path=main_path,
            main_module=main_module,
            sys_path=[entry for entry in sys.path if entry],
            paused=cell.paused,
            log_level=logging.getLogger().getEffectiveLevel(),
            parent_mailbox=_parent_mailbox(cell.parent),
        )

    # -- the child's output --------------------------------------------------------

    async def _forward(self, stream: asyncio.StreamReader, name: str) -> None:
        """Copy the child's stdout or stderr to ours, line by line, keeping a stderr tail."""
        target = sys.stdout if name == "stdout" else sys.stderr
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the limit: take it in pieces
                line = await stream.read(65536)
            if not line:
                return
            text = line.decode(errors="replace")
            if name == "stderr":
                self.tail.append(text)
            target.write(text)
            target.flush()

    async def _drain_forwarders(self) -> None:
        if self.forwarders:
            await asyncio.wait(self.forwarders, timeout=1.0)

    def _tail_text(self) -> str:
        return "".join(self.tail)

    # -- what the child says ---------------------------------------------------------

    def _control(self, envelope: Envelope) -> None:
        name, body = betterproto2.which_one_of(envelope, "body")
        if isinstance(body, Lifecycle):
            self._lifecycle(body)
        elif name == "log":
            self._log(body)
        elif name == "heartbeat":
            pass
        else:
            log.warning("process actor %s sent an unexpected %r envelope; ignored",
                        self._cell.path, name)

    def _lifecycle(self, event: Lifecycle) -> None:
        cell = self._cell
        kind = event.kind
        if kind == LifecycleKind.STARTED:
            if self.link is not None:
                self.link.credits = cell.capacity
            if self.started is not None and not self.started.done():
                self.started.set_result(None)
        elif kind == LifecycleKind.START_FAILED:
            if self.started is not None and not self.started.done():
                self.started.set_exception(self._remote_error(event))
        elif kind == LifecycleKind.EXITED:
            reason = ExitReason(event.reason) if event.reason in ExitReason._value2member_map_ \
                else ExitReason.CRASHED
            error: ActorCrashedError | None = None
            if reason is ExitReason.CRASHED:
                error = self._remote_error(event)
            self.exit_report = (reason, error)
            self._report(reason, error)
        elif kind == LifecycleKind.PAUSED:
            _resolve(self.paused_ack)
        elif kind == LifecycleKind.RESUMED:
            _resolve(self.resumed_ack)

    def _remote_error(self, event: Lifecycle) -> ActorCrashedError:
        remote = event.error or RemoteError()
        body = RemoteErrorBody(remote.path or self._cell.path, remote.type_name or "Error",
                               remote.message, remote.traceback, remote.during)
        error = error_from_body(body)
        if isinstance(error, ActorCrashedError):
            return error
        return ActorCrashedError(body.path, body.type_name, body.message, body.traceback)

    def _log(self, record: Any) -> None:
        logger = logging.getLogger(record.logger or "root")
        if not logger.isEnabledFor(record.level):
            return
        # "[/user/x pid 42] ...", or "[pid 42] ..." when the message names the path itself.
        named = record.path and record.path in record.message
        made = logger.makeRecord(
            logger.name, record.level, "(child process)", 0,
            "[pid %d] %s" if named else "[%s pid %d] %s",
            (record.pid, record.message) if named else (record.path, record.pid, record.message),
            None, extra={"actor_path": record.path, "child_pid": record.pid},
        )
        made.created = record.created or made.created
        made.process = record.pid
        made.exc_text = record.exc_text or None
        logger.handle(made)

    def _report(self, reason: ExitReason, error: ActorCrashedError | None) -> None:
        """This incarnation ended: tell the parent's policy, once."""
        cell = self._cell
        if cell.incarnation == self.incarnation and cell.state < STOPPING and not self.closing:
            cell.pump = None
            cell.exited(reason, error)

    # -- the end ------------------------------------------------------------------------

    def _lost(self, problem: str, cause: str) -> None:
        if isinstance(self.proc, JoinedProcess) and cause == CLOSED:
            self.proc.lost()  # (its link closed: for this side, it has ended)
        if self.closing:
            return
        with contextlib.suppress(RuntimeError):  # the owner is closing: close() does the rest
            self._cell.owner.start(self._ended(problem, cause))

    async def _ended(self, problem: str, cause: str) -> None:
        """The link is gone without a stop from us: find out why and report it."""
        cell = self._cell
        proc = self.proc
        if cause != CLOSED:  # alive but unusable: it sent a bad frame, or it is frozen
            log.error("process actor %s (pid %s): %s; killing it", cell.path, self.pid, problem)
            await self._kill()
        elif proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except TimeoutError:
                await self._kill()
        await self._drain_forwarders()
        returncode = proc.returncode if proc is not None else None
        if self.exit_report is not None:
            reason, error = self.exit_report
        else:
            reason = ExitReason.CRASHED
            error = self._process_error(problem, returncode, cause)
        self._settle(error, f"process actor {reason}")
        if self.started is not None and not self.started.done():
            self.started.set_exception(error or ActorCrashedError(
                cell.path, "ProcessExited", problem, during="starting"))
        self._report(reason, error)

    def _process_error(
        self, problem: str, returncode: int | None, cause: str
    ) -> ActorCrashedError:
        cell = self._cell
        if cause == BAD_FRAME:
            type_name_ = "TransportError"
            what = f"it sent a bad frame: {problem}"
        elif cause == SILENT:
            type_name_ = "HeartbeatTimeout"
            what = f"it stopped answering: {problem}"
        elif returncode is not None and returncode < 0:
            type_name_ = "ProcessKilled"
            what = f"it was killed by {_signal_name(returncode)}"
        else:
            type_name_ = "ProcessExited"
            what = f"it exited with status {self._status_text(returncode)}"
            if not problem.startswith("the child process exited"):
                what += f" ({problem})"
        return ActorCrashedError(cell.path, type_name_, f"child process {self.pid}: {what}",
                                 self._tail_text())

    def _settle(self, error: ActorCrashedError | None, reason: str) -> None:
        """Fail the asks still waiting and dead-letter the tells lost in flight.

        After a clean end of an incarnation that is to be restarted, messages
        the child never took out of its mailbox go back to the front of ours
        for the next incarnation instead, in order.
        """
        link = self.link
        if link is None:
            return
        cell = self._cell
        path = cell.path
        if self.exit_report is not None and cell.state < STOPPING:
            returned = link.take_back_in_flight()
            if returned:
                queue = cell.queue or deque()
                queue.extendleft(reversed(returned))
                cell.queue = queue
        link.fail_pending(lambda: error if error is not None else ActorDeadError(path, reason))
        lost = link.dead_letter_in_flight(f"lost in flight: {reason}")
        if lost:
            log.warning("process actor %s: %d message(s) sent to it were lost in flight "
                        "(see dead letters)", path, lost)
        if self.pid is not None and self.proc is not None and not _running(self.proc) and \
                not isinstance(self.proc, JoinedProcess):  # (that pid is of another machine)
            _shm.sweep(prefix_of(self.pid))  # what it left in shared memory, if it was killed

    def _status_text(self, returncode: int | None) -> str:
        if returncode is None:
            return "unknown (its forkserver is gone)"
        if returncode < 0:
            return _signal_name(returncode)
        return str(returncode)

    async def _watch_exit(self, proc: ChildProcess) -> None:
        await proc.wait()
        link = self.link
        if link is not None and not link.closed:
            link.lose(f"the child process exited with status {self._status_text(proc.returncode)}")

    async def close(self, graceful: bool) -> None:
        """End this incarnation: stop the child, then SIGTERM, then SIGKILL; reap it."""
        self.closing = True
        cell = self._cell
        proc = self.proc
        link = self.link
        if proc is not None and _running(proc):
            if graceful and link is not None and not link.closed:
                link.send_control(Envelope(signal=Signal(kind=SignalKind.STOP)))
                bound = (cell.shutdown_timeout or 0.0) + 1.0
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), bound)
                except TimeoutError:
                    log.warning("process actor %s (pid %s) did not stop within %gs; terminating",
                                cell.path, self.pid, bound)
            await self._kill()
        if link is not None:
            await link.aclose()
        await self._drain_forwarders()
        error = self.exit_report[1] if self.exit_report is not None else None
        self._settle(error, f"process actor {cell.exit_reason or 'restarting'}")
        if self.server is not None and self.expected is not None:
            self.server.forget(self.expected)

    async def _kill(self) -> None:
        """SIGTERM, a short grace, then SIGKILL; always reaps the process."""
        proc = self.proc
        if proc is None:
            return
        if _running(proc):
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), _KILL_GRACE)
            except TimeoutError:
                proc.kill()
        await proc.wait()
        if self.link is not None:
            await self.link.aclose()

    # -- pause and resume cross the boundary --------------------------------------------

    async def on_pause(self) -> None:
        self.paused_ack = self._cell.system._loop.create_future()
        await self._signal(SignalKind.PAUSE, self.paused_ack)

    async def on_resume(self) -> None:
        self.resumed_ack = self._cell.system._loop.create_future()
        await self._signal(SignalKind.RESUME, self.resumed_ack)

    async def _signal(self, kind: SignalKind, ack: asyncio.Future[None]) -> None:
        link = self.link
        if link is None or link.closed:
            return
        link.send_control(Envelope(signal=Signal(kind=kind)))
        while not ack.done() and not link.closed:  # the child acknowledges, or the link ends
            await asyncio.wait({ack}, timeout=link.heartbeat_interval)


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
