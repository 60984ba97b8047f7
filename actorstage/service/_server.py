"""The runner service as a server: configuration, start, health, reflection, auth, shutdown."""

from __future__ import annotations

import hmac
import importlib
import logging
import math
import socket
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import anyio
from grpclib import GRPCError
from grpclib.const import Status as Code
from grpclib.events import RecvRequest, listen
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection

from actorstage._telemetry import traced_services
from actorstage.actors._system import ActorSystem
from actorstage.pipelines._config import load_runtime_config
from actorstage.service._callbacks import CallbackSender, Sender, parse_endpoint
from actorstage.service._metrics import MetricsServer, PipelineMetrics, ServiceMetrics
from actorstage.service._pipeline_service import PipelineService
from actorstage.service._remotemedia import RemoteMediaExecution, RemoteMediaStreaming
from actorstage.service._runner_service import RunnerService
from actorstage.service._stigmer import StatusSender, StigmerRunner
from actorstage.transport._grpc import GrpcServer
from actorstage.transport._options import ProcessOptions
from actorstage.workflows._runner import Runner
from actorstage.workflows._state import StateError, open_state

__all__ = ["RunnerServer", "ServiceConfig", "open_service"]

log = logging.getLogger("actorstage.service")

UNAUTHENTICATED_METHODS = ("/grpc.health.v1.Health/",)  # probes carry no token
PRUNE_EVERY = 600.0  # seconds between removals of ended executions past the retention


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """How ``actorstage serve`` (or ``open_service``) runs the runner service.

    Tokens are values here; the command line reads them from an environment
    variable or a file, never from its arguments.
    """

    host: str = "127.0.0.1"
    port: int = 50051  # 0: an OS-assigned port
    isolate: Literal["inline", "process"] = "inline"
    imports: tuple[str, ...] = ()  # modules that register actions, imported first
    token: str | None = field(default=None, repr=False)  # callers must send it as a bearer
    tokens: tuple[str, ...] = field(default=(), repr=False)  # more accepted (with token)
    tls_cert: str | None = None  # PEM files: serve TLS when both are given
    tls_key: str | None = None
    callback: str | None = None  # HOST:PORT of a ProgressControl endpoint
    callback_token: str | None = field(default=None, repr=False)
    callback_tls: bool = False
    callback_ca: str | None = None  # CA bundle that signs the endpoint's certificate
    # Stigmer's status callback (WorkflowExecutionCommandController/updateStatus), HOST:PORT
    stigmer_endpoint: str | None = None
    stigmer_api_key: str | None = field(default=None, repr=False)  # sent as a bearer
    stigmer_tls: bool = True  # as Stigmer's runner: TLS unless told otherwise
    stigmer_ca: str | None = None  # CA bundle for the endpoint (default: the system's)
    metrics_port: int | None = None  # serve /metrics there (0: an OS-assigned port)
    metrics_host: str = "127.0.0.1"
    observer_port: int | None = None  # serve the live observer page there (0: any port)
    observer_host: str = "127.0.0.1"
    observer_token: str | None = field(default=None, repr=False)  # its actions' bearer token
    shutdown: Literal["drain", "cancel"] = "cancel"  # what stopping does to executions
    grace: float = 10.0  # seconds executions get to end when stopping
    max_finished: int = 1000
    max_pending_callbacks: int = 10_000
    process: ProcessOptions | None = None  # options of isolated executions' processes
    pipeline_runtime: str | None = None  # a runtime.toml: defaults under every manifest
    max_pipeline_sessions: int = 16  # pipeline sessions running at once
    max_message_size: int = 64 * 1024 * 1024  # the largest request message of any RPC
    # Where executions are kept: "memory", or "sqlite:///PATH" (the command line's default
    # is a SQLite file in actorstage's state directory), so that they survive the service.
    state: str = "memory"
    retention: float = 7 * 86400.0  # seconds an ended execution stays in the state
    retention_count: int = 10_000  # ended executions the state keeps at most

    def check(self) -> None:
        """``ValueError`` naming the first setting that is wrong."""
        problems = []
        if not 0 <= self.port < 65536:
            problems.append(f"port must be in 0-65535, got {self.port!r}")
        if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
            problems.append(f"metrics_port must be in 0-65535, got {self.metrics_port!r}")
        if self.observer_port is not None and not 0 <= self.observer_port < 65536:
            problems.append(f"observer_port must be in 0-65535, got {self.observer_port!r}")
        if self.isolate not in ("inline", "process"):
            problems.append(f"isolate is 'inline' or 'process', got {self.isolate!r}")
        if self.shutdown not in ("drain", "cancel"):
            problems.append(f"shutdown is 'drain' or 'cancel', got {self.shutdown!r}")
        if not (math.isfinite(self.grace) and self.grace >= 0):
            problems.append(f"grace must be a finite number of seconds >= 0, got {self.grace!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("TLS needs both tls_cert and tls_key")
        if self.token is not None and not self.token.strip():
            problems.append("the token is empty")
        if self.tokens and self.token is None:
            problems.append("tokens are accepted besides a token: set token too")
        if any(not token.strip() for token in self.tokens):
            problems.append("one of the tokens is empty")
        if self.callback is not None:
            try:
                parse_endpoint(self.callback)
            except ValueError as exc:
                problems.append(str(exc))
        elif self.callback_tls or self.callback_token or self.callback_ca:
            problems.append("callback_tls, callback_token and callback_ca need a callback")
        if self.stigmer_endpoint is not None:
            try:
                parse_endpoint(self.stigmer_endpoint)
            except ValueError as exc:
                problems.append(f"stigmer_endpoint: {exc}")
        elif self.stigmer_api_key or self.stigmer_ca:
            problems.append("stigmer_api_key and stigmer_ca need a stigmer_endpoint")
        if self.max_pipeline_sessions < 1:
            problems.append(f"max_pipeline_sessions must be >= 1, got "
                            f"{self.max_pipeline_sessions!r}")
        if self.max_message_size < 1024:
            problems.append(f"max_message_size must be >= 1024 bytes, got "
                            f"{self.max_message_size!r}")
        try:
            open_state(self.state)
        except StateError as exc:
            problems.append(str(exc))
        if not (math.isfinite(self.retention) and self.retention > 0) or \
                self.retention_count < 0:
            problems.append("retention must be a number of seconds > 0 and retention_count "
                            ">= 0")
        if self.max_finished < 0 or self.max_pending_callbacks < 1:
            problems.append("max_finished must be >= 0 and max_pending_callbacks >= 1")
        if problems:
            raise ValueError("invalid service configuration: " + "; ".join(problems))


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    return context


def client_tls(ca: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.set_alpn_protocols(["h2"])
    return context


def descriptor_pool() -> Any:
    """A protobuf descriptor pool with our services, health and reflection: for reflection."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from grpclib.health.v1 import health_pb2
    from grpclib.reflection.v1 import reflection_pb2
    from grpclib.reflection.v1alpha import reflection_pb2 as reflection_v1alpha_pb2

    pool = descriptor_pool.DescriptorPool()
    data = resources.files("actorstage._proto").joinpath("descriptors.binpb").read_bytes()
    for proto in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(proto)
    for module in (health_pb2, reflection_pb2, reflection_v1alpha_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return pool


def _authenticator(*tokens: str) -> Any:
    expected = [f"Bearer {token}".encode() for token in tokens]

    async def authenticate(event: RecvRequest) -> None:
        if event.method_name.startswith(UNAUTHENTICATED_METHODS):
            return
        given = event.metadata.get("authorization")
        if not isinstance(given, str):
            raise GRPCError(Code.UNAUTHENTICATED,
                            "missing credentials: send the header authorization: Bearer <token>")
        presented = given.encode()
        # Every token compared, in constant time each: which one matched does not show.
        if not sum(hmac.compare_digest(presented, token) for token in expected):
            raise GRPCError(Code.UNAUTHENTICATED, "wrong token")

    return authenticate


class RunnerServer:
    """A running runner service; ``async with open_service(config) as server:``.

    ``port`` and ``metrics_port`` are the ports bound (useful with 0).
    Leaving the block stops it as ``config.shutdown`` says.
    """

    def __init__(self, config: ServiceConfig, system: ActorSystem | None = None, *,
                 log_warnings: bool = True) -> None:
        config.check()
        self.warnings: list[str] = []  # what the settings hold but do not use
        self._log_warnings = log_warnings  # (actorstage serve logs them after its first line)
        self.config = config
        self.port = config.port
        self.metrics_port: int | None = None
        self.observer_port: int | None = None
        self._system = system
        self._stack = AsyncExitStack()
        self._stopped = False
        self.service: RunnerService | None = None
        self.pipelines: PipelineService | None = None
        self.callbacks: CallbackSender | None = None
        self.statuses: StatusSender | None = None  # Stigmer's updateStatus
        self._scopes: list[anyio.CancelScope] = []

    async def __aenter__(self) -> RunnerServer:
        config, stack = self.config, self._stack
        for module in config.imports:
            importlib.import_module(module)
        await stack.__aenter__()
        try:
            await self._start(config, stack)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def _start(self, config: ServiceConfig, stack: AsyncExitStack) -> None:
        system = self._system
        if system is None:
            system = await stack.enter_async_context(ActorSystem("runner-service"))
        metrics = self.metrics = ServiceMetrics()
        if config.callback is not None:
            host, port = parse_endpoint(config.callback)
            secure = config.callback_tls or config.callback_ca is not None
            self.callbacks = CallbackSender(
                host, port, ssl=client_tls(config.callback_ca) if secure else None,
                token=config.callback_token, max_pending=config.max_pending_callbacks)
            metrics.callbacks = self.callbacks
        service = self.service = RunnerService(
            Runner(system, state=config.state), isolate=config.isolate,
            process=config.process, callbacks=self.callbacks, metrics=metrics,
            max_finished=config.max_finished)
        if config.stigmer_endpoint is not None:
            host, port = parse_endpoint(config.stigmer_endpoint)
            self.statuses = StatusSender(
                host, port, ssl=client_tls(config.stigmer_ca) if config.stigmer_tls else None,
                token=config.stigmer_api_key, max_pending=config.max_pending_callbacks)
            metrics.statuses = self.statuses
        stigmer = StigmerRunner(service, self.statuses)
        state = service.runner.state
        if state is not None:  # executions from before: their history, and the unfinished
            stack.push_async_callback(service.runner.close)  # ones run again
            await service.runner.open(recover=False)
            sinks: list[tuple[str, Sender[Any] | None]] = [
                ("progress", self.callbacks), ("stigmer", self.statuses)]
            for sink, kept in sinks:
                if kept is not None:  # callbacks kept until delivered, across restarts
                    await kept.keep_in(state, sink)
            await service.restore()
            await state.prune(max_age=config.retention, max_count=config.retention_count)
        runtime = None
        warnings: list[str] = []  # logged once the service listens (its first line says so)
        if config.pipeline_runtime is not None:
            runtime = load_runtime_config(config.pipeline_runtime, warnings)
        metrics.pipelines = PipelineMetrics()
        pipelines = self.pipelines = PipelineService(
            system, runtime=runtime, metrics=metrics.pipelines,
            max_sessions=config.max_pipeline_sessions)
        remotemedia: list[Any] = [RemoteMediaExecution(pipelines),  # RemoteMedia's own, too
                                  RemoteMediaStreaming(pipelines)]
        self._health = ServiceStatus()
        self._health.set(True)
        health = Health({service: [self._health], pipelines: [self._health],
                         stigmer: [self._health],
                         **{served: [self._health] for served in remotemedia}})
        services = ServerReflection.extend([service, pipelines, *remotemedia, stigmer, health],
                                           pool=descriptor_pool())
        server = self._server = GrpcServer(traced_services(services),
                                           max_message_size=config.max_message_size)
        if config.token is not None:
            listen(server, RecvRequest, _authenticator(config.token, *config.tokens))
        tls = server_tls(config.tls_cert, config.tls_key) if config.tls_cert and \
            config.tls_key else None
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.create_server((config.host, config.port), family=family)
        await server.start(sock=sock, ssl=tls)
        self.port = sock.getsockname()[1]
        stack.push_async_callback(server.aclose)
        tasks = await stack.enter_async_context(anyio.create_task_group())
        for sender in self._senders():
            tasks.start_soon(self._background, sender.run)
        if service.runner.state is not None:
            tasks.start_soon(self._background, self._prune, service.runner.state)
        if config.metrics_port is not None:
            metrics_server = MetricsServer(metrics, config.metrics_host, config.metrics_port)
            await metrics_server.start()
            stack.push_async_callback(metrics_server.aclose)
            self.metrics_port = metrics_server.port
        if config.observer_port is not None:
            observer = await stack.enter_async_context(system.observer(
                config.observer_host, config.observer_port, token=config.observer_token))
            self.observer_port = observer.port
        log.info("runner service listening on %s:%d%s", config.host, self.port,
                 " (TLS)" if tls else "")
        self.warnings = warnings
        if self._log_warnings:
            self.log_warnings()

    async def _background(self, function: Any, *args: Any) -> None:
        """A task of the service's own, which ``stop`` ends (and nothing else with it)."""
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            await function(*args)

    async def _prune(self, state: Any) -> None:
        """Remove ended executions past the retention from the state, every ten minutes."""
        config = self.config
        while True:
            await anyio.sleep(PRUNE_EVERY)
            try:
                removed = await state.prune(max_age=config.retention,
                                            max_count=config.retention_count)
            except StateError as exc:
                log.warning("pruning the state failed: %s", exc)
                continue
            if removed:
                log.info("removed %d ended executions past the retention", removed)

    def _senders(self) -> list[Sender[Any]]:
        return [sender for sender in (self.callbacks, self.statuses) if sender is not None]

    def log_warnings(self) -> None:
        for warning in self.warnings:
            log.warning("%s", warning)

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.stop()
        finally:
            await self._stack.__aexit__(*exc_info)

    async def stop(self, mode: Literal["drain", "cancel"] | None = None) -> None:
        """Stop: take no new executions or pipeline sessions, cancel or drain the running
        ones within the grace period (then cancel what is left), flush the callbacks, close
        the server."""
        if self._stopped or self.service is None or self.pipelines is None:
            return
        self._stopped = True
        config, service, pipelines = self.config, self.service, self.pipelines
        mode = mode or config.shutdown
        service.accepting = pipelines.accepting = False
        self._health.set(False)
        durable = service.runner.state is not None
        running = service.executions.running()
        if running or pipelines.running:
            log.info("stopping: %s %d running executions and %d pipeline sessions (grace "
                     "%.1fs)", "cancelling" if mode == "cancel" else "draining",
                     len(running), len(pipelines.running), config.grace)
        if mode == "cancel":
            if not durable:
                await service.cancel_all("the service is stopping")
            pipelines.cancel_all("the service is stopping")
        with anyio.move_on_after(0 if durable and mode == "cancel" else config.grace):
            await service.wait_ended()
            await pipelines.wait_idle()
        if durable and service.executions.running():  # they wait in the state for the next
            log.info("stopping: %d executions stay in the state and resume when the service "
                     "starts again", len(service.executions.running()))
            service.suspended = True
            await service.runner.close()
        if pipelines.running:
            log.warning("stopping: %d pipeline sessions still running after the grace "
                        "period; cancelling them", len(pipelines.running))
            pipelines.cancel_all("the service is stopping (grace period over)")
        if service.executions.running():
            log.warning("stopping: %d executions still running after the grace period; "
                        "cancelling them", len(service.executions.running()))
            await service.cancel_all("the service is stopping (grace period over)")
            with anyio.move_on_after(5):
                await service.wait_ended()
        with anyio.move_on_after(5):
            await service.wait_streams_done()
        with anyio.move_on_after(max((s.plan.settings.cleanup_grace_period_secs
                                      for s in pipelines.sessions()), default=0) + 10):
            await pipelines.wait_idle()  # every session's processes have ended
        with anyio.move_on_after(5):
            await self._server.aclose()
        senders = self._senders()
        if senders:
            with anyio.move_on_after(max(config.grace, 1.0)):
                for sender in senders:
                    await sender.wait_flushed()
        for scope in self._scopes:  # the senders, the state's pruning
            scope.cancel()
        for sender in senders:
            sender.close()


def open_service(config: ServiceConfig | None = None, *,
                 system: ActorSystem | None = None) -> RunnerServer:
    """The runner service, to run as ``async with open_service(config) as server:``.

    Without ``system`` it runs in an actor system of its own.
    """
    return RunnerServer(config or ServiceConfig(), system)
