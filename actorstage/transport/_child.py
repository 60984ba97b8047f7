"""The child's side of a process actor: bootstrap, connect, run the actor, report.

The parent starts ``python -m actorstage.transport`` (or the user's own
program, which calls ``child_main()``) with ``ACTORSTAGE_CHILD=1`` in its
environment and one JSON line on its stdin: the transport, the address and
the one-time secret. The child connects, says hello, receives its actor's
spec, starts the actor in a small actor system of its own, and reports.
From then on it serves the stream until the parent stops it or goes away;
a lost parent (stream gone, heartbeats gone, or the Linux parent-death
signal) makes it stop its tree and exit within a couple of seconds.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import types
from typing import Any

__all__ = ["child_main"]

_ENV_FLAG = "ACTORSTAGE_CHILD"


def child_main() -> None:
    """Run this process as an actorstage child, if it was started as one.

    Call it first thing in a program that a ``ProcessOptions(command=...)``
    starts. When the ``ACTORSTAGE_CHILD`` flag is absent it returns at once,
    so the same program can spawn itself::

        if __name__ == "__main__":
            actorstage.child_main()   # never returns in the child
            actorstage.run(main)

    In a child it serves the actor until it stops, then exits the process.
    """
    flag = os.environ.get(_ENV_FLAG)
    if flag not in ("1", "forkserver"):
        return
    del os.environ[_ENV_FLAG]  # programs this child starts are not children of ours
    if flag == "forkserver":
        from actorstage.transport._forkserver import serve

        boot = serve()  # returns only in a child it forked, which goes on as any child
    else:
        boot = _read_boot()
    die_with_parent(int(boot.get("ppid", 0)))
    from actorstage.transport._guard import inherit

    inherit(boot.get("ancestors"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if boot.get("transport") == "stdio":
        boot["fds"] = (os.dup(0), os.dup(1))
        os.dup2(2, 1)  # print() must not write into the transport
    code = 70
    try:
        code = _serve_boot(boot, "child process")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _serve_boot(boot: dict[str, Any], what: str) -> int:
    """Serve the actor that ``boot`` describes in this process, traced as its parent is
    (exported per ``OTEL_*``); its exit status: 70 for a failure, which is logged."""
    from actorstage._telemetry import child_setup, child_shutdown

    try:
        from actorstage._run import run

        child_setup(boot.get("telemetry"))
        return run(_serve, boot)
    except BaseException as exc:
        code = _exit_code(exc)
        if code is None:
            logging.getLogger("actorstage.transport").exception("%s failed", what)
            code = 70
        return code
    finally:
        child_shutdown()  # (the spans still held go out before the process does)


def join_main(bundle: str | None = None) -> int:
    """Run this process as a process actor of the parent that made the join ``bundle``
    (``actorstage join``; by default the bundle is ``$ACTORSTAGE_JOIN``, which is then
    removed from the environment). Returns once the actor has stopped: its exit status."""
    from actorstage.transport._payloads import ARENA
    from actorstage.transport._placement import ENV_JOIN, decode_bundle

    text = bundle if bundle is not None else os.environ.pop(ENV_JOIN, "")
    if not text:
        sys.stderr.write(f"actorstage join: no join bundle (${ENV_JOIN}, or --bundle-file): "
                         "its parent makes one for the process it places\n")
        return 2
    try:
        boot = decode_bundle(text)
    except ValueError as exc:
        sys.stderr.write(f"actorstage join: {exc}\n")
        return 2
    ARENA.off = True  # (its parent may be on another machine: no shared memory with it)
    if os.environ.pop("ACTORSTAGE_DIE_WITH_PARENT", "") == "1":  # (its launcher's child)
        die_with_parent(os.getppid())
    return _serve_boot(boot, "joined process")


def _exit_code(exc: BaseException) -> int | None:
    """The status ``sys.exit()`` asked for, when that is what ended the child."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if not isinstance(exc, SystemExit):
        return None
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    sys.stderr.write(f"{exc.code}\n")  # sys.exit("message") prints it and exits with 1
    return 1


def _read_boot() -> dict[str, Any]:
    """The first line of stdin, read byte by byte so nothing after it is consumed."""
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = os.read(0, 1)
        if not chunk:
            break
        line += chunk
    if not line:
        sys.stderr.write("actorstage child: no bootstrap line on stdin; "
                         "this program is started by actorstage, not by hand\n")
        os._exit(78)
    boot: dict[str, Any] = json.loads(line)
    return boot


def die_with_parent(ppid: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (a second line after the stream)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            _libc().prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if ppid and os.getppid() != ppid:  # it died before we asked
        os._exit(75)


_LIBC: Any = None


def _libc() -> Any:
    """The C library, loaded once (a forkserver's children inherit it loaded)."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


async def _serve(boot: dict[str, Any]) -> int:
    from actorstage.transport._child_end import ChildEnd

    end = ChildEnd(boot)
    return await end.run()


IMPORTING_MAIN: list[str] = []  # the parent's script while load_main runs it


def load_main(main_path: str, main_module: str) -> None:
    """Make the parent's ``__main__`` importable here, as multiprocessing's spawn does.

    The script runs under the name ``__actorstage_main__`` (so its ``if
    __name__ == "__main__":`` block does not run) and is registered as
    ``__main__`` too, so ``__main__:Worker`` resolves.
    """
    if main_module:
        IMPORTING_MAIN.append(main_module)
        try:
            module = importlib.import_module(main_module)
        finally:
            IMPORTING_MAIN.pop()
    elif main_path:
        loaded = sys.modules.get("__actorstage_main__")
        if loaded is not None and getattr(loaded, "__file__", None) == main_path:
            sys.modules["__main__"] = loaded  # a forkserver ran it already
            return
        module = types.ModuleType("__actorstage_main__")
        module.__file__ = main_path
        sys.modules["__actorstage_main__"] = module
        with open(main_path, "rb") as source:
            code = compile(source.read(), main_path, "exec")
        IMPORTING_MAIN.append(main_path)  # actorstage.run() at its top level says what to do
        try:
            exec(code, module.__dict__)  # the script the parent runs, as the parent runs it
        finally:
            IMPORTING_MAIN.pop()
    else:
        return
    sys.modules["__main__"] = module
