"""``POST /v1/chat/completions``: parse just enough, call the group's stack, render."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...errors import BadRequest, BraceError
from ...stack import Request
from .._http import authenticate, dispatch, error_response, read_json, request_id

if TYPE_CHECKING:
    from ..app import Gateway

__all__ = ["check_chat_body", "setup"]


def check_chat_body(body: dict[str, Any]) -> tuple[str, bool]:
    """The few checks Brace needs before forwarding: (model, stream)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(
            "'messages' is required and must be a non-empty array of message objects",
            param="messages",
        )
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        if not isinstance(msg.get("role"), str):
            raise BadRequest(
                f"messages[{i}].role is required (system, user, assistant or tool)",
                param=f"messages[{i}].role",
            )
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", param="stream")
    for field in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(field)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise BadRequest(f"'{field}' must be a positive integer", param=field)
    return model, stream


def setup(app: web.Application, gateway: Gateway) -> None:
    limit = gateway.config.server.max_body_bytes

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        rid = request_id(request)
        try:
            caller = authenticate(gateway, request)
            body = await read_json(request, limit)
            model, stream = check_chat_body(body)
        except BraceError as exc:
            return error_response(exc, rid)
        return await dispatch(request, gateway, Request("chat", model, body, stream, rid), caller)

    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
