"""``run: shell`` and ``run: script``: a process started by the workflow, only where allowed.

Nothing runs unless the runner allows it: ``actorstage serve --allow-run shell,script``
(or ``run-workflow``'s), or ``ACTORSTAGE_SERVERLESS_RUN=shell,script`` in the
environment (child processes inherit it). A definition's author does not
get a shell on the machine just by submitting a workflow.

A shell command runs as ``/bin/sh -c COMMAND sh ARGUMENTS...`` (``$1``... are the
arguments); a script as ``python -c CODE ARGUMENTS...`` (this interpreter)
or ``node -e CODE ARGUMENTS...``, with ``code`` inline or read from a
``file://`` ``source``. ``stdin`` is written to it, ``environment`` added to
this process's. Its output is read up to ``MAX_OUTPUT`` bytes per stream.
A process that exits with a code other than 0 faults the task (the DSL's
runtime error, with its stderr), unless ``return`` asks for the ``code`` or
``all`` of it. ``await: false`` starts it and goes on (the task outputs its
input); it is reaped when it ends. A cancelled task kills its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import urllib.parse
from pathlib import Path
from typing import Any

__all__ = ["RUN_ENV", "ProcessError", "allowed_runs", "run_process"]

log = logging.getLogger("actorstage.serverless")

RUN_ENV = "ACTORSTAGE_SERVERLESS_RUN"
KINDS = ("shell", "script")
MAX_OUTPUT = 16 * 1024 * 1024
MAX_SOURCE = 1024 * 1024
_background: set[asyncio.Task[Any]] = set()  # processes not awaited, reaped when they end


class ProcessError(Exception):
    """A process that could not run or failed: ``status``, ``title`` and ``detail``."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def allowed_runs() -> frozenset[str]:
    """The kinds of ``run`` this process allows (``ACTORSTAGE_SERVERLESS_RUN``)."""
    named = {name.strip() for name in os.environ.get(RUN_ENV, "").split(",") if name.strip()}
    return frozenset(named & set(KINDS))


def _argv(kind: str, spec: dict[str, Any]) -> list[str]:
    arguments = [str(argument) for argument in spec.get("arguments") or []]
    if kind == "shell":
        return ["/bin/sh", "-c", str(spec.get("command", "")), "sh", *arguments]
    language = str(spec.get("language", "")).lower()
    code = spec.get("code")
    if code is None:
        code = _source(spec.get("source"))
    if language == "python":
        return [sys.executable, "-c", str(code), *arguments]
    if language in ("js", "javascript"):
        node = shutil.which("node")
        if node is None:
            raise ProcessError(501, "Unsupported Script", "a js script needs Node.js (node) "
                                                          "on this runner's PATH")
        return [node, "-e", str(code), *arguments]
    raise ProcessError(501, "Unsupported Script", f"scripts in {language!r} do not run here: "
                                                  "python or js")


def _source(resource: Any) -> str:
    endpoint = resource.get("endpoint") if isinstance(resource, dict) else resource
    uri = endpoint.get("uri") if isinstance(endpoint, dict) else endpoint
    parsed = urllib.parse.urlsplit(str(uri or ""))
    if parsed.scheme not in ("", "file") or not uri:
        raise ProcessError(400, "Bad Script Source", f"a script's source is a file:// "
                                                     f"address here, got {uri!r}")
    path = Path(urllib.parse.unquote(parsed.netloc + parsed.path) if parsed.scheme else uri)
    try:
        with path.open("rb") as file:
            text = file.read(MAX_SOURCE + 1)
    except OSError as exc:
        raise ProcessError(400, "Bad Script Source", f"cannot read {uri}: "
                                                     f"{exc.strerror}") from None
    if len(text) > MAX_SOURCE:
        raise ProcessError(400, "Bad Script Source", f"{uri} is larger than {MAX_SOURCE} "
                                                     "bytes")
    return text.decode("utf-8", "replace")


async def _drain(stream: asyncio.StreamReader | None) -> bytes:
    chunks, size = [], 0
    if stream is None:
        return b""
    while chunk := await stream.read(65536):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise ProcessError(502, "Output Too Large", f"the process wrote more than "
                                                        f"{MAX_OUTPUT} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def run_process(kind: str, spec: dict[str, Any], *, wait: bool = True,
                      returns: str = "stdout") -> Any:
    """Run the (evaluated) ``run.shell`` or ``run.script``; its output as ``returns``
    says, or ``None`` when not awaited."""
    if kind not in allowed_runs():
        raise ProcessError(403, "Run Not Allowed", (
            f"run: {kind} is disabled on this runner; start it with --allow-run {kind} (or "
            f"{RUN_ENV}={kind}) to let workflows run {kind} processes"))
    argv = _argv(kind, spec)
    environment = {**os.environ, **{str(key): str(value) for key, value in
                                    (spec.get("environment") or {}).items()}}
    stdin = spec.get("stdin")
    given = None if stdin is None else (stdin if isinstance(stdin, str) else
                                        __import__("json").dumps(stdin)).encode()
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if given is not None else
        asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=environment, start_new_session=True)
    if not wait:
        reaper = asyncio.ensure_future(_finish(process, given))
        _background.add(reaper)
        reaper.add_done_callback(_background.discard)
        return None
    code, out, err = await _finish(process, given)
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if returns == "all":
        return {"code": code, "stdout": stdout, "stderr": stderr}
    if returns == "code":
        return code
    if code != 0:
        raise ProcessError(500, "Process Failed", f"{argv[0]} exited with code {code}: "
                                                  f"{stderr.strip()[-2000:]}")
    return {"stdout": stdout, "stderr": stderr, "none": None}.get(returns, stdout)


async def _finish(process: asyncio.subprocess.Process, given: bytes | None
                  ) -> tuple[int, bytes, bytes]:
    """Feed it, read it, wait for it; killed (with its process group) if this is cancelled
    or it writes too much."""
    try:
        if given is not None and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(given)
                await process.stdin.drain()
            process.stdin.close()
        out, err = await asyncio.gather(_drain(process.stdout), _drain(process.stderr))
        return await process.wait(), out, err
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, 9)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
