"""``brace mock`` playing an agent's model: agent loops over loopback, driven by the real
``openai`` SDK (OpenAI wire) and raw requests (Anthropic wire), on both transports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from brace.mock import MockConfig, RunningMock, serve_mock
from tests.integration.test_mock_messages import TOOL, body, events, post
from tests.integration.test_mock_openai import SEARCH, USER, WEATHER

LOOKUP = {"name": "lookup", "input_schema": {"type": "object", "properties": {}}}


@pytest.fixture(params=["fast", "aiohttp"])
async def mock(request: pytest.FixtureRequest) -> AsyncIterator[RunningMock]:
    config = MockConfig(seed=3, chunks=6, agent_turns=3)
    async with serve_mock(config, transport=request.param) as running:
        yield running


def client(mock: RunningMock, **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=mock.url + "/v1", api_key="test", max_retries=0, default_headers=headers
    )


def call_of_tool(call: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call.id, "content": f"{call.function.name} done"}


async def openai_agent(oa: openai.AsyncOpenAI, **extra: Any) -> tuple[list[Any], Any]:
    """Loop like an agent: append the assistant message and one tool result per call."""
    messages: list[Any] = [*USER]
    turns: list[Any] = []
    for _ in range(50):
        reply = await oa.chat.completions.create(model="m", messages=messages, **extra)
        message = reply.choices[0].message
        if not message.tool_calls:
            return turns, reply
        assert reply.choices[0].finish_reason == "tool_calls"
        turns.append(message.tool_calls)
        messages.append(message.model_dump(exclude_none=True))
        messages.extend(call_of_tool(call) for call in message.tool_calls)
    raise AssertionError("the agent never got a final answer")


async def test_openai_agent_loop_ends_after_n_turns(mock: RunningMock) -> None:
    async with client(mock) as oa:
        turns, final = await openai_agent(oa, tools=[WEATHER, SEARCH])
    assert len(turns) == 3
    assert [[c.function.name for c in turn] for turn in turns] == [
        ["get_weather"],
        ["search"],
        ["get_weather"],
    ]
    ids = [c.id for turn in turns for c in turn]
    assert len(set(ids)) == 3 and all(i.startswith("call_") for i in ids)
    weather = json.loads(turns[0][0].function.arguments)
    assert set(weather) == {"city", "days", "unit"}
    assert isinstance(weather["city"], str) and weather["days"] >= 1 and weather["unit"] in "cf"
    assert json.loads(turns[1][0].function.arguments) == {}  # nothing required
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "Mock reply to: " + USER[0]["content"][:60]
    assert final.usage is not None and final.usage.completion_tokens == 14


async def test_parallel_calls_cycle_the_tools(mock: RunningMock) -> None:
    async with client(mock, **{"x-mock-agent-parallel": "3"}) as oa:
        turns, _ = await openai_agent(oa, tools=[WEATHER, SEARCH])
        serial, _ = await openai_agent(oa, tools=[WEATHER, SEARCH], parallel_tool_calls=False)
    assert [[c.function.name for c in turn] for turn in turns] == [
        ["get_weather", "search", "get_weather"],
        ["search", "get_weather", "search"],
        ["get_weather", "search", "get_weather"],
    ]
    assert len({c.id for turn in turns for c in turn}) == 9
    assert [len(turn) for turn in serial] == [1, 1, 1]


async def test_stream_assembles_to_the_json_calls(mock: RunningMock) -> None:
    messages: Any = [*USER]
    async with client(mock, **{"x-mock-agent-parallel": "2"}) as oa:
        reply = await oa.chat.completions.create(
            model="m", messages=messages, tools=[WEATHER, SEARCH]
        )
        stream = await oa.chat.completions.create(
            model="m",
            messages=messages,
            tools=[WEATHER, SEARCH],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assembled: dict[int, dict[str, str]] = {}
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    for delta in (d for one in deltas for d in one.tool_calls or []):
        call = assembled.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        if delta.id:
            assert delta.type == "function" and not call["id"]
            call["id"] = delta.id
        if delta.function is not None:
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
    calls = [c for c in reply.choices[0].message.tool_calls or [] if c.type == "function"]
    assert len(calls) == 2
    assert [assembled[i] for i in sorted(assembled)] == [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in calls
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage == reply.usage


async def test_text_answers_without_tools_or_with_tool_choice_none(mock: RunningMock) -> None:
    async with client(mock) as oa:
        none = await oa.chat.completions.create(
            model="m", messages=USER, tools=[WEATHER], tool_choice="none"
        )
        plain = await oa.chat.completions.create(model="m", messages=USER)
    for reply in (none, plain):
        assert reply.choices[0].message.tool_calls is None
        assert reply.choices[0].finish_reason == "stop"
    async with serve_mock(MockConfig(seed=3, chunks=6)) as unset, client(unset) as oa:
        before = await oa.chat.completions.create(model="m", messages=USER)
    assert plain.model_dump(exclude={"id", "created"}) == before.model_dump(
        exclude={"id", "created"}
    )


async def test_headers_turn_the_agent_on_and_bad_ones_are_400() -> None:
    async with serve_mock(MockConfig(seed=3)) as plain:
        async with client(plain, **{"x-mock-agent-turns": "2"}) as oa:
            turns, _ = await openai_agent(oa, tools=[WEATHER])
        assert len(turns) == 2
        async with client(plain, **{"x-mock-agent-turns": "5000"}) as oa:
            with pytest.raises(openai.BadRequestError) as caught:
                await oa.chat.completions.create(model="m", messages=USER, tools=[WEATHER])
        assert "x-mock-agent-turns" in str(caught.value)
        status, _, raw = await post(plain, body(), **{"x-mock-agent-parallel": "0"})
        assert status == 400
        assert "x-mock-agent-parallel" in orjson.loads(raw)["error"]["message"]


async def test_faults_and_scenarios_apply() -> None:
    now = [0.0]
    config = MockConfig(seed=3, agent_turns=2, scenario="agent_turns=0:10s")
    async with serve_mock(config, clock=lambda: now[0]) as mock, client(mock) as oa:
        held = await oa.chat.completions.create(model="m", messages=USER, tools=[WEATHER])
        assert held.choices[0].finish_reason == "stop"  # the phase allows no tool turn
        now[0] = 11.0
        turns, _ = await openai_agent(oa, tools=[WEATHER])
        assert len(turns) == 2
        async with aiohttp.ClientSession() as session:
            request = {"model": "m", "messages": USER, "tools": [WEATHER]}
            async with session.post(
                mock.url + "/v1/chat/completions", json=request, headers={"x-mock-fault": "503"}
            ) as resp:
                assert resp.status == 503


async def anthropic_agent(mock: RunningMock, **extra: Any) -> tuple[list[Any], Any]:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    turns: list[Any] = []
    for _ in range(50):
        status, _, raw = await post(mock, body(messages=messages, **extra))
        assert status == 200
        message = orjson.loads(raw)
        uses = [b for b in message["content"] if b["type"] == "tool_use"]
        if not uses:
            return turns, message
        assert message["stop_reason"] == "tool_use"
        turns.append(uses)
        messages.append({"role": "assistant", "content": message["content"]})
        results = [{"type": "tool_result", "tool_use_id": b["id"], "content": "ok"} for b in uses]
        messages.append({"role": "user", "content": results})
    raise AssertionError("the agent never got a final answer")


async def test_anthropic_agent_loop(mock: RunningMock) -> None:
    turns, final = await anthropic_agent(mock, tools=[TOOL, LOOKUP])
    assert [[b["name"] for b in turn] for turn in turns] == [
        ["get_weather"],
        ["lookup"],
        ["get_weather"],
    ]
    ids = [b["id"] for turn in turns for b in turn]
    assert len(set(ids)) == 3 and all(i.startswith("toolu_") for i in ids)
    assert set(turns[0][0]["input"]) == {"city", "days"}
    assert final["stop_reason"] == "end_turn"
    # the last user message is the tool results: the answer quotes them
    assert final["content"] == [{"type": "text", "text": "Mock reply to: ok"}]
    status, _, raw = await post(
        mock, body(tools=[TOOL], tool_choice={"type": "none"}), **{"x-mock-agent-parallel": "2"}
    )
    assert status == 200 and orjson.loads(raw)["stop_reason"] == "end_turn"


async def test_anthropic_parallel_stream_matches_json(mock: RunningMock) -> None:
    headers = {"x-mock-agent-parallel": "3"}
    _, _, raw = await post(mock, body(tools=[TOOL, LOOKUP]), **headers)
    message = orjson.loads(raw)
    assert [b["name"] for b in message["content"]] == ["get_weather", "lookup", "get_weather"]
    assert len({b["id"] for b in message["content"]}) == 3
    _, _, raw = await post(mock, body(tools=[TOOL, LOOKUP], stream=True), **headers)
    seq = events(raw)
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for name, data in seq:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta":
            assert data["delta"]["type"] == "input_json_delta"
            partial[data["index"]] = partial.get(data["index"], "") + data["delta"]["partial_json"]
    for index, block in blocks.items():
        block["input"] = orjson.loads(partial[index])
    assert [blocks[i] for i in sorted(blocks)] == message["content"]
    names = [n for n, _ in seq if n not in ("ping", "content_block_delta")]
    assert names == [
        "message_start",
        *["content_block_start", "content_block_stop"] * 3,
        "message_delta",
        "message_stop",
    ]
    delta = next(d for n, d in seq if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == message["usage"]["output_tokens"]
    one = await post(
        mock,
        body(tools=[TOOL], tool_choice={"type": "any", "disable_parallel_tool_use": True}),
        **headers,
    )
    assert len(orjson.loads(one[2])["content"]) == 1
