"""``call: openapi``: an operation of an OpenAPI document (Swagger 2.0 or OpenAPI 3.x),
called over HTTP.

The document is fetched (bounded, JSON or YAML, kept for a minute per
address), the operation found by its ``operationId``, and the ``parameters``
placed where the operation declares them: path, query, header, or the body
(Swagger's ``in: body`` parameter; for OpenAPI 3 a ``requestBody``, made of the
parameters the operation does not declare elsewhere, or of one named
``body``). The call itself is ``call: http``'s, with its ``output``,
``redirect`` and ``authentication``.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from actorstage.serverless._http import COMMUNICATION, CallError, call_http, fetch

__all__ = ["call_openapi"]

CACHE_SECONDS = 60.0
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _problem(title: str, detail: str, status: int = 400) -> CallError:
    return CallError({"type": COMMUNICATION, "status": status, "title": title,
                      "detail": detail})


async def _document(uri: str, auth: Any) -> dict[str, Any]:
    from actorstage._documents import DocumentError, load

    cached = _cache.get(uri)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    content = await fetch(uri, "OpenAPI Document", auth=auth)
    text = content.lstrip()
    try:
        document = load(content, "json" if text.startswith(b"{") else "yaml",
                        "the OpenAPI document")
    except DocumentError as exc:
        raise _problem("Bad OpenAPI Document", f"{uri}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise _problem("Bad OpenAPI Document", f"{uri} has no paths")
    if len(_cache) > 64:
        _cache.clear()
    _cache[uri] = (time.monotonic(), document)
    return document


def _operation(document: dict[str, Any], operation_id: str
               ) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    """(method, path, parameters, operation) of ``operation_id``."""
    for path, item in document["paths"].items():
        if not isinstance(item, dict):
            continue
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                declared = [*item.get("parameters", []), *operation.get("parameters", [])]
                return method, path, [p for p in declared if isinstance(p, dict)], operation
    raise _problem("Unknown Operation", f"the OpenAPI document has no operation "
                                        f"{operation_id!r}")


def _base(document: dict[str, Any], uri: str) -> str:
    """Where the operations' paths start: OpenAPI 3's first server, Swagger's scheme, host
    and basePath, or the document's own address."""
    if document.get("servers"):
        server = str(document["servers"][0].get("url", "/"))
        return urllib.parse.urljoin(uri, server).rstrip("/")
    parsed = urllib.parse.urlsplit(uri)
    schemes = document.get("schemes") or [parsed.scheme]
    scheme = parsed.scheme if parsed.scheme in schemes else schemes[0]
    host = document.get("host") or parsed.netloc
    return f"{scheme}://{host}{document.get('basePath', '')}".rstrip("/")


async def call_openapi(spec: dict[str, Any]) -> Any:
    """The output of the operation that the (evaluated) ``with`` of ``call: openapi``
    names."""
    import httpx

    source = (spec.get("document") or {}).get("endpoint")
    uri = source.get("uri") if isinstance(source, dict) else source
    if not isinstance(uri, str) or not uri:
        raise _problem("Bad OpenAPI Call", "with.document.endpoint is the OpenAPI "
                                           "document's address")
    authentication = spec.get("authentication")
    auth = None
    if isinstance(authentication, dict) and "basic" in authentication:
        basic = authentication["basic"]
        auth = httpx.BasicAuth(str(basic.get("username", "")), str(basic.get("password", "")))
    document = await _document(uri, auth)
    method, path, declared, operation = _operation(document, str(spec.get("operationId")))
    given = dict(spec.get("parameters") or {})
    query: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    body: Any = None
    for parameter in declared:
        name, place = parameter.get("name"), parameter.get("in")
        if name not in given:
            if parameter.get("required") and place != "body":
                raise _problem("Missing Parameter", f"operation {operation.get('operationId')!r}"
                                                    f" needs parameter {name!r} ({place})")
            continue
        value = given.pop(name)
        if place == "path":
            path = path.replace("{" + str(name) + "}",
                                urllib.parse.quote(str(value), safe=""))
        elif place == "query":
            query[str(name)] = value
        elif place == "header":
            headers[str(name)] = value
        elif place == "body":
            body = value
    if body is None and "requestBody" in operation and given:
        body = given.pop("body") if set(given) == {"body"} else given
    endpoint: dict[str, Any] = {"uri": _base(document, uri) + path}
    if authentication:
        endpoint["authentication"] = authentication
    call = {"method": method, "endpoint": endpoint, "headers": headers,
            "query": {key: _text(value) for key, value in query.items()},
            "output": spec.get("output", "content"), "redirect": spec.get("redirect", False)}
    if body is not None:
        call["body"] = body
    return await call_http(call, None)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)
