"""An OpenAI chat-completions request body as a Messages API body (:func:`to_anthropic`)."""

from __future__ import annotations

from typing import Any, Final

from ._content import translate_messages
from ._shared import JSON_TOOL_NAME, bad

__all__ = ["DEFAULT_MAX_TOKENS", "DROPPED_FIELDS", "to_anthropic"]

DEFAULT_MAX_TOKENS: Final = 4096
"""Sent as ``max_tokens`` when the caller gives neither ``max_tokens`` nor
``max_completion_tokens`` (the Messages API requires it)."""

DROPPED_FIELDS: Final = frozenset(
    {
        "audio",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "metadata",
        "modalities",
        "prediction",
        "presence_penalty",
        "reasoning_effort",
        "seed",
        "service_tier",
        "store",
        "top_logprobs",
        "web_search_options",
    }
)
"""OpenAI-only request fields the Messages API has no equivalent for: not sent.
(Any other unknown field is not sent either; these are the documented ones.)"""

_TOOL_CHOICES: Final[dict[str, str]] = {"auto": "auto", "none": "none", "required": "any"}
_EMPTY_SCHEMA: Final[dict[str, Any]] = {"type": "object", "properties": {}}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise bad("tools must be a list", "tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or tool.get("type", "function") != "function":
            raise bad(
                "only function tools ({'type': 'function', 'function': {...}}) can be "
                "translated for the Anthropic API",
                f"tools[{i}]",
            )
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise bad("the tool has no function name", f"tools[{i}].function.name")
        if name == JSON_TOOL_NAME:
            raise bad(
                f"the tool name {JSON_TOOL_NAME!r} is reserved by Brace's Anthropic adapter "
                "(it emulates response_format); rename the tool",
                f"tools[{i}].function.name",
            )
        schema = fn.get("parameters")
        entry: dict[str, Any] = {"name": name, "input_schema": schema or _EMPTY_SCHEMA}
        description = fn.get("description")
        if description:
            entry["description"] = description
        out.append(entry)
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return {"type": _TOOL_CHOICES[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise bad(
        "tool_choice must be 'auto', 'none', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}",
        "tool_choice",
    )


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    """The forced tool emulating ``response_format``, or None for plain text."""
    if response_format is None:
        return None
    rtype = response_format.get("type") if isinstance(response_format, dict) else None
    if rtype == "text":
        return None
    if rtype == "json_object":
        return {
            "name": JSON_TOOL_NAME,
            "description": "Respond with your answer as a JSON object.",
            "input_schema": {"type": "object"},
        }
    if rtype == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise bad("response_format.json_schema must be an object", "response_format")
        schema = spec.get("schema") or {"type": "object"}
        if not isinstance(schema, dict):
            raise bad("json_schema.schema must be a JSON Schema object", "response_format")
        description = "Respond with your answer as JSON matching this schema"
        if isinstance(spec.get("name"), str):
            description += f" ({spec['name']})"
        if isinstance(spec.get("description"), str):
            description += f": {spec['description']}"
        return {"name": JSON_TOOL_NAME, "description": description, "input_schema": schema}
    raise bad(
        "response_format.type must be 'text', 'json_object' or 'json_schema'", "response_format"
    )


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(f"{key} must be a positive integer", key)
        return value
    return DEFAULT_MAX_TOKENS


def to_anthropic(body: dict[str, Any], *, model: str, stream: bool) -> tuple[dict[str, Any], bool]:
    """An OpenAI chat-completions body as a Messages API body.

    Returns ``(anthropic_body, json_mode)``; ``json_mode`` says that
    ``response_format`` is emulated with the :data:`JSON_TOOL_NAME` tool, whose
    input must be turned back into message content.  Raises
    :class:`~brace.errors.BadRequest` for what cannot be translated.
    """
    n = body.get("n")
    if n is not None and n != 1:
        raise bad("n > 1 is not supported by the Anthropic API; send n: 1 (or omit it)", "n")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise bad(
            "the legacy functions/function_call fields are not supported; use tools/tool_choice",
            "functions",
        )
    system, messages = translate_messages(body.get("messages"))
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": _max_tokens(body),
    }
    if system:
        if any("cache_control" in b for b in system):
            out["system"] = system
        else:
            out["system"] = "\n\n".join(b["text"] for b in system)
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list):
        if stop:
            out["stop_sequences"] = stop
    elif stop is not None:
        raise bad("stop must be a string or a list of strings", "stop")
    if stream:
        out["stream"] = True
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}

    tools = _tools(body["tools"]) if body.get("tools") else []
    json_tool = _json_tool(body.get("response_format"))
    choice_in = body.get("tool_choice")
    choice: dict[str, Any] | None = None
    if json_tool is not None:
        caller = _tool_choice(choice_in) if (tools and choice_in is not None) else None
        if caller is not None and caller["type"] == "tool":
            choice = caller  # the caller forces one of its own tools
        elif tools and (caller is None or caller["type"] != "none"):
            choice = {"type": "any"}  # call a tool of the caller's, or answer as JSON
        else:
            choice = {"type": "tool", "name": JSON_TOOL_NAME}
        tools.append(json_tool)
    elif tools and choice_in is not None:
        choice = _tool_choice(choice_in)
    if tools:
        out["tools"] = tools
        if body.get("parallel_tool_calls") is False:
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
        if choice is not None:
            out["tool_choice"] = choice
    return out, json_tool is not None
