"""Context-window handling through the gateway: reject before any upstream call,
route to a larger-context group, trim old turns."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from .conftest import ServerThread

LONG: list[Any] = [
    {"role": "system", "content": "You are terse."},
    *[
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "words " * 120}
        for i in range(12)
    ],
    {"role": "user", "content": "and now?"},
]


async def calls(mock: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{mock}/_mock/stats") as r:
        return int((await r.json())["total_requests"])


@pytest.fixture(scope="module")
def env(servers: ServerThread) -> dict[str, str]:
    small, big = servers.mock(), servers.mock()

    def dep(mock: str, window: int) -> dict[str, Any]:
        return {
            "provider": "mock",
            "model": "m",
            "base_url": f"{mock}/v1",
            "context_window": window,
        }

    _, url = servers.gateway(
        {
            "models": {
                "strict": {"deployments": [dep(small, 1000)], "context": {"mode": "reject"}},
                "routed": {
                    "deployments": [dep(small, 1000)],
                    "context": {"mode": "route"},
                    "fallbacks": [{"to": "large", "on": ["context_window_exceeded"]}],
                },
                "trimmed": {
                    "deployments": [dep(small, 1000)],
                    "context": {"mode": "trim", "strategy": "middle_out"},
                },
                "large": {"deployments": [dep(big, 100_000)]},
            }
        }
    )
    return {"url": url, "small": small, "big": big}


async def test_reject_answers_400_before_any_upstream_call(env: dict[str, str]) -> None:
    client = openai.AsyncOpenAI(base_url=f"{env['url']}/v1", api_key="x", max_retries=0)
    before = await calls(env["small"])
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="strict", messages=LONG)
    assert info.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    assert "1000" in str(info.value)  # says what the limit is
    assert await calls(env["small"]) == before


async def test_route_falls_back_to_the_larger_group(env: dict[str, str]) -> None:
    client = openai.AsyncOpenAI(base_url=f"{env['url']}/v1", api_key="x", max_retries=0)
    before_small, before_big = await calls(env["small"]), await calls(env["big"])
    res = await client.chat.completions.with_raw_response.create(model="routed", messages=LONG)
    assert res.headers["x-brace-fallback"] == "routed>large"
    assert await calls(env["small"]) == before_small
    assert await calls(env["big"]) == before_big + 1


async def test_trim_drops_middle_turns_and_fits(env: dict[str, str]) -> None:
    client = openai.AsyncOpenAI(base_url=f"{env['url']}/v1", api_key="x", max_retries=0)
    reply = await client.chat.completions.create(model="trimmed", messages=LONG)
    # the mock echoes the last user message: it survived, the request fit and was answered
    assert "and now?" in (reply.choices[0].message.content or "")
    assert reply.usage is not None and reply.usage.prompt_tokens < 1000
