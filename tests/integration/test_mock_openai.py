"""The real ``openai`` SDK against ``brace mock`` over loopback, on both transports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from brace.mock import MockConfig, RunningMock, serve_mock

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "days", "unit"],
        },
    },
}
SEARCH: Any = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
USER: Any = [{"role": "user", "content": "What is the weather like in Paris today?"}]


@pytest.fixture(params=["fast", "aiohttp"])
async def mock(request: pytest.FixtureRequest) -> AsyncIterator[RunningMock]:
    async with serve_mock(MockConfig(seed=1, chunks=5), transport=request.param) as running:
        yield running


def client(mock: RunningMock) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="test", max_retries=0)


async def test_chat_json(mock: RunningMock) -> None:
    async with client(mock) as oa:
        reply = await oa.chat.completions.create(model="gpt-test", messages=USER)
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == "gpt-test"
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Mock reply to: " + USER[0]["content"][:60]
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 10  # 40 chars / 4
    assert reply.usage.completion_tokens == 14
    assert reply.usage.total_tokens == 24


async def test_sync_client(mock: RunningMock) -> None:
    def call() -> str | None:
        with openai.OpenAI(base_url=mock.url + "/v1", api_key="test", max_retries=0) as oa:
            reply = oa.chat.completions.create(model="m", messages=USER)
            chunks = list(oa.chat.completions.create(model="m", messages=USER, stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return reply.choices[0].message.content

    assert (await asyncio.to_thread(call) or "").startswith("Mock reply to:")


async def test_max_tokens_cuts_with_length(mock: RunningMock) -> None:
    async with client(mock) as oa:
        reply = await oa.chat.completions.create(model="m", messages=USER, max_tokens=2)
    assert reply.choices[0].message.content == "Mock rep"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 2


async def test_stream_with_usage(mock: RunningMock) -> None:
    async with client(mock) as oa:
        stream = await oa.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply to: " + USER[0]["content"][:60]
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 24
    assert len({c.id for c in chunks}) == 1


async def test_multimodal_parts_and_unknown_fields(mock: RunningMock) -> None:
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4000}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            ],
        }
    ]
    async with client(mock) as oa:
        reply = await oa.chat.completions.create(
            model="m", messages=messages, extra_body={"brand_new_field": {"x": 1}}
        )
    assert reply.choices[0].message.content == "Mock reply to: Describe"
    assert reply.usage is not None and reply.usage.prompt_tokens == 2  # image data ignored


async def test_tool_call_json(mock: RunningMock) -> None:
    async with client(mock) as oa:
        reply = await oa.chat.completions.create(model="m", messages=USER, tools=[WEATHER, SEARCH])
        forced = await oa.chat.completions.create(
            model="m",
            messages=USER,
            tools=[WEATHER, SEARCH],
            tool_choice={"type": "function", "function": {"name": "search"}},
        )
        none = await oa.chat.completions.create(
            model="m", messages=USER, tools=[WEATHER], tool_choice="none"
        )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock city", "days": 1, "unit": "c"}
    forced_calls = forced.choices[0].message.tool_calls
    assert forced_calls is not None and forced_calls[0].function.name == "search"
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].finish_reason == "stop"


async def test_text_after_tool_result(mock: RunningMock) -> None:
    messages: Any = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    async with client(mock) as oa:
        reply = await oa.chat.completions.create(model="m", messages=messages, tools=[WEATHER])
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content


async def test_tool_call_streamed(mock: RunningMock) -> None:
    async with client(mock) as oa:
        stream = await oa.chat.completions.create(
            model="m", messages=USER, tools=[WEATHER], stream=True
        )
        chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    first = deltas[0].tool_calls
    assert first is not None and first[0].id is not None and first[0].id.startswith("call_")
    assert first[0].function is not None and first[0].function.name == "get_weather"
    fragments = [
        tc.function.arguments or ""
        for d in deltas
        for tc in d.tool_calls or []
        if tc.function is not None
    ]
    assert len([f for f in fragments if f]) > 1  # arguments arrive in pieces
    assert json.loads("".join(fragments)) == {"city": "mock city", "days": 1, "unit": "c"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_json_schema_and_json_object(mock: RunningMock) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {
                "type": "object",
                "properties": {"zip": {"type": "string"}},
                "required": ["zip"],
            },
        },
        "required": ["name", "age", "tags", "address"],
        "additionalProperties": False,
    }
    async with client(mock) as oa:
        structured = await oa.chat.completions.create(
            model="m",
            messages=USER,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": schema, "strict": True},
            },
        )
        loose = await oa.chat.completions.create(
            model="m", messages=USER, response_format={"type": "json_object"}
        )
    value = json.loads(structured.choices[0].message.content or "")
    assert value == {
        "name": "mock name",
        "age": 1,
        "tags": ["mock tags"],
        "address": {"zip": "mock zip"},
    }
    assert isinstance(json.loads(loose.choices[0].message.content or ""), dict)


async def test_embeddings_are_deterministic(mock: RunningMock) -> None:
    async with client(mock) as oa:
        first = await oa.embeddings.create(model="text-embedding-3-small", input="hello")
        both = await oa.embeddings.create(
            model="e", input=["hello", "world"], encoding_format="float", dimensions=8
        )
    vector = first.data[0].embedding
    assert len(vector) == 1536
    assert sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-3)
    assert [d.index for d in both.data] == [0, 1]
    assert len(both.data[0].embedding) == 8
    assert both.data[0].embedding != both.data[1].embedding
    assert first.usage.prompt_tokens == 2
    async with client(mock) as oa:
        again = await oa.embeddings.create(model="e", input="hello", encoding_format="float")
    assert again.data[0].embedding == pytest.approx(vector, abs=1e-6)


async def test_models(mock: RunningMock) -> None:
    async with client(mock) as oa:
        models = [m.id async for m in oa.models.list()]
    assert "gpt-4o-mini" in models


@pytest.mark.parametrize(
    ("body", "param"),
    [(b"{not json", None), (b'{"model":"m"}', "messages"), (b'{"messages":[]}', "messages")],
)
async def test_bad_requests_are_openai_400s(
    mock: RunningMock, body: bytes, param: str | None
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(mock.url + "/v1/chat/completions", data=body) as resp,
    ):
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


async def test_sdk_raises_bad_request(mock: RunningMock) -> None:
    async with client(mock) as oa:
        with pytest.raises(openai.BadRequestError):
            await oa.chat.completions.create(model="m", messages=[])


async def test_unknown_path_is_404(mock: RunningMock) -> None:
    async with aiohttp.ClientSession() as session, session.get(mock.url + "/v2/nothing") as resp:
        assert resp.status == 404
