"""``POST /v1/embeddings``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ...errors import BadRequest, BraceError
from ...stack import Request
from .._http import authenticate, dispatch, error_response, read_json, request_id

if TYPE_CHECKING:
    from ..app import Gateway

__all__ = ["setup"]


def setup(app: web.Application, gateway: Gateway) -> None:
    limit = gateway.config.server.max_body_bytes

    async def embeddings(request: web.Request) -> web.StreamResponse:
        rid = request_id(request)
        try:
            caller = authenticate(gateway, request)
            body = await read_json(request, limit)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise BadRequest(
                    "'model' is required and must be a non-empty string", param="model"
                )
            inp = body.get("input")
            if not isinstance(inp, str | list) or (isinstance(inp, list) and not inp):
                raise BadRequest(
                    "'input' is required: a string, or a non-empty array of strings or token arrays",
                    param="input",
                )
        except BraceError as exc:
            return error_response(exc, rid)
        return await dispatch(
            request, gateway, Request("embeddings", model, body, False, rid), caller
        )

    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/embeddings", embeddings)
