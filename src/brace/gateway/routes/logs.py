"""Admin API over the request log (``telemetry.store``).

::

    GET /admin/requests               newest first; filters model, deployment, tenant, status,
                                      error_class, run_id, q (request/trace id prefix),
                                      since, until; limit (1-1000, default 50), before
                                      (next_cursor)
    GET /admin/requests/{request_id}  one request with its attempts (404 if unknown)
    GET /admin/traces/{trace_id}      every request of a trace, oldest first (404 if none)
    GET /admin/spend                  group_by model|deployment|tenant|day|hour, since, until
    GET /admin/overview               window_s (default 3600), bucket_s (default 60)
    GET /admin/store                  the writer's counters (queued, written, dropped...)

``since`` / ``until`` take epoch seconds, an ISO 8601 time (UTC when it has no
offset) or an age such as ``15m``, ``2h``, ``7d``.  Every route is an admin route
(:mod:`brace.gateway._access`).  With ``telemetry.store: off`` they answer 503; a bad
parameter is a 400 that names it.
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

from ...errors import BadRequest, BraceError, NotFound, RequestLogOff, RequestLogUnavailable
from ...store.requests import GROUP_BY, GroupBy
from .._access import Route, mount
from .._http import GATEWAY, GatewayView, error_response, json_response, request_id

if TYPE_CHECKING:
    from ...store.requests import Store

__all__ = [
    "ROUTES",
    "get_request",
    "get_trace",
    "int_param",
    "list_requests",
    "overview",
    "parse_time",
    "reads_log",
    "setup",
    "spend",
    "stats",
    "text_param",
    "time_param",
]

log = logging.getLogger("brace.gateway")

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MAX_TEXT = 200


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


def text_param(request: web.Request, name: str) -> str | None:
    """Query parameter ``name`` (``None`` when absent or empty); 400 unless printable
    and short."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > _MAX_TEXT or not raw.isprintable():
        raise BadRequest(f"{name} must be printable and at most {_MAX_TEXT} characters", param=name)
    return raw


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an integer in ``[low, high]`` (400 otherwise)."""
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


def time_param(request: web.Request, name: str) -> float | None:
    """Query parameter ``name`` as epoch seconds (:func:`parse_time`)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    return parse_time(raw, name)


def _store_of(gateway: GatewayView) -> Store | None:
    """The gateway's request-log store; ``None`` with ``telemetry.store: off``."""
    return gateway.telemetry.store


Query = Callable[[web.Request, "Store"], Awaitable[Any]]


def reads_log(fn: Query) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A route answering ``fn(request, store)`` as JSON: 503 when there is no request log
    or it fails, 400 on a bad parameter."""

    async def handle(request: web.Request) -> web.StreamResponse:
        rid = request_id(request)
        store = _store_of(request.app[GATEWAY])
        if store is None:
            return error_response(
                RequestLogOff("the request log is off (telemetry.store: off)"), rid
            )
        try:
            result = await fn(request, store)
        except BraceError as exc:  # InvalidQuery (400) among them
            return error_response(exc, rid)
        except Exception as exc:  # a failing database answers 503, never a traceback
            log.warning("admin %s: the request log failed: %s", request.path, type(exc).__name__)
            return error_response(
                RequestLogUnavailable(
                    f"the request log could not be read ({type(exc).__name__}); "
                    "see the gateway log and GET /admin/store"
                ),
                rid,
            )
        return json_response(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS))

    return handle


@reads_log
async def list_requests(request: web.Request, store: Store) -> Any:
    status_raw = text_param(request, "status")
    status: int | str | None = status_raw
    if status_raw is not None and status_raw.isdigit():
        status = int(status_raw)
    rows, cursor = await store.list_requests(
        model=text_param(request, "model"),
        deployment=text_param(request, "deployment"),
        tenant=text_param(request, "tenant"),
        status=status,
        error_class=text_param(request, "error_class"),
        q=text_param(request, "q"),
        since=time_param(request, "since"),
        until=time_param(request, "until"),
        limit=int_param(request, "limit", 50, 1, 1000),
        before=text_param(request, "before"),
        run_id=text_param(request, "run_id"),
    )
    return {"object": "list", "data": rows, "next_cursor": cursor}


@reads_log
async def get_request(request: web.Request, store: Store) -> Any:
    rid = request.match_info["request_id"]
    found = await store.get_request(rid)
    if found is None:
        raise NotFound(f"no request {rid[:80]!r} in the request log", param="request_id")
    return found


@reads_log
async def get_trace(request: web.Request, store: Store) -> Any:
    trace_id = request.match_info["trace_id"]
    rows = await store.trace(trace_id)
    if not rows:
        raise NotFound(
            f"no request of trace {trace_id[:80]!r} in the request log", param="trace_id"
        )
    return {"trace_id": trace_id, "data": rows}


@reads_log
async def spend(request: web.Request, store: Store) -> Any:
    group_by = request.query.get("group_by") or "model"
    if group_by not in GROUP_BY:
        raise BadRequest(f"group_by must be one of {', '.join(GROUP_BY)}", param="group_by")
    return await store.spend(
        cast(GroupBy, group_by),
        since=time_param(request, "since"),
        until=time_param(request, "until"),
    )


@reads_log
async def overview(request: web.Request, store: Store) -> Any:
    window_s = int_param(request, "window_s", 3600, 1, 90 * 86_400)
    bucket_s = int_param(request, "bucket_s", 60, 1, 90 * 86_400)
    return await store.overview(window_s, bucket_s)


@reads_log
async def stats(request: web.Request, store: Store) -> Any:
    return store.stats()


ROUTES = (
    Route("GET", "/admin/requests", list_requests),
    Route("GET", "/admin/requests/{request_id}", get_request),
    Route("GET", "/admin/traces/{trace_id}", get_trace),
    Route("GET", "/admin/spend", spend),
    Route("GET", "/admin/overview", overview),
    Route("GET", "/admin/store", stats),
)


def setup(app: web.Application, gateway: GatewayView) -> None:
    mount(app, ROUTES, gateway=gateway)
