"""``call: grpc``: a method of a service described by a ``.proto`` file, called with grpclib.

The proto file (``file://`` or ``http(s)://``, bounded in size) is compiled
once per content with ``grpc_tools.protoc`` (off the event loop) into
descriptors; the request is built from ``arguments`` and the answer turned
back into JSON with protobuf's JSON mapping. Unary methods answer one
object, server-streaming ones a list. A failed call is the DSL's
communication error, its status the HTTP one nearest the gRPC code.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from actorstage.serverless._http import COMMUNICATION, TIMEOUT, CallError, fetch

__all__ = ["call_grpc"]

MAX_PROTO = 1024 * 1024  # bytes of a proto file
_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
           "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "FAILED_PRECONDITION": 412,
           "RESOURCE_EXHAUSTED": 429, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
           "DEADLINE_EXCEEDED": 504}


def _problem(title: str, detail: str, status: int = 400) -> CallError:
    return CallError({"type": COMMUNICATION, "status": status, "title": title,
                      "detail": detail})


async def _proto_text(uri: str) -> tuple[str, bytes]:
    """(file name, content) of the proto file at ``uri``."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parsed.netloc + parsed.path) if parsed.scheme
                    else uri)
        try:
            content = await asyncio.to_thread(_read_bounded, path)
        except OSError as exc:
            raise _problem("Bad Proto File", f"cannot read {uri}: {exc.strerror}") from None
        if content is None:
            raise _problem("Bad Proto File", f"{uri} is larger than {MAX_PROTO} bytes")
        return path.name, content
    if parsed.scheme not in ("http", "https"):
        raise _problem("Bad Proto File", f"{uri}: a proto file is file://, http:// or https://")
    content = await fetch(uri, "Proto File")
    if len(content) > MAX_PROTO:
        raise _problem("Bad Proto File", f"{uri} is larger than {MAX_PROTO} bytes")
    return Path(parsed.path).name or "service.proto", content


def _read_bounded(path: Path) -> bytes | None:
    with path.open("rb") as file:
        content = file.read(MAX_PROTO + 1)
    return content if len(content) <= MAX_PROTO else None


@functools.lru_cache(maxsize=32)
def _compiled(name: str, content: bytes) -> Any:
    """A descriptor pool holding ``content`` (compiled by protoc) and what it imports."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="actorstage-proto-") as folder:
        source = Path(folder) / name
        source.write_bytes(content)
        out = Path(folder) / "descriptors.binpb"
        include = Path(protoc.__file__).parent / "_proto"
        status = protoc.main(["protoc", f"-I{folder}", f"-I{include}",
                              f"--descriptor_set_out={out}", "--include_imports", name])
        if status != 0 or not out.exists():
            raise _problem("Bad Proto File", f"{name} does not compile (protoc status "
                                             f"{status})")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    return pool


async def call_grpc(spec: dict[str, Any]) -> Any:
    """The answer of the method that the (evaluated) ``with`` of ``call: grpc`` names."""
    from google.protobuf import json_format, message_factory
    from grpclib import GRPCError
    from grpclib.client import Channel
    from grpclib.const import Cardinality
    from grpclib.exceptions import StreamTerminatedError

    proto = spec.get("proto")
    uri = proto.get("endpoint") if isinstance(proto, dict) else proto
    if isinstance(uri, dict):
        uri = uri.get("uri")
    service = spec.get("service") or {}
    if not isinstance(uri, str) or not isinstance(service, dict) or not service.get("name"):
        raise _problem("Bad gRPC Call", "with.proto.endpoint (the proto file) and "
                                        "with.service.name, host and port are needed")
    name, content = await _proto_text(uri)
    pool = await asyncio.to_thread(_compiled, name, content)
    try:
        described = pool.FindServiceByName(str(service["name"]))
    except KeyError:
        raise _problem("Unknown gRPC Service", f"{uri} has no service "
                                               f"{service['name']!r}") from None
    method = described.methods_by_name.get(str(spec.get("method")))
    if method is None:
        raise _problem("Unknown gRPC Method", f"service {service['name']!r} has no method "
                                              f"{spec.get('method')!r}")
    if method.client_streaming:
        raise _problem("Unsupported gRPC Method", f"{method.full_name} takes a stream; "
                                                  "call: grpc sends one request")
    request_type = message_factory.GetMessageClass(method.input_type)
    reply_type = message_factory.GetMessageClass(method.output_type)
    try:
        request = json_format.ParseDict(spec.get("arguments") or {}, request_type())
    except json_format.ParseError as exc:
        raise _problem("Bad gRPC Arguments", f"{method.full_name}: {exc}") from None
    metadata = _metadata(service.get("authentication"))
    cardinality = Cardinality.UNARY_STREAM if method.server_streaming else \
        Cardinality.UNARY_UNARY
    path = f"/{described.full_name}/{method.name}"
    channel = Channel(str(service.get("host", "127.0.0.1")), int(service.get("port", 50051)))
    try:
        async with channel.request(path, cardinality, request_type, reply_type,
                                   timeout=TIMEOUT, metadata=metadata) as stream:
            await stream.send_message(request, end=True)
            replies = [reply async for reply in stream]
    except GRPCError as exc:
        raise _problem(f"gRPC {exc.status.name}", f"{path}: {exc.message or exc.status.name}",
                       _STATUS.get(exc.status.name, 500)) from None
    except (OSError, StreamTerminatedError, TimeoutError) as exc:
        raise _problem("Call Failed", f"{path} on {service.get('host')}:{service.get('port')}:"
                                      f" {exc or type(exc).__name__}", 500) from None
    finally:
        channel.close()
    answers = [json_format.MessageToDict(reply, preserving_proto_field_name=True)
               for reply in replies]
    if method.server_streaming:
        return answers
    return answers[0] if answers else {}


def _metadata(spec: Any) -> dict[str, str] | None:
    if not isinstance(spec, dict):
        return None
    if "bearer" in spec:
        return {"authorization": f"Bearer {spec['bearer'].get('token', '')}"}
    if "basic" in spec:
        import base64

        basic = spec["basic"]
        pair = f"{basic.get('username', '')}:{basic.get('password', '')}".encode()
        return {"authorization": f"Basic {base64.b64encode(pair).decode()}"}
    raise _problem("Unsupported Authentication", f"authentication {sorted(spec)} is not "
                                                  "supported here: basic or bearer")
