"""The checks a request body passes before it enters the stack, whoever sends it.

The gateway (``POST /v1/chat/completions``, ``POST /v1/embeddings``) and the in-process
:class:`~brace.client.AsyncClient` call the same functions, so one bad body gets the same
:class:`~brace.errors.BadRequest` (message and ``param``) either way.  Only the few fields
Brace itself needs are checked: the body is forwarded as it is, never wrapped in a
validation model.

Ground floor: imports only :mod:`brace.errors` and :mod:`brace.stack`.
"""

from __future__ import annotations

from typing import Any

from .errors import BadRequest
from .stack import Operation

__all__ = ["check_body", "check_chat_body", "check_embeddings_body"]


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", param="model")
    return model


def check_chat_body(body: dict[str, Any]) -> tuple[str, bool]:
    """The few checks Brace needs before forwarding a chat body: (model, stream)."""
    model = _model(body)
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


def check_embeddings_body(body: dict[str, Any]) -> str:
    """The checks of an embeddings body: its model."""
    model = _model(body)
    inp = body.get("input")
    if not isinstance(inp, str | list) or (isinstance(inp, list) and not inp):
        raise BadRequest(
            "'input' is required: a string, or a non-empty array of strings or token arrays",
            param="input",
        )
    return model


def check_body(operation: Operation, body: dict[str, Any]) -> tuple[str, bool]:
    """:func:`check_chat_body` or :func:`check_embeddings_body`: (model, stream)."""
    if operation == "chat":
        return check_chat_body(body)
    return check_embeddings_body(body), False
