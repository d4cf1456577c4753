"""Anthropic-compatible ``POST /v1/messages`` (JSON and the SSE event stream)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from brace.mock._agent import (
    Agent,
    BadAgentHeader,
    ToolCall,
    one_call,
    plan_calls,
    request_agent,
)
from brace.mock._core import Admitted, Core, MockRequest, Outcome
from brace.mock._dialects import JSON, AnthropicDialect
from brace.mock._text import (
    anthropic_prompt_text,
    estimate_tokens,
    fit_reply,
    reply_text,
    split_even,
)
from brace.mock._wire import PartialBody, Reply, SseStream

__all__ = ["AnthropicRoutes"]

SSE_HEADERS: Final = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_BROKEN: Final = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"ty\n\n'
)
_PING: Final = b'event: ping\ndata: {"type":"ping"}\n\n'
_STOP: Final = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _event(name: bytes, data: Any) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _after_tool_result(messages: list[Any]) -> bool:
    last = messages[-1]
    if not isinstance(last, dict) or not isinstance(last.get("content"), list):
        return False
    return any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"])


def _named(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    return [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _pick_tool(body: dict[str, Any], messages: list[Any]) -> tuple[str, Any] | None:
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else "auto"
    named = _named(body)
    if not named or kind == "none" or _after_tool_result(messages):
        return None
    chosen = named[0]
    if kind == "tool" and isinstance(choice, dict):
        chosen = next((t for t in named if t["name"] == choice.get("name")), chosen)
    return chosen["name"], chosen.get("input_schema") or {"type": "object", "properties": {}}


def _calls_tools(message: Any) -> bool:
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return False
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_use" for b in content
    )


def _tool_calls(
    body: dict[str, Any],
    messages: list[Any],
    agent: Agent,
    seed: int | None,
    new_id: Callable[[], str],
) -> list[ToolCall] | None:
    """The agent's next turn when agent turns are on, else the one call (or None)."""
    if agent.turns is None:
        tool = _pick_tool(body, messages)
        return None if tool is None else one_call("toolu_" + new_id(), tool)
    choice = body.get("tool_choice")
    choice = choice if isinstance(choice, dict) else {}
    if choice.get("type") == "none":
        return None
    forced = choice.get("name") if choice.get("type") == "tool" else None
    return plan_calls(
        agent,
        [(t["name"], t.get("input_schema")) for t in _named(body)],
        done=sum(1 for m in messages if _calls_tools(m)),
        forced=forced if isinstance(forced, str) else None,
        parallel=choice.get("disable_parallel_tool_use") is not True,
        seed=seed,
        history=messages,
        prefix="toolu_",
    )


class AnthropicRoutes:
    """Handler for the Anthropic messages wire format."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self.dialect = AnthropicDialect(core.wall)

    async def messages(self, request: MockRequest) -> Outcome:
        core, dialect = self._core, self.dialect
        core.stats.request("/v1/messages")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return dialect.bad_request("Invalid JSON in request body.")
        if not isinstance(body, dict):
            return dialect.bad_request("The request body must be a JSON object.")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return dialect.bad_request("max_tokens: Field required (integer >= 1)")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return dialect.bad_request("messages: Field required (non-empty array)")
        settings = core.live.current()
        try:
            agent = request_agent(settings.agent, request.headers)
        except BadAgentHeader as exc:
            return dialect.bad_request(str(exc), exc.header)
        chars, last_user = anthropic_prompt_text(body.get("system"), messages)
        input_tokens = estimate_tokens(chars)
        gate = await core.admit(request, settings, input_tokens + max_tokens, dialect)
        if not isinstance(gate, Admitted):
            return gate
        model = body.get("model")
        model = model if isinstance(model, str) else settings.config.models[-1]
        ident = "msg_" + core.new_id()
        calls = _tool_calls(body, messages, agent, settings.config.seed, core.new_id)
        blocks: list[dict[str, Any]]
        if calls is not None:
            blocks = [{"type": "tool_use", "id": c.id, "name": c.name} for c in calls]
            payloads = [c.arguments for c in calls]
            output_tokens = estimate_tokens(sum(len(c.name) + len(c.arguments) for c in calls))
            stop_reason = "tool_use"
        else:
            text, cut = fit_reply(reply_text(last_user, settings.reply_tokens), max_tokens)
            blocks, payloads = [{"type": "text", "text": text}], [text]
            output_tokens = estimate_tokens(len(text))
            stop_reason = "max_tokens" if cut else "end_turn"
        core.stats.tokens_in += input_tokens
        core.stats.tokens_out += output_tokens
        message: dict[str, Any] = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        if body.get("stream") is True:
            groups = _stream_groups(
                message, blocks, payloads, settings.chunks, stop_reason, output_tokens
            )
            core.stats.streams_started += 1
            return SseStream(
                {**SSE_HEADERS, **gate.headers},
                groups,
                core.chunk_delays(settings, len(groups)),
                gate.fault,
                _BROKEN,
                settings.stall_seconds,
                core.is_stopping,
                core.stream_completed,
            )
        if calls is not None:
            for block, call in zip(blocks, calls, strict=True):
                block["input"] = call.value
        message.update(
            content=blocks,
            stop_reason=stop_reason,
            usage={"input_tokens": input_tokens, "output_tokens": output_tokens},
        )
        return self._json(gate, orjson.dumps(message), core.is_stopping)

    @staticmethod
    def _json(gate: Admitted, payload: bytes, stopping: Callable[[], bool]) -> Outcome:
        headers = {"Content-Type": JSON, **gate.headers}
        if gate.fault is None:
            return Reply(200, headers, payload)
        if gate.fault == "malformed":
            return Reply(200, headers, payload[: len(payload) // 2])
        return PartialBody(headers, payload, gate.fault, gate.settings.stall_seconds, stopping)


def _stream_groups(
    message: dict[str, Any],
    blocks: list[dict[str, Any]],
    payloads: list[str],
    chunks: int,
    stop_reason: str,
    output_tokens: int,
) -> list[bytes]:
    """Each block: its start, its text or input JSON in pieces, its stop."""
    per = max(1, chunks // len(blocks))
    groups: list[bytes] = []
    for index, (block, payload) in enumerate(zip(blocks, payloads, strict=True)):
        is_tool = block["type"] == "tool_use"
        start_block = {**block, "input": {}} if is_tool else {"type": "text", "text": ""}
        delta_type, delta_key = (
            ("input_json_delta", "partial_json") if is_tool else ("text_delta", "text")
        )
        pieces = [
            _event(
                b"content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": delta_type, delta_key: piece},
                },
            )
            for piece in split_even(payload, per)
        ]
        pieces[0] = (
            _event(
                b"content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start_block},
            )
            + (_PING if index == 0 else b"")
            + pieces[0]
        )
        pieces[-1] += _event(b"content_block_stop", {"type": "content_block_stop", "index": index})
        groups += pieces
    groups[0] = _event(b"message_start", {"type": "message_start", "message": message}) + groups[0]
    groups[-1] += (
        _event(
            b"message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
        + _STOP
    )
    return groups
