"""``GET /v1/models``, ``/healthz``, ``/readyz`` and the OpenAI-shaped 404/405 fallback."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from ...errors import BraceError, ModelNotFound, RequestError
from ...keys import VirtualKey
from .._http import authenticate, error_response, json_response, request_id

if TYPE_CHECKING:
    from ..app import Gateway

__all__ = ["setup", "setup_fallback"]


class _NotFound(RequestError):
    status = 404
    code = "not_found"


class _MethodNotAllowed(RequestError):
    status = 405
    code = "method_not_allowed"


def setup(app: web.Application, gateway: Gateway) -> None:
    created = int(time.time())
    listing = orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": "brace"}
                for name in gateway.engine.model_names
            ],
        }
    )

    def entry(name: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": created, "owned_by": "brace"}

    async def models(request: web.Request) -> web.StreamResponse:
        try:
            caller = authenticate(gateway, request)
        except BraceError as exc:
            return error_response(exc, request_id(request))
        if isinstance(caller, VirtualKey) and caller.models is not None:
            names = [n for n in gateway.engine.model_names if caller.allows(n)]
            return json_response(
                orjson.dumps({"object": "list", "data": [entry(n) for n in names]})
            )
        return json_response(listing)

    async def model(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            caller = authenticate(gateway, request)
            gateway.engine.handler(name)
            if isinstance(caller, VirtualKey) and not caller.allows(name):
                raise ModelNotFound(f"model {name!r} is not available to this key", param="model")
        except BraceError as exc:
            return error_response(exc, request_id(request))
        return json_response(
            orjson.dumps({"id": name, "object": "model", "created": created, "owned_by": "brace"})
        )

    async def healthz(request: web.Request) -> web.StreamResponse:
        return json_response(b'{"status":"ok"}')

    async def readyz(request: web.Request) -> web.StreamResponse:
        if gateway.ready:
            return json_response(b'{"status":"ready"}')
        state = "shutting down" if gateway.stopping else "starting"
        return json_response(orjson.dumps({"status": state}), status=503)

    app.router.add_get("/v1/models", models)
    app.router.add_get("/models", models)
    app.router.add_get("/v1/models/{name:.+}", model)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def setup_fallback(app: web.Application) -> None:
    """Registered last: unknown paths get an OpenAI-shaped 404, wrong methods 405."""

    async def fallback(request: web.Request) -> web.StreamResponse:
        rid = request_id(request)
        for resource in app.router.resources():
            if resource.canonical == "/{tail}":
                continue
            match = await resource.resolve(request)
            if match[1]:  # the path exists with other methods
                allowed = ", ".join(sorted(match[1]))
                resp = error_response(
                    _MethodNotAllowed(
                        f"{request.method} is not allowed on {request.path}; use {allowed}"
                    ),
                    rid,
                )
                resp.headers["Allow"] = allowed
                return resp
        return error_response(_NotFound(f"no route for {request.method} {request.path}"), rid)

    app.router.add_route("*", "/{tail:.*}", fallback)
