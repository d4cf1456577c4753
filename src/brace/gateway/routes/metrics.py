"""``GET /metrics``: the gateway's Prometheus metrics, in the text exposition format.

When ``server.admin_key`` is set the route needs ``Authorization: Bearer <admin_key>``
(the same check as the admin API; Prometheus sends it with ``authorization:`` /
``bearer_token`` in its scrape config).  Without an admin key the route is open: it
shows counts, latencies and limits by model group and deployment id, never a secret,
a request id, a tenant or any content.  What each series means: ``docs/metrics.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .admin import admin_guard

if TYPE_CHECKING:
    from ..app import Gateway

__all__ = ["setup"]


def setup(app: web.Application, gateway: Gateway) -> None:
    check = admin_guard(gateway) if gateway.config.server.admin_key is not None else None

    async def metrics(request: web.Request) -> web.StreamResponse:
        if check is not None:
            denied = check(request)
            if denied is not None:
                return denied
        body, content_type = gateway.telemetry.metrics.render()
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    app.router.add_get("/metrics", metrics)
