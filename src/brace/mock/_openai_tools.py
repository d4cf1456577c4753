"""OpenAI tool calls: which a chat request gets, and how they are written.

Without agent turns the mock answers the plain way: one call to the forced or first tool,
unless the last message is a tool result. With them, :mod:`brace.mock._agent` plans the turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from brace.mock._agent import Agent, ToolCall, one_call, plan_calls
from brace.mock._text import split_even

__all__ = ["tool_calls", "tool_groups", "tool_message"]


def _functions(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    return [
        t["function"]
        for t in tools
        if isinstance(t, dict)
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
    ]


def _forced(choice: Any) -> str | None:
    forced = choice.get("function") if isinstance(choice, dict) else None
    name = forced.get("name") if isinstance(forced, dict) else None
    return name if isinstance(name, str) else None


def _pick_tool(body: dict[str, Any], messages: list[Any]) -> tuple[str, Any] | None:
    """(name, parameters schema) of the one tool to call, or None for a text answer."""
    functions = _functions(body)
    last = messages[-1]
    if not functions or body.get("tool_choice") == "none":
        return None
    if isinstance(last, dict) and last.get("role") == "tool":
        return None
    name = _forced(body.get("tool_choice"))
    chosen = next((f for f in functions if f["name"] == name), functions[0])
    return chosen["name"], chosen.get("parameters") or {"type": "object", "properties": {}}


def tool_calls(
    body: dict[str, Any],
    messages: list[Any],
    agent: Agent,
    seed: int | None,
    legacy_id: Callable[[], str],
) -> list[ToolCall] | None:
    """The agent's next turn when agent turns are on, else the one call (or None)."""
    if agent.turns is None:
        tool = _pick_tool(body, messages)
        return None if tool is None else one_call(legacy_id(), tool)
    if body.get("tool_choice") == "none":
        return None
    return plan_calls(
        agent,
        [(f["name"], f.get("parameters")) for f in _functions(body)],
        done=sum(
            1
            for m in messages
            if isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls")
        ),
        forced=_forced(body.get("tool_choice")),
        parallel=body.get("parallel_tool_calls") is not False,
        seed=seed,
        history=messages,
        prefix="call_",
    )


def tool_message(calls: list[ToolCall]) -> dict[str, Any]:
    """The assistant message of a JSON answer that calls tools."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
        "refusal": None,
    }


def tool_groups(head: bytes, chunks: int, calls: list[ToolCall]) -> list[bytes]:
    """Each call: a delta with its index, id and name, then its arguments in pieces."""
    per = max(1, chunks // len(calls))
    suffix = b'}}]},"logprobs":null,"finish_reason":null}]}\n\n'
    groups: list[bytes] = []
    for index, call in enumerate(calls):
        start = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        first = (
            head
            + b'"choices":[{"index":0,"delta":{'
            + (b'"role":"assistant","content":null,' if index == 0 else b"")
            + b'"tool_calls":['
            + orjson.dumps(start)
            + b']},"logprobs":null,"finish_reason":null}]}\n\n'
        )
        prefix = head + (
            b'"choices":[{"index":0,"delta":{"tool_calls":[{"index":%d,"function":{"arguments":'
            % index
        )
        pieces = [prefix + orjson.dumps(p) + suffix for p in split_even(call.arguments, per)]
        pieces[0] = first + pieces[0]
        groups += pieces
    return groups
