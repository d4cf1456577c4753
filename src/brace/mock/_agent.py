"""Playing an agent's model: tool-call turns, then a final answer, with no state kept.

The turn a conversation is in is read from its history: every assistant message that already
carries tool calls is a finished turn. While fewer than ``turns`` are finished and the request
declares tools (and does not say ``tool_choice: none``), the answer is ``parallel`` tool calls;
after that it is the ordinary text answer. The tools called cycle through the declared ones in
order (or through ``tools``, if some of those are declared), across calls and turns.

Ids and arguments are derived from a hash of the seed, the message history and the call's
position, so the same request always gets the same calls (streamed or not) and every turn of a
conversation gets new ids. Arguments fill the required properties of a simple object schema
(strings, numbers, integers, booleans, enums, consts) with values from that hash; any other
schema gets ``{}``. Every size is bounded.

Without agent turns (``turns=None``, the default) the wires keep the plain mock's answer:
:func:`one_call`, to the forced or first tool, unless the last message is a tool result.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from brace.mock._schema import generate_from_schema

__all__ = [
    "MAX_PARALLEL",
    "MAX_TOOLS",
    "MAX_TURNS",
    "Agent",
    "BadAgentHeader",
    "ToolCall",
    "one_call",
    "plan_calls",
    "request_agent",
    "tool_arguments",
    "tool_names",
]

MAX_TURNS: Final = 1000
MAX_PARALLEL: Final = 64
MAX_TOOLS: Final = 64
"""At most this many names in ``agent_tools``."""
MAX_NAME: Final = 128
_MAX_PROPERTIES: Final = 64
_MAX_STRING: Final = 256
_SPREAD: Final = 100
"""Width of the range numbers are drawn from when a schema gives one bound or none."""
_MAX_INT: Final = 2**53
"""Integers stay within what a JSON double holds exactly."""
_SEPARATORS: Final = re.compile(r"[,|]")


@dataclass(frozen=True, slots=True)
class Agent:
    """The agent options in force for one request; ``turns=None`` is off."""

    turns: int | None = None
    parallel: int = 1
    tools: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call to answer with: ``arguments`` is ``value`` as JSON text."""

    id: str
    name: str
    arguments: str
    value: Any


class BadAgentHeader(ValueError):
    """An ``x-mock-agent-*`` header that cannot be used; ``header`` names it."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(message)
        self.header = header


def tool_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Names from ``"a,b"``, ``"a|b"`` (the form a scenario can hold) or a sequence.

    Raises ``ValueError`` beyond ``MAX_TOOLS`` names or for a name longer than ``MAX_NAME``.
    """
    raw = _SEPARATORS.split(value) if isinstance(value, str) else value
    names = tuple(name.strip() for name in raw if isinstance(name, str) and name.strip())
    if len(names) > MAX_TOOLS or any(len(name) > MAX_NAME for name in names):
        raise ValueError(f"at most {MAX_TOOLS} tool names of at most {MAX_NAME} characters")
    return names


def _header_int(headers: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadAgentHeader(name, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadAgentHeader(name, f"{name} must be within {low}..{high}, got {value}")
    return value


def request_agent(agent: Agent, headers: Mapping[str, str]) -> Agent:
    """``agent`` with the request's ``x-mock-agent-turns|parallel|tools`` headers applied."""
    turns = _header_int(headers, "x-mock-agent-turns", 0, MAX_TURNS)
    parallel = _header_int(headers, "x-mock-agent-parallel", 1, MAX_PARALLEL)
    raw_tools = headers.get("x-mock-agent-tools")
    if turns is None and parallel is None and raw_tools is None:
        return agent
    tools = agent.tools
    if raw_tools is not None:
        try:
            tools = tool_names(raw_tools)
        except ValueError as exc:
            raise BadAgentHeader("x-mock-agent-tools", f"x-mock-agent-tools: {exc}") from None
    return Agent(
        turns=agent.turns if turns is None else turns,
        parallel=agent.parallel if parallel is None else parallel,
        tools=tools,
    )


def one_call(ident: str, tool: tuple[str, Any]) -> list[ToolCall]:
    """The one call the mock makes without agent turns: ``tool`` is (name, schema)."""
    value = generate_from_schema(tool[1])
    return [ToolCall(ident, tool[0], orjson.dumps(value).decode(), value)]


def plan_calls(
    agent: Agent,
    declared: Sequence[tuple[str, Any]],
    *,
    done: int,
    forced: str | None,
    parallel: bool,
    seed: int | None,
    history: Any,
    prefix: str,
) -> list[ToolCall] | None:
    """The calls of the next turn, or None once ``done`` turns reach ``agent.turns``.

    ``declared`` holds (name, parameters schema) in request order; ``forced`` is a tool the
    request's ``tool_choice`` names; ``parallel=False`` (the request forbids parallel calls)
    makes one call per turn; ``prefix`` starts every id (``call_``, ``toolu_``).
    """
    if agent.turns is None or done >= agent.turns or not declared:
        return None
    schemas: dict[str, Any] = {}
    for name, schema in declared:
        schemas.setdefault(name, schema)
    if forced is not None and forced in schemas:
        order = [forced]
    else:
        order = [name for name in agent.tools if name in schemas] or list(schemas)
    count = agent.parallel if parallel else 1
    root = hashlib.blake2b(b"%d\0" % (seed or 0) + orjson.dumps(history), digest_size=16).digest()
    calls = []
    for index in range(count):
        name = order[(done * count + index) % len(order)]
        key = hashlib.blake2b(root + index.to_bytes(2, "big"), digest_size=16).digest()
        value = tool_arguments(schemas[name], key)
        calls.append(ToolCall(prefix + key.hex()[:24], name, orjson.dumps(value).decode(), value))
    return calls


def _draw(key: bytes, name: str) -> int:
    return int.from_bytes(hashlib.blake2b(key + name.encode(), digest_size=8).digest(), "big")


def tool_arguments(schema: Any, key: bytes) -> dict[str, Any]:
    """Values for the required properties of a simple object schema, else ``{}``."""
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        return {}
    properties = schema.get("properties")
    required = schema.get("required")
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        return {}
    if len(required) > _MAX_PROPERTIES:
        return {}
    result: dict[str, Any] = {}
    for name in required:
        if not isinstance(name, str):
            return {}
        value = _simple(properties.get(name), name, _draw(key, name))
        if value is _COMPLEX:
            return {}
        result[name] = value
    return result


_COMPLEX: Final = object()


def _simple(schema: Any, name: str, draw: int) -> Any:
    if not isinstance(schema, Mapping):
        return _COMPLEX
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[draw % len(enum)]
    kind = schema.get("type")
    if kind == "boolean":
        return bool(draw & 1)
    if kind == "string":
        return _string(schema, name, draw)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer", draw)
    if kind == "null":
        return None
    return _COMPLEX


def _string(schema: Mapping[str, Any], name: str, draw: int) -> Any:
    if "pattern" in schema or "format" in schema:
        return _COMPLEX
    low, high = schema.get("minLength", 0), schema.get("maxLength", _MAX_STRING)
    if not isinstance(low, int) or not isinstance(high, int) or not low <= high:
        return _COMPLEX
    if low > _MAX_STRING:
        return _COMPLEX
    text = f"{name[:32]}-{draw & 0xFFFFFF:06x}"
    return (text + "x" * max(0, low - len(text)))[:high]


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str) -> tuple[float, bool] | None:
    for key, closed in ((inclusive, True), (exclusive, False)):
        value = schema.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), closed
    return None


def _number(schema: Mapping[str, Any], integer: bool, draw: int) -> Any:
    if "multipleOf" in schema:
        return _COMPLEX
    low = _bound(schema, "minimum", "exclusiveMinimum")
    high = _bound(schema, "maximum", "exclusiveMaximum")
    if low is None and high is None:
        low = (0.0, True)
    if low is None:
        assert high is not None
        low = (high[0] - _SPREAD, True)
    if high is None:
        high = (low[0] + _SPREAD, True)
    (lo, lo_closed), (hi, hi_closed) = low, high
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _COMPLEX
    if integer:
        first = math.ceil(lo) if lo_closed else math.floor(lo) + 1
        last = math.floor(hi) if hi_closed else math.ceil(hi) - 1
        if first > last or abs(first) > _MAX_INT:
            return _COMPLEX
        return first + draw % min(last - first + 1, _SPREAD + 1)
    if lo > hi:
        return _COMPLEX
    value = lo + (hi - lo) * ((draw % 1000) + 1) / 1002  # strictly inside, unless rounded
    if lo < value < hi:
        return value
    if lo == hi:
        return lo if lo_closed and hi_closed else _COMPLEX
    return lo if lo_closed else hi if hi_closed else _COMPLEX
