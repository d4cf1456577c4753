"""What the Messages API translators share: the JSON-mode tool, stop reasons, usage
and the two error shapes (the caller's :class:`~brace.errors.BadRequest`, the
upstream's :class:`~brace.errors.MalformedResponse`)."""

from __future__ import annotations

from typing import Any, Final

from ...errors import BadRequest, MalformedResponse

__all__ = ["JSON_TOOL_NAME", "bad", "finish_reason", "malformed", "openai_usage"]

JSON_TOOL_NAME: Final = "json_response"
"""The forced tool that emulates ``response_format`` (the Messages API has none)."""

_STOP_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def bad(message: str, param: str) -> BadRequest:
    """A request that cannot be translated: ``message`` says what to change, ``param``
    names the field."""
    return BadRequest(message, param=param)


def finish_reason(stop_reason: Any, *, tool_calls: bool) -> str:
    """An Anthropic ``stop_reason`` as an OpenAI ``finish_reason``.

    ``tool_use`` becomes ``stop`` when the only tool used was the JSON emulation.
    """
    if stop_reason == "tool_use" and not tool_calls:
        return "stop"
    return _STOP_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) else 0


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Messages API usage as OpenAI's: cache reads and writes count as prompt tokens,
    cache reads are also ``cached_tokens``."""
    cached = _count(usage, "cache_read_input_tokens")
    prompt = _count(usage, "input_tokens") + cached + _count(usage, "cache_creation_input_tokens")
    completion = _count(usage, "output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def malformed(deployment: str, what: str) -> MalformedResponse:
    return MalformedResponse(f"deployment {deployment}: {what}", deployment=deployment)
