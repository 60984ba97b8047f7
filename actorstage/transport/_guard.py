"""The guard: a small process that ends a system's children when the system dies.

A child learns of its parent's death from its stream and from the Linux
parent-death signal, but only its event loop can act on either, and a
handler running blocking code (a CPU loop, ``time.sleep``, a long C call
that holds the GIL) keeps the loop from ever running again. So the first
time an actor system starts a child process, it also starts a guard: this
file run as a script (``python -I -S``, standard library only, a few MiB).
The system tells it, over a unix socket, the pidfd of every child process
it starts (forkserver children too), the socket directories it created and
the shared-memory prefixes of its pipeline sessions.

The guard watches its owner (the socket closes and the owner's pidfd turns
readable when it dies) and every ancestor of its owner that is an actorstage
process too, so a grandchild's guard acts on the grandparent's death at the
same moment as the child's guard does. When one of them dies without the
owner having said ``bye``, the guard gives the children ``GRACE`` seconds
to stop by themselves (a child whose loop is free stops its tree then, its
``on_stop`` hooks run), SIGKILLs whichever is still there (through its
pidfd: never a recycled pid), waits for them to go, then removes the
registered directories and shared-memory segments, and exits. On a normal
close the owner says ``bye`` and the guard exits at once.

The guard ignores SIGINT and SIGTERM (Ctrl-C and a service manager's stop
are for its owner, which then says ``bye`` or dies, and the guard acts on
that); it dies with SIGKILL like anything else, and ``actorstage cleanup``
removes what a killed guard could not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import sys
import time
from typing import Any

__all__ = ["GRACE", "Guard", "inherit", "lineage"]

GRACE = 1.2  # seconds the children get to stop by themselves once the owner is gone
_REAP_WAIT = 0.6  # after SIGKILL, for the kernel to take them
_PACKET = 65536
_MAX_ANCESTORS = 32

log = logging.getLogger("actorstage.transport")

# The actorstage processes above this one, nearest first, as (pid, start time):
# set from a child's boot, passed on to the children it starts and to its guard.
_ANCESTORS: list[tuple[int, int]] = []


def start_time(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot (tells a recycled pid apart)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return int(stat.read().rsplit(b")", 1)[1].split()[19])


def inherit(ancestors: Any) -> None:
    """Remember this child's ancestors (from its boot) for its own guard and children."""
    _ANCESTORS[:] = [(int(pid), int(started)) for pid, started in ancestors or ()][
        :_MAX_ANCESTORS]


def lineage() -> list[list[int]]:
    """This process and its ancestors, for the boot of a child it starts."""
    try:
        me = [[os.getpid(), start_time(os.getpid())]]
    except OSError:
        return []
    return me + [[pid, started] for pid, started in _ANCESTORS][: _MAX_ANCESTORS - 1]


# -- the system's handle ------------------------------------------------------------------


class Guard:
    """The system's end of its guard process."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.control: socket.socket | None = None
        self.failed = False

    async def start(self) -> None:
        import asyncio

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ancestors = ",".join(f"{pid}:{started}" for pid, started in _ANCESTORS)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", __file__, str(os.getpid()), ancestors or "-",
                stdin=theirs.fileno(), stdout=asyncio.subprocess.DEVNULL, cwd="/")
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(1.0)  # messages are tiny; the guard reads them at once
        self.control = ours

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def child(self, pid: int, pidfd: int | None = None) -> None:
        """Kill this child if the system dies (``pidfd``: one we hold already; it is copied)."""
        own = None
        if pidfd is None:
            try:
                pidfd = own = os.pidfd_open(pid)
            except OSError:  # gone already
                return
        try:
            self._send({"child": pid}, [pidfd])
        finally:
            if own is not None:
                os.close(own)

    def remove_dir(self, path: str) -> None:
        """Remove directory ``path`` if the system dies."""
        self._send({"rmtree": os.path.abspath(path)})

    def sweep(self, directory: str, prefix: str, keep: bool = True) -> None:
        """Remove the files ``directory/prefix*`` if the system dies (``keep=False``: forget)."""
        self._send({"sweep" if keep else "forget": [os.path.abspath(directory), prefix]})

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        control = self.control
        if control is None:
            return
        try:
            socket.send_fds(control, [json.dumps(message).encode()], fds or [])
        except OSError as exc:
            if not self.failed:
                self.failed = True
                log.error("the guard process (pid %s) is gone (%s): children of this system "
                          "will not be killed if it dies", self.pid, exc)

    async def aclose(self) -> None:
        """Say bye (the system has stopped its children) and reap the guard."""
        import asyncio

        self._send({"bye": True})
        control, self.control = self.control, None
        if control is not None:
            control.close()
        proc = self.proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- the guard process ----------------------------------------------------------------


def _pidfd(pid: int, started: int | None = None) -> int | None:
    """A pidfd of ``pid`` if it is alive (and started at ``started``), else None."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if started is not None:
        try:
            same = start_time(pid) == started  # read after opening: the pidfd pins the pid
        except (OSError, ValueError, IndexError):
            same = False
        if not same:
            os.close(fd)
            return None
    return fd


class _Watch:
    def __init__(self, owner: int, ancestors: list[tuple[int, int]]) -> None:
        self.selector = selectors.DefaultSelector()
        self.control = socket.socket(fileno=0)
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        self.children: dict[int, int] = {}  # pidfd -> pid
        self.dirs: set[str] = set()
        self.sweeps: set[tuple[str, str]] = set()
        self.owner_fd = _pidfd(owner)
        self.owner_gone = self.owner_fd is None or os.getppid() != owner
        if self.owner_fd is not None:
            self.selector.register(self.owner_fd, selectors.EVENT_READ, "owner")
        self.ancestor_gone = False
        for pid, started in ancestors:
            fd = _pidfd(pid, started)
            if fd is None:
                self.ancestor_gone = True
            else:
                self.selector.register(fd, selectors.EVENT_READ, "ancestor")

    def run(self) -> None:
        while not (self.owner_gone or self.ancestor_gone):
            for key, _events in self.selector.select():
                if key.data == "control":
                    self._receive()
                elif key.data == "owner":
                    self.owner_gone = True
                elif key.data == "ancestor":
                    self.ancestor_gone = True
                else:  # a child exited: nothing to do for it any more
                    self._drop(key.fd)
        self._end()

    def _receive(self) -> None:
        try:
            data, fds, _flags, _address = socket.recv_fds(self.control, _PACKET, 4)
        except OSError:
            data, fds = b"", []
        if not data:  # the owner closed the socket without a bye: it died
            self.owner_gone = True
            self.selector.unregister(self.control)
            return
        self._handle(data, fds)

    def _drain(self) -> None:
        """Read what the owner sent and we have not read yet: it may have died before we
        ran at all, with its directories and children already told."""
        try:
            self.control.setblocking(False)
            while True:
                data, fds, _flags, _address = socket.recv_fds(self.control, _PACKET, 4)
                if not data:
                    return
                self._handle(data, fds)
        except OSError:  # (BlockingIOError: nothing more)
            return

    def _handle(self, data: bytes, fds: list[int]) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            message = {}
        if message.get("bye"):
            os._exit(0)
        if "child" in message and fds:
            fd = fds.pop(0)
            self.children[fd] = int(message["child"])
            self.selector.register(fd, selectors.EVENT_READ, "child")
        if "rmtree" in message:
            self.dirs.add(str(message["rmtree"]))
        if "sweep" in message:
            directory, prefix = message["sweep"]
            self.sweeps.add((str(directory), str(prefix)))
        if "forget" in message:
            directory, prefix = message["forget"]
            self.sweeps.discard((str(directory), str(prefix)))
        for fd in fds:
            os.close(fd)

    def _drop(self, fd: int) -> None:
        if self.children.pop(fd, None) is not None:
            self.selector.unregister(fd)
            os.close(fd)

    def _end(self) -> None:
        """The owner or an ancestor died: a grace, SIGKILL for the rest, then the files."""
        self._drain()
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.control)
        if not self.owner_gone and self.owner_fd is not None:  # an ancestor died: the owner
            self.children[self.owner_fd] = -1                 # ends too (it was told)
            self.selector.unregister(self.owner_fd)
            self.selector.register(self.owner_fd, selectors.EVENT_READ, "child")
        self._wait(GRACE)
        for fd in self.children:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        self._wait(_REAP_WAIT)
        for directory in self.dirs:
            if os.path.basename(directory).startswith("actorstage-"):
                shutil.rmtree(directory, ignore_errors=True)
        for directory, prefix in self.sweeps:
            if not prefix.startswith("actorstage-") or "/" in prefix:
                continue
            with contextlib.suppress(OSError):
                for name in os.listdir(directory):
                    if name.startswith(prefix):
                        with contextlib.suppress(OSError):
                            os.unlink(os.path.join(directory, name))
        os._exit(0)

    def _wait(self, seconds: float) -> None:
        """Until every child has exited, or ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        while self.children:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for key, _events in self.selector.select(left):
                if key.data == "child":
                    self._drop(key.fd)


def _main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(ValueError, OSError):
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    owner = int(argv[1])
    ancestors = [] if argv[2] == "-" else [
        (int(pid), int(started)) for pid, started in
        (entry.split(":") for entry in argv[2].split(","))]
    _Watch(owner, ancestors).run()


if __name__ == "__main__":
    _main(sys.argv)
