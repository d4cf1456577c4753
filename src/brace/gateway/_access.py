"""Who may call which route: the route table and the one middleware that enforces it.

Every route module lists its routes as :class:`Route` rows and registers them with
:func:`mount`, which also installs :func:`access_control` on the application.  A route
declares its :class:`Access`; **a route that declares nothing is an admin route**, and
so is any route registered another way (``app.router.add_get(...)``): a new route is
protected unless someone writes down that it is not.

================  =============================================================
``PUBLIC``        anyone: ``/healthz``, ``/readyz``, the OpenAI-shaped 404/405
``CALLER``        an API key, when the gateway needs one (:func:`~._http.authenticate`:
                  401 in keys mode); the handler reads who with :func:`~._http.caller`
``ADMIN``         the master key (``server.admin_key``): 401 without it; with no master
                  key, only on a loopback address (403 elsewhere)
``DASHBOARD``     as ``ADMIN``, but a request without the key is served (the page holds
                  no data, and must load to ask for the key); 403 still refuses
``METRICS``       as ``ADMIN`` when a master key is set; open without one
================  =============================================================
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from ..errors import AdminDisabled, AdminKeyRequired, BraceError, RequestError
from ._http import CALLER, GATEWAY, LOOPBACK, GatewayView, authenticate, error_response, request_id

__all__ = [
    "Access",
    "Route",
    "access_control",
    "admin_denial",
    "admin_guard",
    "mount",
]

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(enum.Enum):
    """Who may call a route (the table in the module docstring)."""

    PUBLIC = "public"
    CALLER = "caller"
    ADMIN = "admin"
    DASHBOARD = "dashboard"
    METRICS = "metrics"


@dataclass(frozen=True, slots=True)
class Route:
    """One row of a route module's table: ``GET`` routes also answer ``HEAD``."""

    method: str
    path: str
    handler: RouteHandler
    access: Access = Access.ADMIN


ACCESS: web.AppKey[dict[web.AbstractResource, Access]] = web.AppKey("brace.access")
"""Each path's access, as :func:`mount` registered it."""


def mount(
    app: web.Application, routes: Iterable[Route], *, gateway: GatewayView | None = None
) -> None:
    """Register ``routes`` with their access on ``app`` (and ``gateway`` as ``app[GATEWAY]``),
    and install :func:`access_control` once."""
    if gateway is not None:
        if app.get(GATEWAY, gateway) is not gateway:
            raise RuntimeError("an application serves one gateway")
        app[GATEWAY] = gateway
    if ACCESS not in app:
        app[ACCESS] = {}
    if access_control not in app.middlewares:
        app.middlewares.append(access_control)
    table = app[ACCESS]
    for row in routes:
        if row.method == "GET":
            added = app.router.add_get(row.path, row.handler)
        else:
            added = app.router.add_route(row.method, row.path, row.handler)
        resource = added.resource
        assert resource is not None
        if table.setdefault(resource, row.access) is not row.access:
            raise RuntimeError(f"{row.path} is {table[resource].value}, not {row.access.value}")


def admin_denial(gateway: GatewayView, request: web.Request) -> RequestError | None:
    """Why ``request`` may not use the admin API (401 or 403), or ``None``."""
    server = gateway.config.server
    if not server.admin_key:
        # the address actually bound (Gateway.start may be given another than the config's)
        if getattr(gateway, "host", server.host) in LOOPBACK:
            return None
        return AdminDisabled(
            "the admin API is off on a non-loopback address without server.admin_key; "
            "set server.admin_key: ${BRACE_ADMIN_KEY}"
        )
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {server.admin_key.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return AdminKeyRequired("admin routes need Authorization: Bearer <server.admin_key>")
    return None


def admin_guard(gateway: GatewayView) -> Callable[[web.Request], web.Response | None]:
    """:func:`admin_denial` as a check for apps that do not use :func:`mount` (test
    fakes): ``None`` to proceed, or the OpenAI-shaped 401/403 to return."""

    def check(request: web.Request) -> web.Response | None:
        denied = admin_denial(gateway, request)
        return None if denied is None else error_response(denied, request_id(request))

    return check


@web.middleware
async def access_control(request: web.Request, handler: RouteHandler) -> web.StreamResponse:
    """The one place a route's access is checked, before its handler runs."""
    match = request.match_info
    resource = match.route.resource
    if match.http_exception is not None or resource is None:
        return await handler(request)  # no route: aiohttp's own 404/405
    table = request.app.get(ACCESS)
    access = table.get(resource, Access.ADMIN) if table is not None else Access.ADMIN
    if access is Access.PUBLIC:
        return await handler(request)
    gateway = request.app[GATEWAY]
    if access is Access.CALLER:
        try:
            request[CALLER] = authenticate(gateway, request)
        except BraceError as exc:
            return error_response(exc, request_id(request))
        return await handler(request)
    if access is Access.METRICS and gateway.config.server.admin_key is None:
        return await handler(request)
    denied = admin_denial(gateway, request)
    if denied is not None and not (
        access is Access.DASHBOARD and isinstance(denied, AdminKeyRequired)
    ):
        return error_response(denied, request_id(request))
    return await handler(request)
