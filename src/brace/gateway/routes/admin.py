"""Admin API: ``GET /admin/deployments`` — health of every deployment by group
(breaker state, in-flight attempts, EWMA latency and error rate, retry budget).

Like every admin route it is guarded by :func:`~brace.gateway._access.access_control`:
with ``server.admin_key`` set it requires ``Authorization: Bearer <admin_key>``; without
it the admin API answers only on a loopback-bound gateway (it never shows a secret
either way).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from .._access import Route, mount
from .._http import GATEWAY, GatewayView, json_response

__all__ = ["ROUTES", "deployments", "setup"]


async def deployments(request: web.Request) -> web.StreamResponse:
    engine = request.app[GATEWAY].engine
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


ROUTES = (Route("GET", "/admin/deployments", deployments),)


def setup(app: web.Application, gateway: GatewayView) -> None:
    mount(app, ROUTES, gateway=gateway)
