"""``GET /metrics``: the gateway's Prometheus metrics, in the text exposition format.

When ``server.admin_key`` is set the route needs ``Authorization: Bearer <admin_key>``
(the same check as the admin API, ``Access.METRICS``; Prometheus sends it with
``authorization:`` / ``bearer_token`` in its scrape config).  Without an admin key the
route is open: it shows counts, latencies and limits by model group and deployment id,
never a secret, a request id, a tenant or any content.  What each series means:
``docs/metrics.md``.
"""

from __future__ import annotations

from aiohttp import web

from .._access import Access, Route, mount
from .._http import GATEWAY, GatewayView

__all__ = ["ROUTES", "metrics", "setup"]


async def metrics(request: web.Request) -> web.StreamResponse:
    body, content_type = request.app[GATEWAY].telemetry.metrics.render()
    return web.Response(
        body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
    )


ROUTES = (Route("GET", "/metrics", metrics, Access.METRICS),)


def setup(app: web.Application, gateway: GatewayView) -> None:
    mount(app, ROUTES, gateway=gateway)
