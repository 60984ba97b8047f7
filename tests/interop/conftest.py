"""Clients we did not write call a running `actorstage serve` over a real socket.

The server runs as a real process; each test stops it with SIGTERM and
checks that it exits 0 and leaves no process behind.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from actorstage.protos import include_dir
from tests.transport.conftest import _no_leftover_processes

__all__ = ["_no_leftover_processes", "grpcio_stubs", "serve"]

ROOT = Path(__file__).resolve().parents[2]
PROTOS = include_dir()  # what `actorstage protos` prints: the documented include directory


class Served:
    """A running ``actorstage serve``: a thread reads everything it writes into ``lines``
    (one reader only: a second one would lose what the first had buffered)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.started = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = 0
        self.address = ""

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        with stdout:  # closed at the end of the output
            for line in stdout:
                self.lines.append(line.rstrip("\n"))
                self.started.set()
        self.started.set()  # (it ended before a first line)

    def stop(self) -> int:
        """SIGTERM, then the exit status; the server's output is kept in ``lines``."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("actorstage serve did not stop within 30s of SIGTERM") from None
        self.reader.join(10)
        return self.process.returncode


@contextmanager
def serve(*flags: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
          any_port: bool = True) -> Iterator[Served]:
    """``actorstage serve --port 0 FLAGS`` as a process (``any_port=False``: no
    ``--port``, the environment says); stopped (and checked) at the end."""
    any_port_flag = ["--port", "0"] if any_port else []
    process = subprocess.Popen(
        [sys.executable, "-m", "actorstage.cli", "serve", *any_port_flag, *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ACTORSTAGE_STATE": "memory",
             **(env or {})})
    served = Served(process)
    served.started.wait(30)
    line = served.lines[0] if served.lines else ""
    if "listening on" not in line:
        process.kill()
        process.wait()
        served.reader.join(10)
        raise AssertionError("actorstage serve did not start: " + "\n".join(served.lines))
    served.port = int(line.strip().rsplit(":", 1)[1])  # the documented, stable first line
    served.address = f"127.0.0.1:{served.port}"
    try:
        yield served
    finally:
        if process.poll() is None:
            status = served.stop()
            assert status == 0, "\n".join(served.lines)
        else:  # the test stopped it: keep what it wrote, close the pipe
            process.wait()
            served.reader.join(10)


def _load(directory: Path, name: str) -> ModuleType:
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def grpcio_stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    """grpcio stubs generated now, exactly as docs/guides/service.md tells users to:

        python -m grpc_tools.protoc -I "$(actorstage protos)" --python_out=OUT \\
            --grpc_python_out=OUT actorstage_proto/v1/*.proto

    then imported as ``actorstage_proto.v1.<name>_pb2``, next to the installed actorstage.
    """
    return _stubs(tmp_path_factory.mktemp("grpcio"), "actorstage_proto.v1",
                  ("runner", "control", "pipeline"))


def _stubs(target: Path, package: str, names: tuple[str, ...],
           also: tuple[str, ...] = ()) -> dict[str, ModuleType]:
    """Generate and import the grpcio modules of ``package``'s ``names``, from the
    directory that ``actorstage protos`` prints (``also``: more files they import)."""
    include = subprocess.run([sys.executable, "-m", "actorstage", "protos"], check=True,
                             capture_output=True, text=True).stdout.strip()
    folder = package.replace(".", "/")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{include}",
                    f"--python_out={target}", f"--grpc_python_out={target}",
                    *(f"{folder}/{name}.proto" for name in names), *also],
                   check=True, capture_output=True)
    return {module: _load(target, f"{package}.{module}")
            for name in names for module in (f"{name}_pb2", f"{name}_pb2_grpc")}


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    """The Node.js client's command; `npm ci` installs @grpc/grpc-js first if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js and npm are required in CI for the interop tests")
        pytest.skip("Node.js and npm are not installed")
    directory = ROOT / "tests" / "interop" / "node"
    if not (directory / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=directory, check=True,
                       capture_output=True, timeout=300)
    return [node, str(directory / "client.js")]


@pytest.fixture(scope="session")
def remotemedia_stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    """grpcio stubs of RemoteMedia's contract, generated from the .proto files actorstage
    ships (``remotemedia/v1/*.proto`` under ``actorstage protos``), as a RemoteMedia
    client's own would be: ``remotemedia.v1.<name>_pb2``."""
    return _stubs(tmp_path_factory.mktemp("remotemedia"), "remotemedia.v1",
                  ("common", "execution", "streaming"))


@pytest.fixture(scope="session")
def stigmer_stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    """grpcio stubs of Stigmer's runner contract and of its status callback, generated from
    the .proto files actorstage ships (``ai/stigmer/...`` under ``actorstage protos``), as
    Stigmer's own would be: ``ai.stigmer.agentic.workflowrunner.v1.interface_pb2``..."""
    target = tmp_path_factory.mktemp("stigmer")
    dependencies = ("ai/stigmer/commons/apiresource/metadata.proto",
                    "ai/stigmer/commons/apiresource/enum.proto",
                    "ai/stigmer/commons/apiresource/status.proto",
                    "ai/stigmer/commons/apiresource/io.proto",
                    "ai/stigmer/agentic/executioncontext/v1/spec.proto",
                    "ai/stigmer/agentic/workflowexecution/v1/api.proto",
                    "ai/stigmer/agentic/workflowexecution/v1/enum.proto",
                    "ai/stigmer/agentic/workflowexecution/v1/spec.proto",
                    "ai/stigmer/agentic/workflowexecution/v1/command.proto")
    stubs = _stubs(target, "ai.stigmer.agentic.workflowrunner.v1", ("interface", "io"),
                   also=dependencies)
    for name in ("api", "enum", "command"):
        stubs[f"execution_{name}_pb2"] = _load(
            target, f"ai.stigmer.agentic.workflowexecution.v1.{name}_pb2")
    stubs["execution_command_pb2_grpc"] = _load(
        target, "ai.stigmer.agentic.workflowexecution.v1.command_pb2_grpc")
    return stubs
