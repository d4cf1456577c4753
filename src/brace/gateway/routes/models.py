"""``GET /v1/models``, ``/healthz``, ``/readyz`` and the OpenAI-shaped 404/405 fallback."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from aiohttp import web

from ...errors import BraceError, MethodNotAllowed, ModelNotFound, NotFound
from ...keys import VirtualKey
from .._access import Access, Route, mount
from .._http import GATEWAY, GatewayView, caller, error_response, json_response, request_id

__all__ = [
    "FALLBACK",
    "ROUTES",
    "fallback",
    "healthz",
    "model",
    "models",
    "readyz",
    "setup",
    "setup_fallback",
]


@dataclass(frozen=True, slots=True)
class _Listing:
    """The model list, built once at setup: ``created`` and the whole answer's bytes."""

    created: int
    body: bytes

    def entry(self, name: str) -> dict[str, object]:
        return _entry(name, self.created)


def _entry(name: str, created: int) -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": "brace"}


_LISTING: web.AppKey[_Listing] = web.AppKey("brace.models.listing")


async def models(request: web.Request) -> web.StreamResponse:
    who = caller(request)
    listing = request.app[_LISTING]
    if isinstance(who, VirtualKey) and who.models is not None:
        names = [n for n in request.app[GATEWAY].engine.model_names if who.allows(n)]
        return json_response(
            orjson.dumps({"object": "list", "data": [listing.entry(n) for n in names]})
        )
    return json_response(listing.body)


async def model(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    try:
        request.app[GATEWAY].engine.handler(name)
        who = caller(request)
        if isinstance(who, VirtualKey) and not who.allows(name):
            raise ModelNotFound(f"model {name!r} is not available to this key", param="model")
    except BraceError as exc:
        return error_response(exc, request_id(request))
    return json_response(orjson.dumps(request.app[_LISTING].entry(name)))


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response(b'{"status":"ok"}')


async def readyz(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    if gateway.ready:
        return json_response(b'{"status":"ready"}')
    state = "shutting down" if gateway.stopping else "starting"
    return json_response(orjson.dumps({"status": state}), status=503)


async def fallback(request: web.Request) -> web.StreamResponse:
    """Unknown paths get an OpenAI-shaped 404, wrong methods 405."""
    rid = request_id(request)
    for resource in request.app.router.resources():
        if resource.canonical == "/{tail}":
            continue
        match = await resource.resolve(request)
        if match[1]:  # the path exists with other methods
            allowed = ", ".join(sorted(match[1]))
            return error_response(
                MethodNotAllowed(
                    f"{request.method} is not allowed on {request.path}; use {allowed}",
                    allow=allowed,
                ),
                rid,
            )
    return error_response(NotFound(f"no route for {request.method} {request.path}"), rid)


ROUTES = (
    Route("GET", "/v1/models", models, Access.CALLER),
    Route("GET", "/models", models, Access.CALLER),
    Route("GET", "/v1/models/{name:.+}", model, Access.CALLER),
    Route("GET", "/healthz", healthz, Access.PUBLIC),
    Route("GET", "/readyz", readyz, Access.PUBLIC),
)
FALLBACK = (Route("*", "/{tail:.*}", fallback, Access.PUBLIC),)


def setup(app: web.Application, gateway: GatewayView) -> None:
    created = int(time.time())
    data = [_entry(name, created) for name in gateway.engine.model_names]
    app[_LISTING] = _Listing(created, orjson.dumps({"object": "list", "data": data}))
    mount(app, ROUTES, gateway=gateway)


def setup_fallback(app: web.Application) -> None:
    """Registered last: unknown paths get an OpenAI-shaped 404, wrong methods 405."""
    mount(app, FALLBACK)
