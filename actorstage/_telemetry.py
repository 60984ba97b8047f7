"""Trace context through tells and asks (OpenTelemetry): the runtime's side.

Nothing here imports OpenTelemetry until tracing is switched on, which an
``ActorSystem`` does when it starts in a process where an OpenTelemetry SDK
is configured (a tracer provider is set), or ``ACTORSTAGE_TRACING=1`` asks
for it (``=0`` keeps it off). Off, a send is untouched and a mailbox's drain
pays one check per message.

On, ``tell``, ``tell_nowait`` and ``ask`` of every ref class wrap a message
sent within a valid span context in a ``Traced`` envelope holding that
context. A local mailbox keeps the envelope; the drain hands the actor the
message and runs its handler inside the context, in a span of its own (an
ask's ``SERVER`` span, a tell's ``CONSUMER`` span; docs/guides/observability.md
names them and their attributes). To another process the envelope travels as a
message of its own type (``actorstage:traced``) whose body carries the W3C
``traceparent``/``tracestate``/``baggage`` and the message, so every path
(a parent's link, a direct link, a routed hop) carries it unchanged.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

TRACED_TYPE = "actorstage:traced"  # the type name a traced message travels under
ENV = "ACTORSTAGE_TRACING"


class Traced:
    """A message and the trace context it was sent in."""

    __slots__ = ("context", "message")

    def __init__(self, message: Any, context: Any) -> None:
        self.message = message
        self.context = context


class _State:
    tracing = False  # read by each drain as it starts
    tells = True  # handled tells get spans too (when their trace is sampled)
    tracer: Any = None
    provider: Any = None  # a provider configured here for a child process, shut at its end


STATE = _State()
_UNTRACED: dict[type, bool] = {}  # message classes of the runtime's own, never wrapped


def sdk_configured() -> bool:
    """Whether an OpenTelemetry tracer provider is set in this process (without importing
    OpenTelemetry when nothing did)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def wanted(env: str, configured: Callable[[], bool]) -> bool:
    """Whether the variable ``env`` asks for it (``1``), forbids it (``0``), or, unset,
    whether ``configured()`` (an SDK is set up)."""
    setting = os.environ.get(env, "")
    return setting != "0" and (setting == "1" or configured())


def auto() -> None:
    """At a system's start: switch tracing on when it is wanted and available."""
    if not STATE.tracing and wanted(ENV, sdk_configured):
        enable()


def enable(*, tells: bool = True) -> None:
    try:
        from opentelemetry import trace
    except ImportError:
        from actorstage.exceptions import ActorstageError

        raise ActorstageError("tracing needs opentelemetry-api: pip install "
                              "'actorstage[otel]'") from None
    from actorstage import __version__

    STATE.tracer = trace.get_tracer("actorstage", __version__)
    STATE.tells = tells
    if not STATE.tracing:
        from actorstage._sends import switch

        STATE.tracing = True
        switch("tracing", lambda name, method: _WRAPPERS[name](method))


def disable() -> None:
    from actorstage._sends import switch

    STATE.tracing = False
    switch("tracing", None)


def _wrap_async(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def send(self: Any, message: Any) -> Any:
        return await original(self, wrap(message))

    send.__doc__ = original.__doc__
    send.__name__ = original.__name__
    return send


def _wrap_sync(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self: Any, message: Any) -> Any:
        return original(self, wrap(message))

    send.__doc__ = original.__doc__
    send.__name__ = original.__name__
    return send


_WRAPPERS = {"tell": _wrap_async, "tell_nowait": _wrap_sync, "ask": _wrap_async}


def wrap(message: Any) -> Any:
    """``message`` in a ``Traced`` envelope, when it is sent within a valid span context
    and is not one of the runtime's own."""
    cls = message.__class__
    untraced = _UNTRACED.get(cls)
    if untraced is None:
        untraced = _UNTRACED[cls] = cls is Traced or cls.__module__.startswith(
            ("actorstage.transport", "actorstage.actors")) or cls.__name__ == "Outgoing"
    if untraced:
        return message
    from opentelemetry import context, trace

    current = context.get_current()
    if not trace.get_current_span(current).get_span_context().is_valid:
        return message
    return Traced(message, current)


def handler(cell: Any, receive: Callable[[Any], Awaitable[Any]], traced: Traced,
            asked: bool) -> Callable[[Any], Awaitable[Any]]:
    """``receive`` run in the context ``traced`` was sent in: in a span of its own, unless
    the actor is one of the runtime's (``_traced = False``: the context only)."""
    from opentelemetry import context, trace

    spanned = getattr(cell.actor, "_traced", True) and (asked or STATE.tells)
    parent = trace.get_current_span(traced.context).get_span_context()
    if spanned and not asked and not parent.trace_flags.sampled:
        spanned = False

    async def handle(message: Any) -> Any:
        token = context.attach(traced.context)
        try:
            if not spanned:
                return await receive(message)
            name = message.__class__.__name__
            with STATE.tracer.start_as_current_span(
                    f"{'ask' if asked else 'tell'} {name}",
                    kind=trace.SpanKind.SERVER if asked else trace.SpanKind.CONSUMER,
                    attributes={
                        "actorstage.actor.path": cell.path,
                        "actorstage.actor.class": cell.actor.__class__.__qualname__,
                        "actorstage.message.type": _type_name(message.__class__),
                        "actorstage.message.kind": "ask" if asked else "tell",
                        "process.pid": os.getpid(),
                    }):
                return await receive(message)
        finally:
            context.detach(token)

    return handle


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def dead_letter(path: str, message: Any, reason: str) -> None:
    """A traced message became a dead letter: an event on the span it was sent in."""
    from opentelemetry import trace

    span = trace.get_current_span(message.context)
    if span.is_recording():
        span.add_event("actorstage.dead_letter", {
            "actorstage.actor.path": path, "actorstage.dead_letter.reason": reason,
            "actorstage.message.type": _type_name(message.message.__class__)})


def inject(context: Any) -> dict[str, str]:
    """The W3C headers of ``context``."""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def extract(carrier: dict[str, str]) -> Any:
    from opentelemetry import propagate

    return propagate.extract(carrier)


# -- child processes --------------------------------------------------------------------------

def for_child() -> dict[str, Any] | None:
    """What a child process needs to trace as its parent does (in its boot): on or off, and
    the standard ``OTEL_*`` settings its own SDK is configured from."""
    if not STATE.tracing:
        return None
    return {"tells": STATE.tells,
            "env": {key: value for key, value in os.environ.items()
                    if key.startswith("OTEL_")}}


def child_setup(settings: dict[str, Any] | None) -> None:
    """In a child process: trace as the parent does. Spans are exported as the ``OTEL_*``
    variables say (``OTEL_TRACES_EXPORTER``: ``otlp``, the default when an OTLP endpoint
    is set, or ``console``) when ``opentelemetry-sdk`` is installed; without it the
    context still passes through this process's actors."""
    if not settings:
        return
    os.environ.update(settings.get("env") or {})
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if not exporter and any(key in os.environ for key in (
            "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        exporter = "otlp"
    try:
        if exporter and exporter != "none" and not sdk_configured():
            STATE.provider = _provider(exporter)
        enable(tells=bool(settings.get("tells", True)))
    except ImportError as exc:
        import logging

        logging.getLogger("actorstage").warning(
            "this child process cannot export spans (%s): pip install 'actorstage[otel]' "
            "opentelemetry-sdk and an exporter", exc)


def _provider(exporter: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter == "console":
        span_exporter: Any = ConsoleSpanExporter()
    elif exporter == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                                  os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"))
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[no-redef,import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        span_exporter = OTLPSpanExporter()
    else:
        raise ImportError(f"OTEL_TRACES_EXPORTER={exporter!r} is not one actorstage sets up "
                          "(otlp, console, none)")
    provider = TracerProvider(resource=Resource.create({"process.pid": os.getpid()}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    return provider


def child_shutdown() -> None:
    """Before a child process exits: export what its provider still holds."""
    provider = STATE.provider
    if provider is not None:
        STATE.provider = None
        with contextlib.suppress(Exception):  # (an exporter's failure ends nothing)
            provider.shutdown()


# -- the runtime's own spans ----------------------------------------------------------------------

class _NoSpan:
    """What ``span`` gives while tracing is off: takes what a span would, and drops it."""

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def failed(self, description: str) -> None:
        pass

    def set(self, key: str, value: Any) -> None:
        pass


_NO_SPAN = _NoSpan()


class _Span:
    def __init__(self, name: str, attributes: dict[str, Any], kind: str) -> None:
        from opentelemetry import trace

        self._manager = STATE.tracer.start_as_current_span(
            name, kind=getattr(trace.SpanKind, kind), attributes=attributes)
        self.span: Any = None

    def __enter__(self) -> _Span:
        self.span = self._manager.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._manager.__exit__(*exc)

    def failed(self, description: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.set_status(Status(StatusCode.ERROR, description))

    def set(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, value)


def span(name: str, attributes: dict[str, Any], kind: str = "INTERNAL") -> _Span | _NoSpan:
    """A span of the runtime's (a workflow's execution, an action, a task...), current
    while the ``with`` block runs; nothing while tracing is off."""
    if not STATE.tracing:
        return _NO_SPAN
    return _Span(name, attributes, kind)


def current_carrier() -> dict[str, str] | None:
    """The W3C headers of the current trace context, to hand to another process (``None``
    while tracing is off)."""
    if not STATE.tracing:
        return None
    from opentelemetry import context

    return inject(context.get_current()) or None


@contextlib.contextmanager
def attached(carrier: dict[str, str] | None) -> Iterator[None]:
    """Run the block in the trace context of ``carrier`` (``current_carrier``'s)."""
    if not carrier or not STATE.tracing:
        yield
        return
    from opentelemetry import context

    token = context.attach(extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


# -- gRPC services ----------------------------------------------------------------------------

class _TracedService:
    """A grpclib service whose every RPC runs in a ``SERVER`` span, in the trace context
    its request metadata carries (``traceparent``...)."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def __mapping__(self) -> dict[str, Any]:
        from grpclib.const import Handler

        return {path: Handler(_rpc(path, handler.func), handler.cardinality,
                              handler.request_type, handler.reply_type)
                for path, handler in self._service.__mapping__().items()}


def traced_services(services: list[Any]) -> list[Any]:
    """``services`` with their RPCs traced, while tracing is on."""
    if not STATE.tracing:
        return services
    return [_TracedService(service) for service in services]


def _rpc(path: str, func: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    from opentelemetry import context, trace

    service, _, method = path.strip("/").partition("/")

    async def handle(stream: Any) -> None:
        metadata = stream.metadata or {}
        carrier = {key: value for key, value in metadata.items()
                   if key in ("traceparent", "tracestate", "baggage") and isinstance(value, str)}
        token = context.attach(extract(carrier)) if carrier else None
        try:
            with STATE.tracer.start_as_current_span(
                    f"{service}/{method}", kind=trace.SpanKind.SERVER,
                    attributes={"rpc.system": "grpc", "rpc.service": service,
                                "rpc.method": method}) as current:
                try:
                    await func(stream)
                except Exception as exc:
                    status = getattr(exc, "status", None)
                    if status is not None:
                        current.set_attribute("rpc.grpc.status_code", int(status.value))
                    raise
        finally:
            if token is not None:
                context.detach(token)

    return handle


class _Open:
    """A span started and not current: made current where ``current()`` is entered, ended
    by ``end``; for a span whose beginning and end are in different calls."""

    def __init__(self, name: str, attributes: dict[str, Any], kind: str) -> None:
        from opentelemetry import trace

        self._span = STATE.tracer.start_span(name, kind=getattr(trace.SpanKind, kind),
                                             attributes=attributes)

    def current(self) -> Any:
        from opentelemetry import trace

        return trace.use_span(self._span, end_on_exit=False)

    def end(self, error: str | None = None, **attributes: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        for key, value in attributes.items():
            self._span.set_attribute(key, value)
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end()


class _NoOpen:
    def current(self) -> Any:
        return contextlib.nullcontext()

    def end(self, error: str | None = None, **attributes: Any) -> None:
        pass


_NO_OPEN = _NoOpen()


def open_span(name: str, attributes: dict[str, Any], kind: str = "INTERNAL") -> _Open | _NoOpen:
    """A span started now, in the current context, and ended by its ``end``."""
    if not STATE.tracing:
        return _NO_OPEN
    return _Open(name, attributes, kind)
