"""What every route shares: the gateway's app key, reading a JSON body, running a
request through its stack, rendering errors and answers.

Handlers are module-level functions of the request alone; they find the gateway with
``request.app[GATEWAY]``.  Nothing here validates a body: :mod:`brace._validate` holds
the checks, shared with the in-process client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import web

from .._validate import check_body
from ..cache import cache_hints
from ..errors import BadRequest, BraceError, PayloadTooLarge, PermissionDenied
from ..keys import MASTER, VirtualKey
from ..policies.admission import PRIORITIES
from ..runs import read_run
from ..stack import Operation, Request, RequestState, Response, StreamResponse

if TYPE_CHECKING:
    from ..config import BraceConfig
    from ..engine import Engine
    from ..keys import Keys
    from ..telemetry.hub import Telemetry

__all__ = [
    "CALLER",
    "GATEWAY",
    "LOOPBACK",
    "Caller",
    "GatewayView",
    "authenticate",
    "brace_headers",
    "caller",
    "dispatch",
    "error_response",
    "json_response",
    "owner_of",
    "read_json",
    "render",
    "request_id",
    "serve_operation",
]

log = logging.getLogger("brace.gateway")

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
"""Addresses only this machine can reach."""


class RequestIds:
    """Unique request ids without a syscall each: a random per-process prefix and a
    counter (``brq-<12 hex>-<counter>``)."""

    __slots__ = ("_next", "_prefix")

    def __init__(self) -> None:
        self._prefix = "brq-" + os.urandom(6).hex() + "-"
        self._next = itertools.count(1).__next__

    def new(self) -> str:
        return f"{self._prefix}{self._next():x}"


REQUEST_IDS = web.AppKey("request_ids", RequestIds)


class GatewayView(Protocol):
    """What the routes use of :class:`~brace.gateway.app.Gateway` (which they do not
    import: the app module imports them)."""

    @property
    def config(self) -> BraceConfig: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def keys(self) -> Keys: ...
    @property
    def telemetry(self) -> Telemetry: ...
    @property
    def host(self) -> str: ...
    @property
    def ready(self) -> bool: ...
    @property
    def stopping(self) -> bool: ...


GATEWAY: web.AppKey[GatewayView] = web.AppKey("brace.gateway")
"""The gateway an application serves: how a handler finds it (``request.app[GATEWAY]``)."""

_JSON = "application/json"
_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_DONE = b"data: [DONE]\n\n"


def request_id(request: web.Request) -> str:
    """The caller's ``x-request-id`` if it is sane, else a fresh one."""
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable():
        return given
    ids: RequestIds | None = request.app.get(REQUEST_IDS)
    return ids.new() if ids is not None else os.urandom(12).hex()


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"request body is {length} bytes; this gateway accepts at most {limit} bytes "
            "(server.max_body_bytes)"
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(
            f"request body is over {limit} bytes (server.max_body_bytes)"
        ) from None
    if not raw:
        raise BadRequest("request body is empty: send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(
            f"request body must be a JSON object, not {type(body).__name__ if body is not None else 'null'}"
        )
    return body


def brace_headers(req: Request) -> dict[str, str]:
    """What happened to a request, for the caller: request id, deployment, attempts, fallback."""
    state = req.state
    headers = {"x-request-id": req.request_id}
    deployment = state.deployment
    if deployment:
        headers["x-brace-deployment"] = deployment
    attempts = state.attempts
    if attempts:
        headers["x-brace-attempts"] = str(len(attempts))
    fallback = state.fallback
    if fallback:
        headers["x-brace-fallback"] = ">".join(fallback)
    return headers


def _timeout_hint(request: web.Request) -> float | None:
    raw = request.headers.get("x-brace-timeout")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(
            f"x-brace-timeout must be a number of seconds (got {raw[:40]!r})",
            param="x-brace-timeout",
        ) from None
    if not value > 0:
        raise BadRequest("x-brace-timeout must be greater than 0", param="x-brace-timeout")
    return value


Caller = VirtualKey | object | None
"""A virtual key, :data:`~brace.keys.MASTER`, or ``None`` (local mode)."""


CALLER: web.RequestKey[Caller] = web.RequestKey("brace.caller")
"""Who called a caller route, as the access middleware authenticated them."""


def caller(request: web.Request) -> Caller:
    """Who called a caller route: a virtual key, the master key, or ``None`` (local
    mode).  A ``KeyError`` on a route that is not a caller route: never unauthenticated."""
    return request[CALLER]


def authenticate(gateway: GatewayView, request: web.Request) -> Caller:
    """Who is calling (raises the OpenAI-shaped 401); the access middleware calls it
    for every caller route (:mod:`brace.gateway._access`)."""
    return gateway.keys.ring.authenticate(request.headers.get("Authorization"))


def owner_of(caller: Caller) -> str:
    """Whose runs a caller sees and joins: the key's team (``team:NAME``) or the key's
    id, ``master``, or ``local`` (no key needed)."""
    if caller is None:
        return "local"
    if caller is MASTER:
        return "master"
    assert isinstance(caller, VirtualKey)
    return f"team:{caller.team}" if caller.team else caller.id


def _authorize(caller: Caller, authorization: str | None, req: Request) -> None:
    """Scope (the 403) and what the key decides for the request: tenant, owner, priority."""
    state = req.state
    if caller is None:  # local mode
        state.owner = "local"
        if authorization:
            # tenants take turns in the admission queue; the token itself is never kept
            state.tenant = hashlib.blake2b(authorization.encode(), digest_size=8).hexdigest()
        return
    if caller is MASTER:
        state.tenant = state.owner = "master"
        return
    assert isinstance(caller, VirtualKey)
    if not caller.allows(req.model):
        allowed = ", ".join(sorted(caller.models or ()))
        raise PermissionDenied(
            f"API key {caller.prefix}… ({caller.id}) may not use model {req.model!r}; "
            f"it may use: {allowed or 'no model'}",
            param="model",
        )
    state.ext.insert(caller)
    state.tenant = caller.id
    state.owner = owner_of(caller)
    if caller.priority == "batch" or (caller.priority is not None and state.priority is None):
        state.priority = caller.priority  # a batch key cannot promote itself by header


async def serve_operation(request: web.Request, operation: Operation) -> web.StreamResponse:
    """A caller route's whole work: read and check the body (the checks the in-process
    client runs too), then :func:`dispatch` it."""
    gateway = request.app[GATEWAY]
    rid = request_id(request)
    try:
        body = await read_json(request, gateway.config.server.max_body_bytes)
        model, stream = check_body(operation, body)
    except BraceError as exc:
        return error_response(exc, rid)
    return await dispatch(
        request, gateway, Request(operation, model, body, stream, rid), caller(request)
    )


async def dispatch(
    request: web.Request, gateway: GatewayView, req: Request, caller: Caller
) -> web.StreamResponse:
    """Run ``req`` through its group's stack and render the result or the error."""
    traceparent = request.headers.get("traceparent")
    if traceparent:
        req.state.traceparent = traceparent
    try:
        timeout = _timeout_hint(request)
        if timeout is not None:
            req.state.timeout = timeout
        priority = request.headers.get("x-brace-priority")
        if priority is not None:
            if priority not in PRIORITIES:
                raise BadRequest(
                    f"x-brace-priority must be one of {', '.join(PRIORITIES)} (got {priority[:40]!r})",
                    param="x-brace-priority",
                )
            req.state.priority = priority
        if "x-brace-cache" in request.headers or "x-brace-cache-max-age" in request.headers:
            req.state.cache_control, req.state.cache_max_age = cache_hints(request.headers)
        _authorize(caller, request.headers.get("Authorization"), req)
        run = read_run(request.headers, req.body, req.state.owner or "local")
        if run is not None:
            req.state.run = run
        handler = gateway.engine.handler(req.model)
        result = await handler(req)
    except BraceError as exc:
        resp = error_response(exc, req.request_id)
        resp.headers.update(brace_headers(req))
        return resp
    return await render(request, result, brace_headers(req), req)


def json_response(
    body: bytes, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON, headers=headers)


def error_response(exc: BraceError, rid: str) -> web.Response:
    headers = exc.headers()
    headers["x-request-id"] = rid
    return web.Response(
        body=exc.to_json(), status=exc.http_status, content_type=_JSON, headers=headers
    )


async def render(
    request: web.Request,
    result: Response | StreamResponse,
    headers: dict[str, str],
    req: Request | None = None,
) -> web.StreamResponse:
    """Write a stack result to the client: JSON at once, or SSE chunk by chunk."""
    if isinstance(result, Response):
        if result.headers:
            headers.update(result.headers)
        return web.Response(
            body=result.body, status=result.status, content_type=_JSON, headers=headers
        )
    return await _render_stream(
        request, result, headers, req.state if req is not None else RequestState()
    )


async def _render_stream(
    request: web.Request, stream: StreamResponse, headers: dict[str, str], state: RequestState
) -> web.StreamResponse:
    chunks = stream.chunks
    try:
        # Errors before the first chunk still get a real HTTP status.
        first: bytes | None = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stream.aclose()
        raise
    headers.update(_SSE_HEADERS)
    if stream.headers:
        headers.update(stream.headers)
    resp = web.StreamResponse(status=200, headers=headers)
    try:
        await resp.prepare(request)
        if first is not None:
            await resp.write(first)
            async for frame in chunks:
                await resp.write(frame)
        await resp.write_eof(_DONE)  # with the chunked terminator: one send, not two
    except BraceError as exc:
        # After the first byte the status is sent: end with an SSE error event,
        # never a silent truncation.  The OpenAI SDKs raise it as an APIError.
        log.warning(
            "stream %s ended by upstream failure: %s", headers.get("x-request-id"), exc.message
        )
        state.stream_error = exc
        await _write_quietly(resp, b"data: " + exc.to_json() + b"\n\n")
    except (ConnectionResetError, ConnectionError):
        # The client went away: stop reading upstream (finally closes it).
        state.client_disconnected = True
    except asyncio.CancelledError:
        state.client_disconnected = True
        raise
    finally:
        await stream.aclose()
    return resp


async def _write_quietly(resp: web.StreamResponse, data: bytes) -> None:
    with contextlib.suppress(ConnectionResetError, ConnectionError):
        await resp.write(data)
