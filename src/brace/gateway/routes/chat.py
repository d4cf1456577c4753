"""``POST /v1/chat/completions``: parse just enough, call the group's stack, render."""

from __future__ import annotations

from aiohttp import web

from .._access import Access, Route, mount
from .._http import GatewayView, serve_operation

__all__ = ["ROUTES", "chat_completions", "setup"]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await serve_operation(request, "chat")


ROUTES = (
    Route("POST", "/v1/chat/completions", chat_completions, Access.CALLER),
    Route("POST", "/chat/completions", chat_completions, Access.CALLER),
)


def setup(app: web.Application, gateway: GatewayView) -> None:
    mount(app, ROUTES, gateway=gateway)
