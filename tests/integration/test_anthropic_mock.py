"""AnthropicProvider against ``brace mock``'s Anthropic ``POST /v1/messages``, over
real loopback HTTP: JSON and streamed text, tools, JSON mode and injected faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from brace.config import Deployment
from brace.errors import MalformedResponse, Overloaded, RateLimited, ServerError
from brace.mock import MockConfig, create_app
from brace.providers.anthropic import AnthropicProvider
from brace.stack import Request, Response, StreamResponse, collect_stream

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


@pytest.fixture
async def mock_url() -> AsyncIterator[str]:
    server = TestServer(create_app(MockConfig(seed=1, chunks=6)), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def provider(url: str, session: aiohttp.ClientSession, **headers: str) -> AnthropicProvider:
    dep = Deployment(provider="anthropic-mock", model="claude-mock", base_url=url, headers=headers)
    return AnthropicProvider(dep, session)


def chat(*, stream: bool = False, **body: Any) -> Request:
    body.setdefault(
        "messages",
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say something about the sea."},
        ],
    )
    return Request(operation="chat", model="claude", body=body, stream=stream)


async def answer(p: AnthropicProvider, req: Request) -> dict[str, Any]:
    resp = await p(req)
    assert isinstance(resp, Response)
    return resp.json()


async def chunks(p: AnthropicProvider, req: Request) -> list[dict[str, Any]]:
    resp = await p(req)
    assert isinstance(resp, StreamResponse)
    return await collect_stream(resp)


def reassemble(parts: list[dict[str, Any]]) -> tuple[str, dict[int, dict[str, str]], str | None]:
    """(content, tool calls by index, finish_reason) as an OpenAI client rebuilds them."""
    text, finish = "", None
    calls: dict[int, dict[str, str]] = {}
    for c in parts:
        for choice in c["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for tc in delta.get("tool_calls", []):
                slot = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] += tc.get("id") or ""
                slot["name"] += (tc.get("function") or {}).get("name") or ""
                slot["arguments"] += (tc.get("function") or {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    return text, calls, finish


async def test_json_text_answer(mock_url: str, session: aiohttp.ClientSession) -> None:
    out = await answer(provider(mock_url, session), chat(max_tokens=200))
    assert out["object"] == "chat.completion"
    assert out["id"].startswith("msg_")
    assert out["model"] == "claude-mock"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert isinstance(choice["message"]["content"], str)
    assert choice["message"]["content"]
    usage = out["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_short_max_tokens_is_length(mock_url: str, session: aiohttp.ClientSession) -> None:
    out = await answer(provider(mock_url, session), chat(max_tokens=1))
    assert out["choices"][0]["finish_reason"] == "length"


async def test_streamed_text(mock_url: str, session: aiohttp.ClientSession) -> None:
    p = provider(mock_url, session)
    parts = await chunks(p, chat(stream=True, stream_options={"include_usage": True}))
    assert parts[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({c["id"] for c in parts}) == 1
    text, calls, finish = reassemble(parts)
    assert text
    assert calls == {}
    assert finish == "stop"
    assert parts[-1]["choices"] == []
    assert parts[-1]["usage"]["completion_tokens"] > 0


async def test_tools_json(mock_url: str, session: aiohttp.ClientSession) -> None:
    out = await answer(provider(mock_url, session), chat(tools=[WEATHER], tool_choice="required"))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("toolu_")
    assert call["function"]["name"] == "get_weather"
    args = orjson.loads(call["function"]["arguments"])
    assert isinstance(args["city"], str)
    assert isinstance(args["days"], int)


async def test_tools_streamed(mock_url: str, session: aiohttp.ClientSession) -> None:
    parts = await chunks(
        provider(mock_url, session),
        chat(stream=True, tools=[WEATHER], tool_choice="required"),
    )
    text, calls, finish = reassemble(parts)
    assert text == ""
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("toolu_")
    args = orjson.loads(calls[0]["arguments"])
    assert set(args) >= {"city", "days"}
    fragments = [c for c in parts if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert len(fragments) > 2  # the arguments really arrived in pieces


async def test_tool_result_round_trip(mock_url: str, session: aiohttp.ClientSession) -> None:
    p = provider(mock_url, session)
    first = await answer(p, chat(tools=[WEATHER], tool_choice="required"))
    message = first["choices"][0]["message"]
    call = message["tool_calls"][0]
    follow = chat(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "4C, rain"},
        ],
    )
    out = await answer(p, follow)
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["message"]["content"]


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "schema": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "score": {"type": "integer"}},
            "required": ["ok", "score"],
        },
    },
}


async def test_json_schema_emulation(mock_url: str, session: aiohttp.ClientSession) -> None:
    p = provider(mock_url, session)
    out = await answer(p, chat(response_format=SCHEMA_FORMAT))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    parsed = orjson.loads(choice["message"]["content"])
    assert isinstance(parsed["ok"], bool)
    assert isinstance(parsed["score"], int)

    text, calls, finish = reassemble(
        await chunks(p, chat(stream=True, response_format=SCHEMA_FORMAT))
    )
    assert calls == {}
    assert finish == "stop"
    assert set(orjson.loads(text)) == {"ok", "score"}


async def test_fault_529_is_overloaded(mock_url: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(Overloaded) as info:
        await provider(mock_url, session, **{"x-mock-fault": "529"})(chat())
    assert info.value.upstream_status == 529
    assert info.value.retry_after is not None


async def test_fault_429_is_rate_limited(mock_url: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(RateLimited) as info:
        await provider(mock_url, session, **{"x-mock-fault": "429"})(chat(stream=True))
    assert info.value.retry_after is not None
    assert info.value.retry_after > 0


async def test_fault_500_is_server_error(mock_url: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(ServerError):
        await provider(mock_url, session, **{"x-mock-fault": "500"})(chat())


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_body(mock_url: str, session: aiohttp.ClientSession, stream: bool) -> None:
    p = provider(mock_url, session, **{"x-mock-fault": "malformed"})
    with pytest.raises(MalformedResponse):
        if stream:
            await chunks(p, chat(stream=True))
        else:
            await answer(p, chat())


async def test_truncated_stream(mock_url: str, session: aiohttp.ClientSession) -> None:
    p = provider(mock_url, session, **{"x-mock-fault": "truncate"})
    with pytest.raises(MalformedResponse, match="truncated"):
        await chunks(p, chat(stream=True))


async def test_a_stream_leaves_its_usage_for_telemetry_and_budgets(
    mock_url: str, session: aiohttp.ClientSession
) -> None:
    """Without include_usage the caller sees no usage chunk, but the request's cost
    still needs it: the adapter leaves usage, model, id and finish reasons in its state."""
    p = provider(mock_url, session)
    req = chat(stream=True)
    parts = await chunks(p, req)
    assert all(c["choices"] for c in parts)  # no usage chunk for the caller
    state = req.state
    assert state.usage is not None
    assert state.usage["prompt_tokens"] > 0 and state.usage["completion_tokens"] > 0
    assert state.response_id == parts[0]["id"] and state.response_model == "claude-mock"
    assert state.finish_reasons == ["stop"]


async def test_a_stream_cut_after_its_first_chunk_still_reports_input_tokens(
    mock_url: str, session: aiohttp.ClientSession
) -> None:
    p = provider(mock_url, session)
    req = chat(stream=True)
    resp = await p(req)
    assert isinstance(resp, StreamResponse)
    first = await anext(resp.chunks)
    assert first
    await resp.aclose()  # the client went away
    assert req.state.usage["prompt_tokens"] > 0
