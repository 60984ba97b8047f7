"""``call: http``: the DSL's HTTP call, with httpx.

The ``with`` arguments are evaluated first (``${ }`` strings at any depth);
``{name}`` placeholders in the endpoint's URI take the top-level values of
the task's input. The answer is read up to ``MAX_BODY`` bytes. A status
outside 200-299 (200-399 with ``redirect: true``, when redirects are
followed) or a failed connection faults with the DSL's communication error.
"""

from __future__ import annotations

import base64
import re
from typing import Any

__all__ = ["call_http"]

MAX_BODY = 16 * 1024 * 1024
TIMEOUT = 60.0
COMMUNICATION = "https://serverlessworkflow.io/spec/1.0.0/errors/communication"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class CallError(Exception):
    """A failed call: ``error`` is the DSL error it faults with (its ``instance`` unset)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("detail") or error.get("title"))
        self.error = error


def _uri(template: str, data: Any) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not isinstance(data, dict) or name not in data:
            raise CallError({"type": COMMUNICATION, "status": 400,
                             "title": "Bad Endpoint",
                             "detail": f"the endpoint {template!r} needs {name!r}, which the "
                                       "task's input does not have"})
        return str(data[name])

    return _PLACEHOLDER.sub(value, template)


def _authentication(spec: Any) -> tuple[Any, dict[str, str]]:
    """(httpx auth, extra headers) of an endpoint's ``authentication`` (a name in
    ``use.authentications`` has been looked up already)."""
    import httpx

    if not spec:
        return None, {}
    if "basic" in spec:
        basic = spec["basic"]
        return httpx.BasicAuth(str(basic.get("username", "")),
                               str(basic.get("password", ""))), {}
    if "bearer" in spec:
        return None, {"Authorization": f"Bearer {spec['bearer'].get('token', '')}"}
    raise CallError({"type": COMMUNICATION, "status": 400, "title": "Unsupported "
                     "Authentication", "detail": f"authentication {sorted(spec)} is not "
                     "supported here: basic or bearer"})


async def call_http(spec: dict[str, Any], data: Any) -> Any:
    """The output of an HTTP call whose (evaluated) ``with`` is ``spec``."""
    import httpx

    endpoint = spec["endpoint"]
    auth_spec = None
    if isinstance(endpoint, dict):
        auth_spec = endpoint.get("authentication")
        endpoint = endpoint.get("uri", "")
    uri = _uri(str(endpoint), data)
    method = str(spec.get("method", "get")).upper()
    mode = spec.get("output", "content")
    redirect = bool(spec.get("redirect", False))
    auth, extra = _authentication(auth_spec)
    headers = {str(key): str(value) for key, value in (spec.get("headers") or {}).items()}
    headers.update(extra)
    query = {str(key): str(value) for key, value in (spec.get("query") or {}).items()}
    body = spec.get("body")
    try:
        async with httpx.AsyncClient(follow_redirects=redirect, timeout=TIMEOUT) as client:
            request = client.build_request(
                method, uri, headers=headers, params=query or None,
                **({"json": body} if body is not None and not isinstance(body, str | bytes)
                   else {"content": body} if body is not None else {}))
            response = await client.send(request, auth=auth, stream=True)
            try:
                content = await _read(response)
            finally:
                await response.aclose()
    except httpx.HTTPError as exc:
        raise CallError({"type": COMMUNICATION, "status": 500, "title": "Call Failed",
                         "detail": f"{method} {uri}: {exc or type(exc).__name__}"}) from None
    top = 399 if redirect else 299
    if not 200 <= response.status_code <= top:
        raise CallError({"type": COMMUNICATION, "status": response.status_code,
                         "title": f"HTTP {response.status_code}",
                         "detail": f"{method} {uri} answered {response.status_code} "
                                   f"{response.reason_phrase}"})
    if mode == "raw":
        return base64.b64encode(content).decode()
    parsed = _parsed(content, response.headers.get("content-type", ""))
    if mode == "response":
        return {"request": {"method": method, "uri": str(request.url),
                            "headers": dict(request.headers)},
                "statusCode": response.status_code, "headers": dict(response.headers),
                "content": parsed}
    return parsed


async def fetch(uri: str, what: str, *, auth: Any = None) -> bytes:
    """The body of ``GET uri`` (redirects followed, read up to ``MAX_BODY``); a
    ``CallError`` titled after ``what`` when it cannot be had or is not a 200."""
    import httpx

    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=TIMEOUT) as client:
            response = await client.send(client.build_request("GET", uri), auth=auth,
                                         stream=True)
            try:
                content = await _read(response)
            finally:
                await response.aclose()
    except httpx.HTTPError as exc:
        raise CallError({"type": COMMUNICATION, "status": 500, "title": f"{what} Unreachable",
                         "detail": f"GET {uri}: {exc or type(exc).__name__}"}) from None
    if response.status_code != 200:
        raise CallError({"type": COMMUNICATION, "status": response.status_code,
                         "title": f"{what} Unreachable",
                         "detail": f"GET {uri} answered {response.status_code}"})
    return content


async def _read(response: Any) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY:
            raise CallError({"type": COMMUNICATION, "status": 502, "title": "Answer Too Large",
                             "detail": f"the answer is larger than {MAX_BODY} bytes"})
        chunks.append(chunk)
    return b"".join(chunks)


def _parsed(content: bytes, kind: str) -> Any:
    if "json" in kind.lower():  # (read with the bounds of any untrusted document)
        from actorstage._documents import DocumentError, load

        try:
            return load(content, "json", "the answer")
        except DocumentError:
            pass
    try:
        return content.decode()
    except UnicodeDecodeError:
        return base64.b64encode(content).decode()
