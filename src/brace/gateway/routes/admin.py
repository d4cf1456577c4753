"""Admin API: ``GET /admin/deployments`` — health of every deployment by group
(breaker state, in-flight attempts, EWMA latency and error rate, retry budget).

When ``server.admin_key`` is set, every admin route requires
``Authorization: Bearer <admin_key>``; without it the admin API answers only on a
loopback-bound gateway (it never shows a secret either way).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from ...errors import RequestError
from .._http import LOOPBACK, error_response, json_response, request_id

if TYPE_CHECKING:
    from ..app import Gateway

__all__ = ["admin_guard", "setup"]


class _Unauthorized(RequestError):
    status = 401
    type = "authentication_error"
    code = "invalid_admin_key"


class _Forbidden(RequestError):
    status = 403
    type = "permission_error"
    code = "admin_disabled"


def admin_guard(gateway: Gateway) -> Callable[[web.Request], web.Response | None]:
    """The check every admin route (and ``/ui``) runs first: ``None`` to proceed, or the
    OpenAI-shaped 401/403 to return."""
    server = gateway.config.server
    key = server.admin_key.get_secret_value() if server.admin_key else None

    def check(request: web.Request) -> web.Response | None:
        if key is None:
            # the address actually bound (Gateway.start may be given another than the config's)
            if getattr(gateway, "host", server.host) in LOOPBACK:
                return None
            return error_response(
                _Forbidden(
                    "the admin API is off on a non-loopback address without server.admin_key; "
                    "set server.admin_key: ${BRACE_ADMIN_KEY}"
                ),
                request_id(request),
            )
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            return error_response(
                _Unauthorized("admin routes need Authorization: Bearer <server.admin_key>"),
                request_id(request),
            )
        return None

    return check


def setup(app: web.Application, gateway: Gateway) -> None:
    check = admin_guard(gateway)

    async def deployments(request: web.Request) -> web.StreamResponse:
        denied = check(request)
        if denied is not None:
            return denied
        engine = gateway.engine
        limiter = engine.limiter.describe() if engine.limiter is not None else None
        return json_response(
            orjson.dumps(
                {
                    "groups": engine.deployments(),
                    "admission": engine.admission(),
                    "limiter": limiter,
                }
            )
        )

    app.router.add_get("/admin/deployments", deployments)
