"""A Messages API answer as an OpenAI ``chat.completion`` (:func:`to_openai`)."""

from __future__ import annotations

from typing import Any

import orjson

from ._shared import JSON_TOOL_NAME, finish_reason, malformed, openai_usage

__all__ = ["to_openai"]


def to_openai(
    msg: Any,
    *,
    created: int,
    json_mode: bool = False,
    model: str | None = None,
    deployment: str = "anthropic",
) -> dict[str, Any]:
    """A Messages API answer as an OpenAI ``chat.completion`` (raises
    :class:`~brace.errors.MalformedResponse` if ``msg`` is not a message)."""
    content = msg.get("content") if isinstance(msg, dict) else None
    if not isinstance(content, list) or not isinstance(msg.get("id"), str):
        raise malformed(
            deployment, "the upstream answered 200 with a body that is not an Anthropic message"
        )
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    json_text: str | None = None
    for block in content:
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text":
            texts.append(str(block.get("text") or ""))
        elif btype == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            if json_mode and block.get("name") == JSON_TOOL_NAME:
                json_text = args
                continue
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": args},
                }
            )
        # thinking, redacted_thinking and server-tool blocks have no OpenAI equivalent
    text = json_text if json_text is not None else "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if (text or not calls) else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    usage = msg.get("usage")
    return {
        "id": msg["id"],
        "object": "chat.completion",
        "created": created,
        "model": msg.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(msg.get("stop_reason"), tool_calls=bool(calls)),
            }
        ],
        "usage": openai_usage(usage if isinstance(usage, dict) else {}),
    }
