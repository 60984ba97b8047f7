"""Warm spawn: a pre-started process that forks the children of process actors.

The forkserver is a fresh interpreter, started through the same entry point
as a spawned child but with ``ACTORSTAGE_CHILD=forkserver``. It imports
actorstage's child side once, and each actor's module the first time it is
asked for one, then waits for requests on a unix socket from the parent,
single-threaded and with no event loop, so that forking it is safe.

A request carries the new child's stdin, stdout and stderr as file
descriptors. The server forks; the new process makes them its 0, 1 and 2
and carries on as an ordinary child (it reads its bootstrap line on stdin).
The server answers with the child's pid and a pidfd, so the parent signals
exactly that process, and it reports the exit status when it reaps it. It
exits when the parent closes the socket, and dies with the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import itertools
import os
import selectors
import signal
import socket
import sys
import threading
import traceback
from functools import partial
from typing import Any

import msgspec

from actorstage.transport._conn import read_stream, write_stream

__all__ = ["ForkServer", "ForkedProcess", "serve"]

_PACKET = 1 << 20  # requests and answers are single SEQPACKET messages, far below this
_PRELOAD = (
    "asyncio", "anyio", "anyio._backends._asyncio", "grpclib.client", "msgspec", "actorstage._run",
    "actorstage.transport._child_end", "actorstage.transport._codec",
)
_CLOSE_GRACE = 2.0


class ForkError(Exception):
    """The forkserver could not start a child; the message says why."""


# -- the server process ---------------------------------------------------------------


def serve() -> dict[str, Any]:
    """Be the forkserver. Returns only in a forked child (its 0, 1, 2 set up): its boot."""
    from actorstage.transport._child import die_with_parent

    control = socket.socket(fileno=0)
    data, _fds, _flags, _address = socket.recv_fds(control, _PACKET, 0)
    if not data:
        os._exit(0)
    boot = msgspec.msgpack.decode(data)
    die_with_parent(int(boot["ppid"]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in (*_PRELOAD, "uvloop"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from actorstage.transport._codec import warm_protos

    warm_protos()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    preloaded: set[str] = set()
    gc.freeze()  # what is imported now stays shared with every child (copy-on-write)
    while True:
        for key, _events in selector.select():
            if key.fileobj is control:
                data, fds, _flags, _address = socket.recv_fds(control, _PACKET, 3)
                if not data:  # the parent closed the socket, or died
                    os._exit(0)
                request = msgspec.msgpack.decode(data)
                pid = _fork(control, request, fds, preloaded)
                if pid == 0:  # the new child
                    selector.close()
                    control.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    for target, fd in enumerate(fds):
                        os.dup2(fd, target)
                        os.close(fd)
                    child_boot: dict[str, Any] = msgspec.json.decode(request["boot"])
                    return child_boot
            else:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
        _reap(control)


def _fork(control: socket.socket, request: dict[str, Any], fds: list[int],
          preloaded: set[str]) -> int:
    """Fork a child for ``request``; 0 in the child, its pid (or -1) in the server."""
    ident = request["id"]
    try:
        if len(fds) != 3:
            raise ForkError(f"a request needs 3 file descriptors, got {len(fds)}")
        _preload(request, preloaded)
        threads = threading.active_count()
        if threads > 1:
            raise ForkError(
                f"the forkserver runs {threads - 1} thread(s) after importing "
                f"{request.get('module')!r}, and forking a threaded process is unsafe; "
                "start this actor with ProcessOptions(start='spawn')"
            )
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except Exception as exc:
        for fd in fds:
            os.close(fd)
        _answer(control, ["failed", ident, str(exc) or type(exc).__qualname__])
        return -1
    if pid == 0:
        return 0
    for fd in fds:
        os.close(fd)
    pidfd = -1
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    try:
        _answer(control, ["forked", ident, pid], [pidfd] if pidfd >= 0 else [])
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    return pid


def _preload(request: dict[str, Any], preloaded: set[str]) -> None:
    """Import the actor's module here once, so each fork finds it loaded.

    Best effort: a module that fails to import is imported again by the
    child, which reports the error the usual way.
    """
    from actorstage.transport._child import load_main

    for entry in request.get("sys_path", ()):
        if entry not in sys.path:
            sys.path.append(entry)
    key = f"{request.get('main_path', '')}|{request.get('main_module', '')}|{request['module']}"
    if key in preloaded:
        return
    preloaded.add(key)
    try:
        load_main(request.get("main_path", ""), request.get("main_module", ""))
        importlib.import_module(request["module"])
    except (Exception, SystemExit):
        sys.stderr.write("actorstage forkserver: preloading failed (the child will report it):\n"
                         + traceback.format_exc(limit=3))
    gc.freeze()


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _answer(control, ["exited", pid, os.waitstatus_to_exitcode(status)])


def _answer(control: socket.socket, message: list[Any], fds: list[int] | None = None) -> None:
    with contextlib.suppress(OSError):  # the parent is gone; the next read says so
        socket.send_fds(control, [msgspec.msgpack.encode(message)], fds or [])


# -- the parent's handle ----------------------------------------------------------------


class ForkedProcess:
    """A child the forkserver forked, with what the host needs of a subprocess."""

    def __init__(self, pid: int, pidfd: int | None, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.returncode: int | None = None
        self.exited = loop.create_future()
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self.loop = loop

    async def wait(self) -> int | None:
        await asyncio.shield(self.exited)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.exited.done():
            return
        with contextlib.suppress(ProcessLookupError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signum)
            else:
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def ended(self, returncode: int | None) -> None:
        """It exited (``None``: it did, but its status died with the forkserver)."""
        if self.exited.done():
            return
        self.returncode = returncode
        self.exited.set_result(None)
        if self.pidfd is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        if self.stdin is not None:
            self.stdin.close()

    def watch_pidfd(self) -> None:
        """The forkserver is gone: learn of the exit from the pidfd instead."""
        if self.pidfd is None:
            self.ended(None)
        elif not self.exited.done():
            self.loop.add_reader(self.pidfd, self.ended, None)


class ForkServer:
    """The parent's end of one forkserver process."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: str | None) -> None:
        self.command = command
        self.env = env
        self.cwd = cwd
        self.loop = asyncio.get_running_loop()
        self.proc: asyncio.subprocess.Process | None = None
        self.control: socket.socket | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[ForkedProcess]] = {}
        self.children: dict[int, ForkedProcess] = {}
        self.alive = False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(self.env, ACTORSTAGE_CHILD="forkserver", PYTHONUNBUFFERED="1")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=theirs.fileno(), env=env, cwd=self.cwd)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.control = ours
        self.alive = True
        self.loop.add_reader(ours.fileno(), self._readable)
        await self._send(msgspec.msgpack.encode({"ppid": os.getpid()}), [])

    async def fork(self, request: dict[str, Any], limit: int) -> ForkedProcess:
        """A new child for ``request``, its stdin, stdout and stderr connected to us."""
        ident = next(self.ids)
        answer: asyncio.Future[ForkedProcess] = self.loop.create_future()
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        theirs, ours = [stdin_r, out_w, err_w], [stdin_w, out_r, err_r]
        try:
            self.pending[ident] = answer
            await self._send(msgspec.msgpack.encode(dict(request, id=ident)), theirs)
        except BaseException:
            self.pending.pop(ident, None)
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        try:
            proc = await answer
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        proc.stdin = await write_stream(self.loop, ours[0])
        proc.stdout = await read_stream(self.loop, ours[1], limit)
        proc.stderr = await read_stream(self.loop, ours[2], limit)
        return proc

    async def _send(self, data: bytes, fds: list[int]) -> None:
        control = self.control
        if control is None or not self.alive:
            raise ForkError("the forkserver is gone")
        while True:
            try:
                socket.send_fds(control, [data], fds)
                return
            except BlockingIOError:
                writable = self.loop.create_future()
                self.loop.add_writer(control.fileno(), writable.set_result, None)
                try:
                    await writable
                finally:
                    self.loop.remove_writer(control.fileno())
            except OSError as exc:
                self._lost()
                raise ForkError(f"the forkserver is gone: {exc}") from None

    def _readable(self) -> None:
        control = self.control
        while control is not None:
            try:
                data, fds, _flags, _address = socket.recv_fds(control, _PACKET, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._lost()
                return
            kind, *rest = msgspec.msgpack.decode(data)
            if kind == "forked":
                ident, pid = rest
                proc = ForkedProcess(pid, fds[0] if fds else None, self.loop)
                self.children[pid] = proc
                proc.exited.add_done_callback(partial(self._forget, pid))
                answer = self.pending.pop(ident, None)
                if answer is not None and not answer.done():
                    answer.set_result(proc)
                else:  # the spawn gave up (its start timed out): this child is nobody's
                    proc.kill()
            elif kind == "failed":
                ident, problem = rest
                answer = self.pending.pop(ident, None)
                if answer is not None and not answer.done():
                    answer.set_exception(ForkError(problem))
            elif kind == "exited":
                pid, code = rest
                child = self.children.get(pid)
                if child is not None:
                    child.ended(code)

    def _forget(self, pid: int, _exited: asyncio.Future[None]) -> None:
        self.children.pop(pid, None)

    def _lost(self) -> None:
        """The forkserver went away: fail what waits on it, watch its children directly."""
        if not self.alive:
            return
        self.alive = False
        if self.control is not None:
            self.loop.remove_reader(self.control.fileno())
            self.control.close()
            self.control = None
        pending, self.pending = self.pending, {}
        for answer in pending.values():
            if not answer.done():
                answer.set_exception(ForkError("the forkserver exited"))
        for child in list(self.children.values()):
            child.watch_pidfd()

    async def aclose(self) -> None:
        """Close the socket (the server exits on it), and reap the server."""
        self._lost()
        proc = self.proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(proc.wait(), _CLOSE_GRACE)
        except TimeoutError:
            proc.kill()
            await proc.wait()
