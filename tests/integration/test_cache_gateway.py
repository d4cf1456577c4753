"""The response cache through the gateway, with the real openai SDK and brace mock."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from .conftest import ServerThread

MESSAGES: list[Any] = [{"role": "user", "content": "cache me if you can"}]


async def upstream_calls(mock: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{mock}/_mock/stats") as r:
        return int((await r.json())["total_requests"])


@pytest.fixture(scope="module")
def env(servers: ServerThread) -> dict[str, str]:
    mock = servers.mock()
    _, url = servers.gateway(
        {
            "cache": {"enabled": True, "path": f"{servers.tmp}/cache.db"},
            "models": {
                "chat": {
                    "deployments": [{"provider": "mock", "model": "m", "base_url": f"{mock}/v1"}]
                },
                "nocache": {
                    "cache": {"enabled": False},
                    "deployments": [{"provider": "mock", "model": "m", "base_url": f"{mock}/v1"}],
                },
            },
        }
    )
    return {"mock": mock, "url": url}


async def test_second_identical_request_is_a_hit_and_streams_replay(env: dict[str, str]) -> None:
    client = openai.AsyncOpenAI(base_url=f"{env['url']}/v1", api_key="k1", max_retries=0)
    before = await upstream_calls(env["mock"])
    first = await client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, temperature=0
    )
    second = await client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, temperature=0
    )
    assert first.headers["x-brace-cache"] == "miss"
    assert second.headers["x-brace-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    # a stream of the same request is replayed from the cache, with the same text
    stream = await client.chat.completions.create(
        model="chat", messages=MESSAGES, temperature=0, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == first.parse().choices[0].message.content
    assert await upstream_calls(env["mock"]) - before == 1

    # an output-changing parameter is another entry; another key (tenant) is isolated
    await client.chat.completions.create(model="chat", messages=MESSAGES, temperature=0.7)
    other = openai.AsyncOpenAI(base_url=f"{env['url']}/v1", api_key="k2", max_retries=0)
    res = await other.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, temperature=0
    )
    assert res.headers["x-brace-cache"] == "miss"
    assert await upstream_calls(env["mock"]) - before == 3

    # opt-out per request, and a group without the cache
    res = await client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, temperature=0, extra_headers={"x-brace-cache": "no-cache"}
    )
    assert res.headers["x-brace-cache"] != "hit"
    res = await client.chat.completions.with_raw_response.create(model="nocache", messages=MESSAGES)
    assert "x-brace-cache" not in res.headers
    assert await upstream_calls(env["mock"]) - before == 5


async def test_bad_cache_header_is_a_clear_400(env: dict[str, str]) -> None:
    client = openai.AsyncOpenAI(base_url=f"{env['url']}/v1", api_key="k1", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="chat", messages=MESSAGES, extra_headers={"x-brace-cache-max-age": "soon"}
        )
    assert "x-brace-cache-max-age" in str(info.value)
