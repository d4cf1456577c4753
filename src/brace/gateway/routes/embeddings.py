"""``POST /v1/embeddings``."""

from __future__ import annotations

from aiohttp import web

from .._access import Access, Route, mount
from .._http import GatewayView, serve_operation

__all__ = ["ROUTES", "embeddings", "setup"]


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve_operation(request, "embeddings")


ROUTES = (
    Route("POST", "/v1/embeddings", embeddings, Access.CALLER),
    Route("POST", "/embeddings", embeddings, Access.CALLER),
)


def setup(app: web.Application, gateway: GatewayView) -> None:
    mount(app, ROUTES, gateway=gateway)
