"""Control endpoints (/_mock/stats, /_mock/reset, /_mock/config), scenarios and seeding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from brace.mock import MockConfig, RunningMock, serve_mock

CHAT: Any = {"model": "m", "messages": [{"role": "user", "content": "Hello there, mock"}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["fast", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    session: aiohttp.ClientSession,
    mock: RunningMock,
    path: str,
    payload: Any = None,
    **headers: str,
) -> tuple[int, Any]:
    method = "GET" if payload is None and not path.startswith("/v1/") else "POST"
    if path in ("/_mock/reset",):
        method = "POST"
    async with session.request(method, mock.url + path, json=payload, headers=headers) as resp:
        raw = await resp.read()
        if resp.content_type != "application/json":
            return resp.status, raw
        return resp.status, orjson.loads(raw)


async def statuses(session: aiohttp.ClientSession, mock: RunningMock, n: int) -> list[int]:
    return [(await call(session, mock, "/v1/chat/completions", CHAT))[0] for _ in range(n)]


async def test_stats_count_everything(transport: Any, session: aiohttp.ClientSession) -> None:
    async with serve_mock(MockConfig(chunks=3), transport=transport) as mock:
        await statuses(session, mock, 3)
        await call(session, mock, "/v1/chat/completions", {**CHAT, "stream": True})
        await call(session, mock, "/v1/chat/completions", CHAT, **{"x-mock-fault": "503"})
        await call(
            session,
            mock,
            "/v1/chat/completions",
            {**CHAT, "stream": True},
            **{"x-mock-fault": "truncate"},
        )
        await call(session, mock, "/v1/embeddings", {"model": "e", "input": "abcd"})
        await call(session, mock, "/v1/messages", {**CHAT, "max_tokens": 5})
        await call(session, mock, "/v1/chat/completions", {"bad": 1})
        assert (await call(session, mock, "/healthz"))[1] == {"status": "ok"}
        status, stats = await call(session, mock, "/_mock/stats")
        assert status == 200
        assert stats["total_requests"] == 9
        assert stats["by_endpoint"] == {
            "/v1/chat/completions": 7,
            "/v1/embeddings": 1,
            "/v1/messages": 1,
        }
        assert stats["by_status"] == {"200": 7, "503": 1, "400": 1}
        assert stats["faults"] == {"503": 1, "truncate": 1}
        assert stats["streams_started"] == 2
        assert stats["streams_completed"] == 1
        assert stats["tokens_in"] == 5 * 5 + 1 + 5  # 5 chats admitted, embeddings, messages
        assert stats["tokens_out"] > 0
        assert stats["rate_limited"] == 0

        assert (await call(session, mock, "/_mock/reset"))[0] == 200
        _, stats = await call(session, mock, "/_mock/stats")
        assert stats["total_requests"] == 0 and stats["by_status"] == {}


async def test_config_swap_takes_a_deployment_down_and_back(
    transport: Any, session: aiohttp.ClientSession
) -> None:
    async with serve_mock(MockConfig(latency="1"), transport=transport) as mock:
        assert await statuses(session, mock, 2) == [200, 200]
        status, view = await call(session, mock, "/_mock/config", {"profile": "outage"})
        assert status == 200
        assert view["profile"] == "outage"
        assert view["error_rates"] == {"503": 1.0}
        assert view["latency"] == "1"  # untouched fields survive the swap
        assert await statuses(session, mock, 2) == [503, 503]
        await call(session, mock, "/_mock/config", {"profile": "healthy"})
        assert await statuses(session, mock, 2) == [200, 200]
        await call(session, mock, "/_mock/config", {"error_rates": {"500": 1.0}})
        assert await statuses(session, mock, 1) == [500]
        await call(session, mock, "/_mock/config", {"error_rates": {}})
        assert await statuses(session, mock, 1) == [200]
        _, view = await call(session, mock, "/_mock/config")
        assert view["profile"] == "healthy"
        status, _ = await call(session, mock, "/_mock/config?replace=true", {"rpm": 7})
        _, view = await call(session, mock, "/_mock/config")
        assert view["rpm"] == 7 and view["profile"] is None and view["latency"] == "0"


async def test_bad_config_is_rejected_and_live_config_kept(
    transport: Any, session: aiohttp.ClientSession
) -> None:
    async with serve_mock(MockConfig(), transport=transport) as mock:
        status, body = await call(session, mock, "/_mock/config", {"error_rates": {"503": 3}})
        assert status == 400
        assert "error_rates" in body["error"]["message"]
        status, body = await call(session, mock, "/_mock/config", {"nope": 1})
        assert status == 400
        assert await statuses(session, mock, 1) == [200]


async def test_scenario_phases_follow_the_injected_clock(
    transport: Any, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    config = MockConfig(scenario="healthy:10s,outage:5s,healthy")
    async with serve_mock(config, clock=clock, transport=transport) as mock:
        assert await statuses(session, mock, 1) == [200]
        clock.now += 10
        assert await statuses(session, mock, 2) == [503, 503]
        _, stats = await call(session, mock, "/_mock/stats")
        assert stats["scenario"]["phase"] == "outage"
        clock.now += 5
        assert await statuses(session, mock, 1) == [200]
        await call(session, mock, "/_mock/reset")  # phase time restarts
        clock.now += 10
        assert await statuses(session, mock, 1) == [503]


async def test_same_seed_same_faults(transport: Any, session: aiohttp.ClientSession) -> None:
    def config(seed: int) -> MockConfig:
        return MockConfig(seed=seed, error_rates={"503": 0.3, "500": 0.2, "429": 0.1})

    async def run(seed: int) -> list[int]:
        async with serve_mock(config(seed), transport=transport) as mock:
            return await statuses(session, mock, 40)

    first, second, other = await run(5), await run(5), await run(6)
    assert first == second
    assert first != other
    assert {503, 500, 429, 200} <= set(first)
