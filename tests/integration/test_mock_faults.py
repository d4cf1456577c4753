"""Every injected fault over real loopback HTTP, forced with ``x-mock-fault``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from brace.mock import MockConfig, RunningMock, serve_mock

CHAT: Any = {"model": "m", "messages": [{"role": "user", "content": "Hello there, mock"}]}
STREAM: Any = {**CHAT, "stream": True}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["fast", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def mock(transport: Any) -> AsyncIterator[RunningMock]:
    config = MockConfig(seed=1, chunks=6, hang_seconds=0.3, stall_seconds=0.2)
    async with serve_mock(config, transport=transport) as running:
        yield running


async def chat(
    mock: RunningMock, payload: Any = CHAT, *, fault: str | None = None, **headers: str
) -> tuple[int, Any, bytes]:
    if fault is not None:
        headers["x-mock-fault"] = fault
    async with (
        aiohttp.ClientSession() as session,
        session.post(mock.url + "/v1/chat/completions", json=payload, headers=headers) as resp,
    ):
        return resp.status, resp.headers, await resp.read()


@pytest.mark.parametrize(
    ("fault", "status", "retry"),
    [("500", 500, None), ("502", 502, None), ("503", 503, "1"), ("529", 529, "1")],
)
async def test_server_errors(mock: RunningMock, fault: str, status: int, retry: str | None) -> None:
    got, headers, raw = await chat(mock, fault=fault)
    assert got == status
    assert headers.get("retry-after") == retry
    error = orjson.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}


async def test_injected_429_through_the_sdk(mock: RunningMock) -> None:
    async with openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="test", max_retries=0) as oa:
        with pytest.raises(openai.RateLimitError) as caught:
            await oa.chat.completions.create(**CHAT, extra_headers={"x-mock-fault": "429"})
        with pytest.raises(openai.InternalServerError):
            await oa.chat.completions.create(**CHAT, extra_headers={"x-mock-fault": "503"})
        with pytest.raises(openai.APIConnectionError):
            await oa.chat.completions.create(**CHAT, extra_headers={"x-mock-fault": "reset"})
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


async def test_reset_drops_the_connection(mock: RunningMock) -> None:
    with pytest.raises(aiohttp.ClientConnectionError):
        await chat(mock, fault="reset")


async def test_hang_says_nothing_then_drops(mock: RunningMock) -> None:
    start = time.monotonic()
    with pytest.raises(aiohttp.ClientConnectionError):
        await chat(mock, fault="hang")
    assert time.monotonic() - start >= 0.25


async def test_hang_can_be_cut_short_by_the_client(mock: RunningMock) -> None:
    config = mock.engine.config.merged({"hang_seconds": 600})
    mock.engine.core.live.swap(config)
    timeout = aiohttp.ClientTimeout(total=0.1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(TimeoutError):
            await session.post(
                mock.url + "/v1/chat/completions", json=CHAT, headers={"x-mock-fault": "hang"}
            )
    assert (await chat(mock))[0] == 200  # the server is still fine


async def test_stall_pauses_a_stream_then_finishes(mock: RunningMock) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            mock.url + "/v1/chat/completions", json=STREAM, headers={"x-mock-fault": "stall"}
        ) as resp,
    ):
        gaps, last, data = [], time.monotonic(), b""
        async for chunk in resp.content.iter_any():
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            data += chunk
    assert max(gaps) >= 0.15
    assert data.endswith(b"data: [DONE]\n\n")


async def test_stall_pauses_a_json_body(mock: RunningMock) -> None:
    start = time.monotonic()
    status, _, raw = await chat(mock, fault="stall")
    assert status == 200
    assert time.monotonic() - start >= 0.15
    assert orjson.loads(raw)["object"] == "chat.completion"


async def test_truncated_stream_has_no_done(mock: RunningMock) -> None:
    status, _, raw = await chat(mock, STREAM, fault="truncate")
    assert status == 200
    assert raw.startswith(b"data: {")
    assert b"[DONE]" not in raw
    assert b'"finish_reason":"stop"' not in raw


async def test_truncated_json_body_is_incomplete(mock: RunningMock) -> None:
    with pytest.raises(aiohttp.ClientPayloadError):
        await chat(mock, fault="truncate")


async def test_malformed_json_body(mock: RunningMock) -> None:
    status, _, raw = await chat(mock, fault="malformed")
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_malformed_stream_line(mock: RunningMock) -> None:
    status, _, raw = await chat(mock, STREAM, fault="malformed")
    assert status == 200
    bad = []
    for event in raw.decode().split("\n\n"):
        payload = event.removeprefix("data: ")
        if event and payload != "[DONE]":
            try:
                orjson.loads(payload)
            except orjson.JSONDecodeError:
                bad.append(payload)
    assert len(bad) == 1


async def test_forced_latency(mock: RunningMock) -> None:
    start = time.monotonic()
    status, _, _ = await chat(mock, **{"x-mock-latency-ms": "60"})
    assert status == 200
    assert time.monotonic() - start >= 0.055


async def test_unknown_fault_is_a_400(mock: RunningMock) -> None:
    status, _, raw = await chat(mock, fault="teapot")
    assert status == 400
    assert orjson.loads(raw)["error"]["param"] == "x-mock-fault"


async def test_faults_apply_to_embeddings(mock: RunningMock) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            mock.url + "/v1/embeddings",
            json={"model": "e", "input": "x"},
            headers={"x-mock-fault": "503"},
        ) as resp,
    ):
        assert resp.status == 503


async def test_faults_are_counted(mock: RunningMock) -> None:
    for fault in ("503", "503", "malformed", "reset"):
        with contextlib.suppress(aiohttp.ClientConnectionError):
            await chat(mock, fault=fault)
    assert mock.engine.core.stats.faults == {"503": 2, "malformed": 1, "reset": 1}


async def test_rate_limit_429_and_headers(transport: Any) -> None:
    clock = FakeClock()
    config = MockConfig(rpm=2, tpm=1000, default_max_tokens=100)
    async with serve_mock(config, clock=clock, transport=transport) as mock:
        status, headers, _ = await chat(mock)
        assert status == 200
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "1"
        assert headers["x-ratelimit-reset-requests"] == "30s"
        assert headers["x-ratelimit-limit-tokens"] == "1000"
        assert headers["x-ratelimit-remaining-tokens"] == str(1000 - 5 - 100)
        assert headers["x-ratelimit-reset-tokens"] == "6.3s"
        assert (await chat(mock))[0] == 200
        status, headers, raw = await chat(mock)
        assert status == 429
        assert headers["retry-after"] == "30"
        assert headers["retry-after-ms"] == "30000"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        error = orjson.loads(raw)["error"]
        assert error["type"] == "requests"
        assert error["code"] == "rate_limit_exceeded"
        assert error["message"].startswith("Rate limit reached for requests")
        clock.now += 30
        assert (await chat(mock))[0] == 200
        clock.now += 60
        big = {**CHAT, "max_tokens": 600}
        assert (await chat(mock, big))[0] == 200
        status, _, raw = await chat(mock, big)
        assert status == 429
        assert orjson.loads(raw)["error"]["type"] == "tokens"
        assert mock.engine.core.stats.rate_limited == 2
