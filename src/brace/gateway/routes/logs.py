"""Admin API over the request log (``telemetry.store``).

::

    GET /admin/requests               newest first; filters model, deployment, tenant, status,
                                      error_class, q (request/trace id prefix), since, until;
                                      limit (1-1000, default 50), before (next_cursor)
    GET /admin/requests/{request_id}  one request with its attempts (404 if unknown)
    GET /admin/traces/{trace_id}      every request of a trace, oldest first (404 if none)
    GET /admin/spend                  group_by model|deployment|tenant|day|hour, since, until
    GET /admin/overview               window_s (default 3600), bucket_s (default 60)
    GET /admin/store                  the writer's counters (queued, written, dropped...)

``since`` / ``until`` take epoch seconds, an ISO 8601 time (UTC when it has no
offset) or an age such as ``15m``, ``2h``, ``7d``.  Every route runs
:func:`~brace.gateway.routes.admin.admin_guard` first.  With ``telemetry.store: off``
they answer 503; a bad parameter is a 400 that names it.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import orjson
from aiohttp import web

from ...errors import BadRequest, BraceError, RequestError
from ...store.requests import GROUP_BY, GroupBy, InvalidQuery
from .._http import error_response, json_response, request_id
from .admin import admin_guard

if TYPE_CHECKING:
    from ...store.requests import Store
    from ..app import Gateway

__all__ = ["parse_time", "setup"]

log = logging.getLogger("brace.gateway")

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MAX_TEXT = 200


class _StoreOff(BraceError):
    status = 503
    type = "api_error"
    code = "request_log_off"


class _StoreUnavailable(BraceError):
    status = 503
    type = "api_error"
    code = "request_log_unavailable"


class _NotFound(RequestError):
    status = 404
    code = "not_found"
    error_class = "not_found"


def parse_time(raw: str, param: str, *, now: float | None = None) -> float:
    """Epoch seconds from epoch seconds, ISO 8601 or an age (``15m``, ``2h``, ``7d``)."""
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(value) and value >= 0:
            return value
        raise BadRequest(f"{param} must be a non-negative number of epoch seconds", param=param)
    age = _AGE.match(text.lower())
    if age:
        current = time.time() if now is None else now
        return current - float(age.group(1)) * _UNITS[age.group(2)]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{param} must be epoch seconds, an ISO 8601 time or an age like 15m, 2h, 7d "
            f"(got {raw[:40]!r})",
            param=param,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _text(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > _MAX_TEXT or not raw.isprintable():
        raise BadRequest(f"{name} must be printable and at most {_MAX_TEXT} characters", param=name)
    return raw


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer (got {raw[:40]!r})", param=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", param=name)
    return value


def _time(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    return parse_time(raw, name)


def _store_of(gateway: Gateway) -> Store | None:
    """The gateway's request-log store; ``None`` with ``telemetry.store: off``."""
    return gateway.telemetry.store


Route = Callable[[web.Request, "Store"], Awaitable[Any]]


def setup(app: web.Application, gateway: Gateway) -> None:
    check = admin_guard(gateway)

    def route(fn: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            denied = check(request)
            if denied is not None:
                return denied
            rid = request_id(request)
            store = _store_of(gateway)
            if store is None:
                return error_response(
                    _StoreOff("the request log is off (telemetry.store: off)"), rid
                )
            try:
                result = await fn(request, store)
            except BraceError as exc:
                return error_response(exc, rid)
            except InvalidQuery as exc:
                return error_response(BadRequest(exc.message, param=exc.param), rid)
            except Exception as exc:  # a failing database answers 503, never a traceback
                log.warning(
                    "admin %s: the request log failed: %s", request.path, type(exc).__name__
                )
                return error_response(
                    _StoreUnavailable(
                        f"the request log could not be read ({type(exc).__name__}); "
                        "see the gateway log and GET /admin/store"
                    ),
                    rid,
                )
            return json_response(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS))

        return handle

    async def list_requests(request: web.Request, store: Store) -> Any:
        status_raw = _text(request, "status")
        status: int | str | None = status_raw
        if status_raw is not None and status_raw.isdigit():
            status = int(status_raw)
        rows, cursor = await store.list_requests(
            model=_text(request, "model"),
            deployment=_text(request, "deployment"),
            tenant=_text(request, "tenant"),
            status=status,
            error_class=_text(request, "error_class"),
            q=_text(request, "q"),
            since=_time(request, "since"),
            until=_time(request, "until"),
            limit=_int(request, "limit", 50, 1, 1000),
            before=_text(request, "before"),
        )
        return {"object": "list", "data": rows, "next_cursor": cursor}

    async def get_request(request: web.Request, store: Store) -> Any:
        rid = request.match_info["request_id"]
        found = await store.get_request(rid)
        if found is None:
            raise _NotFound(f"no request {rid[:80]!r} in the request log", param="request_id")
        return found

    async def get_trace(request: web.Request, store: Store) -> Any:
        trace_id = request.match_info["trace_id"]
        rows = await store.trace(trace_id)
        if not rows:
            raise _NotFound(
                f"no request of trace {trace_id[:80]!r} in the request log", param="trace_id"
            )
        return {"trace_id": trace_id, "data": rows}

    async def spend(request: web.Request, store: Store) -> Any:
        group_by = request.query.get("group_by") or "model"
        if group_by not in GROUP_BY:
            raise BadRequest(f"group_by must be one of {', '.join(GROUP_BY)}", param="group_by")
        return await store.spend(
            cast(GroupBy, group_by),
            since=_time(request, "since"),
            until=_time(request, "until"),
        )

    async def overview(request: web.Request, store: Store) -> Any:
        window_s = _int(request, "window_s", 3600, 1, 90 * 86_400)
        bucket_s = _int(request, "bucket_s", 60, 1, 90 * 86_400)
        return await store.overview(window_s, bucket_s)

    async def stats(request: web.Request, store: Store) -> Any:
        return store.stats()

    app.router.add_get("/admin/requests", route(list_requests))
    app.router.add_get("/admin/requests/{request_id}", route(get_request))
    app.router.add_get("/admin/traces/{trace_id}", route(get_trace))
    app.router.add_get("/admin/spend", route(spend))
    app.router.add_get("/admin/overview", route(overview))
    app.router.add_get("/admin/store", route(stats))
