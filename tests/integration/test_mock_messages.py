"""``brace mock``'s Anthropic ``POST /v1/messages`` with raw aiohttp requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from brace.mock import MockConfig, RunningMock, serve_mock

TOOL = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
HEADERS = {"x-api-key": "test", "anthropic-version": "2023-06-01"}


@pytest.fixture(params=["fast", "aiohttp"])
async def mock(request: pytest.FixtureRequest) -> AsyncIterator[RunningMock]:
    async with serve_mock(MockConfig(seed=1, chunks=4), transport=request.param) as running:
        yield running


def body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be terse."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
        **extra,
    }


async def post(mock: RunningMock, payload: Any, **headers: str) -> tuple[int, Any, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            mock.url + "/v1/messages", json=payload, headers={**HEADERS, **headers}
        ) as resp,
    ):
        return resp.status, resp.headers, await resp.read()


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = orjson.loads(lines["data"])
        assert data["type"] == lines["event"]
        out.append((lines["event"], data))
    return out


async def test_json_message(mock: RunningMock) -> None:
    status, _, raw = await post(mock, body())
    assert status == 200
    message = orjson.loads(raw)
    assert message["id"].startswith("msg_")
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == "claude-test"
    assert message["content"] == [{"type": "text", "text": "Mock reply to: Hello there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None
    assert message["usage"] == {"input_tokens": 5, "output_tokens": 7}  # 20 chars incl. system


async def test_max_tokens_stop_reason(mock: RunningMock) -> None:
    _, _, raw = await post(mock, body(max_tokens=1))
    message = orjson.loads(raw)
    assert message["stop_reason"] == "max_tokens"
    assert message["content"][0]["text"] == "Mock"


async def test_stream_event_order(mock: RunningMock) -> None:
    status, headers, raw = await post(mock, body(stream=True))
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    seq = events(raw)
    names = [name for name, _ in seq if name != "ping"]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    start = seq[0][1]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] == 5
    text = "".join(d["delta"]["text"] for n, d in seq if n == "content_block_delta")
    assert text == "Mock reply to: Hello there"
    delta = next(d for n, d in seq if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 7


async def test_tool_use_json_and_stream(mock: RunningMock) -> None:
    _, _, raw = await post(mock, body(tools=[TOOL]))
    message = orjson.loads(raw)
    assert message["stop_reason"] == "tool_use"
    block = message["content"][0]
    assert block["type"] == "tool_use"
    assert block["id"].startswith("toolu_")
    assert block["name"] == "get_weather"
    assert block["input"] == {"city": "mock city", "days": 1}

    _, _, raw = await post(mock, body(tools=[TOOL], stream=True))
    seq = events(raw)
    start = next(d for n, d in seq if n == "content_block_start")["content_block"]
    assert start["type"] == "tool_use" and start["name"] == "get_weather" and start["input"] == {}
    partial = "".join(
        d["delta"]["partial_json"]
        for n, d in seq
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    )
    assert orjson.loads(partial) == {"city": "mock city", "days": 1}
    assert next(d for n, d in seq if n == "message_delta")["delta"]["stop_reason"] == "tool_use"


async def test_tool_choice_and_tool_result(mock: RunningMock) -> None:
    other = {"name": "lookup", "input_schema": {"type": "object", "properties": {}}}
    _, _, raw = await post(
        mock, body(tools=[TOOL, other], tool_choice={"type": "tool", "name": "lookup"})
    )
    assert orjson.loads(raw)["content"][0]["name"] == "lookup"
    _, _, raw = await post(mock, body(tools=[TOOL], tool_choice={"type": "none"}))
    assert orjson.loads(raw)["content"][0]["type"] == "text"
    after = body(
        tools=[TOOL],
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            },
        ],
    )
    _, _, raw = await post(mock, after)
    assert orjson.loads(raw)["stop_reason"] == "end_turn"


async def test_image_blocks_accepted(mock: RunningMock) -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "A" * 999},
    }
    status, _, raw = await post(
        mock, body(messages=[{"role": "user", "content": [image, {"type": "text", "text": "Hi"}]}])
    )
    assert status == 200
    assert orjson.loads(raw)["usage"]["input_tokens"] == 3


@pytest.mark.parametrize("missing", ["max_tokens", "messages"])
async def test_missing_fields_are_invalid_request(mock: RunningMock, missing: str) -> None:
    payload = body()
    del payload[missing]
    status, _, raw = await post(mock, payload)
    assert status == 400
    error = orjson.loads(raw)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert missing in error["error"]["message"]


@pytest.mark.parametrize(
    ("fault", "status", "kind"),
    [("529", 529, "overloaded_error"), ("500", 500, "api_error"), ("429", 429, "rate_limit_error")],
)
async def test_errors_are_anthropic_shaped(
    mock: RunningMock, fault: str, status: int, kind: str
) -> None:
    got, headers, raw = await post(mock, body(), **{"x-mock-fault": fault})
    assert got == status
    assert orjson.loads(raw)["error"]["type"] == kind
    if status in (429, 529):
        assert headers["retry-after"] == "1"


async def test_anthropic_rate_limit_headers() -> None:
    async with serve_mock(MockConfig(rpm=1, tpm=10_000), clock=lambda: 0.0) as mock:
        status, headers, _ = await post(mock, body())
        assert status == 200
        assert headers["anthropic-ratelimit-requests-limit"] == "1"
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert headers["anthropic-ratelimit-tokens-limit"] == "10000"
        assert headers["anthropic-ratelimit-tokens-remaining"] == str(10_000 - 5 - 256)
        assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
        status, headers, raw = await post(mock, body())
        assert status == 429
        assert headers["retry-after"] == "60"
        assert orjson.loads(raw)["error"]["type"] == "rate_limit_error"
