"""The real ``openai`` SDK, sync and async, against a gateway in front of ``brace mock``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from .conftest import ServerThread

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "unit"],
        },
    },
}
MESSAGES: list[Any] = [{"role": "user", "content": "Hello there, gateway"}]


@pytest.fixture(scope="module")
def base(servers: ServerThread) -> str:
    mock = servers.mock()
    _, url = servers.gateway(
        {
            "models": {
                "chat": {
                    "deployments": [
                        {
                            "provider": "mock",
                            "name": "a",
                            "model": "mock-a",
                            "base_url": f"{mock}/v1",
                        },
                        {
                            "provider": "mock",
                            "name": "b",
                            "model": "mock-b",
                            "base_url": f"{mock}/v1",
                        },
                    ]
                },
                "embed": {
                    "deployments": [{"provider": "mock", "model": "emb", "base_url": f"{mock}/v1"}]
                },
            }
        }
    )
    return f"{url}/v1"


@pytest.fixture
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0)


@pytest.fixture
def aclient(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0)


def test_sync_json(client: openai.OpenAI) -> None:
    res = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    completion = res.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    # the upstream model was substituted, and the response says which deployment served
    assert completion.model in ("mock-a", "mock-b")
    assert res.headers["x-brace-deployment"] == {"mock-a": "a", "mock-b": "b"}[completion.model]
    assert res.headers["x-request-id"]


async def test_concurrent_load_spreads_over_both_deployments(aclient: openai.AsyncOpenAI) -> None:
    async def one() -> str:
        res = await aclient.chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES
        )
        return res.headers["x-brace-deployment"]

    served = await asyncio.gather(*(one() for _ in range(32)))
    assert set(served) == {"a", "b"}


def test_request_id_is_echoed(client: openai.OpenAI) -> None:
    res = client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, extra_headers={"x-request-id": "req-123"}
    )
    assert res.headers["x-request-id"] == "req-123"


async def test_async_json(aclient: openai.AsyncOpenAI) -> None:
    completion = await aclient.chat.completions.create(
        model="chat", messages=MESSAGES, max_tokens=50
    )
    assert completion.choices[0].message.content


def test_sync_stream(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="chat", messages=MESSAGES, stream=True))
    assert len(chunks) > 2
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


async def test_async_stream_include_usage(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0


def test_tools_json(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="chat", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    args = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert isinstance(args["city"], str) and args["unit"] in ("c", "f")


async def test_tools_stream(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="chat", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
    )
    name, arguments, finish = "", "", None
    async for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            name += tc.function.name or "" if tc.function else ""
            arguments += tc.function.arguments or "" if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert set(json.loads(arguments)) >= {"city", "unit"}
    assert finish == "tool_calls"


def test_json_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
    )
    data = json.loads(completion.choices[0].message.content or "")
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_json_object(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="chat", messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_multimodal_parts_accepted(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="chat",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this image?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content


def test_embeddings(client: openai.OpenAI) -> None:
    res = client.embeddings.create(model="embed", input=["one", "two"])
    assert len(res.data) == 2
    assert len(res.data[0].embedding) > 0
    assert res.data[0].embedding != res.data[1].embedding


def test_models_lists_configured_groups(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == ["chat", "embed"]
    assert client.models.retrieve("chat").id == "chat"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-7", messages=MESSAGES)
    body: Any = info.value.body
    assert body["code"] == "model_not_found"
    assert "chat" in body["message"]  # says which models exist
