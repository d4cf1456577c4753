"""The resilience engine against ``brace mock`` fault profiles, over real HTTP,
through the gateway with the real ``openai`` SDK and through ``brace.Client``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

import brace
from brace.config import parse_config

from .conftest import ServerProcess, ServerThread

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]


async def stats(mock: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{mock}/_mock/stats") as r:
        return dict(await r.json())


async def set_mock(mock: str, config: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{mock}/_mock/config", json=config) as r:
        assert r.status == 200, await r.text()


def dep(name: str, mock: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "mock", "name": name, "model": "m", "base_url": f"{mock}/v1", **extra}


async def run_load(
    create: Any, n: int, concurrency: int
) -> tuple[list[float], list[BaseException], list[dict[str, str]]]:
    latencies: list[float] = []
    errors: list[BaseException] = []
    headers: list[dict[str, str]] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            start = time.perf_counter()
            try:
                res = await create()
                headers.append(dict(res.headers))
            except Exception as exc:
                errors.append(exc)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(one() for _ in range(n)))
    return sorted(latencies), errors, headers


def p99(latencies: list[float]) -> float:
    return latencies[int(0.99 * len(latencies)) - 1]


@pytest.mark.parametrize("hedge", [False, True], ids=["default", "hedging"])
async def test_sick_deployment_is_absorbed(
    server_process: Callable[[dict[str, Any]], ServerProcess], hedge: bool
) -> None:
    """One deployment answers 503 on 40% of calls and hangs on 5%, the other is healthy:
    1,000 requests at concurrency 32 → no client-visible error, upstream calls ≤ 1.1×
    requests, p99 < 2 s with the default timeouts (< 1 s with hedging)."""
    group: dict[str, Any] = {
        "deployments": [
            {"provider": "mock", "name": "sick", "model": "m", "base_url": "{mock:sick}/v1"},
            {"provider": "mock", "name": "healthy", "model": "m", "base_url": "{mock:healthy}/v1"},
        ]
    }
    if hedge:
        group["hedge"] = {"enabled": True}
    sp = server_process(
        {
            "mocks": {
                "sick": {
                    "latency": "uniform(5,15)",
                    "error_rates": {"503": 0.4, "hang": 0.05},
                    "hang_seconds": 3,
                    "seed": 7,
                },
                "healthy": {"latency": "uniform(5,15)", "seed": 8},
            },
            "gateway": {"models": {"chat": group}},
        }
    )
    async with openai.AsyncOpenAI(
        base_url=f"{sp.gateway}/v1", api_key="x", max_retries=0
    ) as client:
        latencies, errors, _ = await run_load(
            lambda: client.chat.completions.with_raw_response.create(
                model="chat", messages=MESSAGES
            ),
            1000,
            32,
        )
    calls = sum([(await stats(url))["total_requests"] for url in sp.mocks.values()])
    assert errors == []
    assert calls <= 1.1 * 1000, calls
    assert p99(latencies) < (1.0 if hedge else 2.0), p99(latencies)


async def test_breaker_isolates_a_deployment_that_goes_down_and_readmits_it(
    servers: ServerThread,
) -> None:
    a = servers.mock(latency=2)
    b = servers.mock(latency=2)
    group = {
        "deployments": [dep("a", a), dep("b", b)],
        "breaker": {"open_for": 0.5, "min_requests": 5, "window": 5},
    }
    gw, url = servers.gateway({"models": {"chat": group}})
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

    def breaker_state() -> str:
        deps = {d["id"]: d for d in gw.engine.deployments()["chat"]}
        return str(deps["a"]["breaker"]["state"])

    async def traffic(seconds: float) -> list[BaseException]:
        end = time.monotonic() + seconds
        errors: list[BaseException] = []

        async def worker() -> None:
            while time.monotonic() < end:
                try:
                    await client.chat.completions.create(model="chat", messages=MESSAGES)
                except Exception as exc:
                    errors.append(exc)

        await asyncio.gather(*(worker() for _ in range(8)))
        return errors

    assert await traffic(0.3) == []
    await set_mock(a, {"error_rates": {"503": 1.0}})
    went_down = time.monotonic()
    opened_after = None
    errors: list[BaseException] = []
    while time.monotonic() - went_down < 3:
        errors += await traffic(0.05)
        if breaker_state() != "closed":
            opened_after = time.monotonic() - went_down
            break
    assert opened_after is not None and opened_after < 1.0, opened_after
    assert errors == []  # the retries absorbed every 503 meanwhile

    before = (await stats(a))["total_requests"]
    await traffic(0.3)  # open: a sees at most the half-open probes
    assert (await stats(a))["total_requests"] - before <= 2 * 3

    await set_mock(a, {"error_rates": {}})
    recovered = time.monotonic()
    while breaker_state() != "closed" and time.monotonic() - recovered < 5:
        assert await traffic(0.1) == []
    assert breaker_state() == "closed"
    before_a, before_b = (await stats(a))["total_requests"], (await stats(b))["total_requests"]
    assert await traffic(0.5) == []
    served_a = (await stats(a))["total_requests"] - before_a
    served_b = (await stats(b))["total_requests"] - before_b
    assert served_a >= 3 and served_a >= 0.2 * served_b, (served_a, served_b)  # back in rotation

    # the breaker state is visible through the admin API
    async with aiohttp.ClientSession() as s, s.get(f"{url}/admin/deployments") as r:
        body = await r.json()
    assert {d["id"] for d in body["groups"]["chat"]} == {"a", "b"}
    assert all(d["breaker"]["state"] == "closed" for d in body["groups"]["chat"])


async def test_stream_stalled_before_first_chunk_fails_over(servers: ServerThread) -> None:
    hung = servers.mock()
    healthy = servers.mock()
    _, url = servers.gateway(
        {
            "models": {
                "chat": {
                    "deployments": [
                        dep(
                            "hung",
                            hung,
                            headers={"x-mock-fault": "hang"},
                            timeouts={"first_token": 0.3},
                            weight=100,
                        ),
                        dep("healthy", healthy, weight=0.01),
                    ],
                }
            }
        }
    )
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, stream=True
    )
    chunks = [c async for c in raw.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert raw.headers["x-brace-deployment"] == "healthy"
    assert raw.headers["x-brace-attempts"] == "2"


async def test_stream_stalled_after_first_chunk_ends_with_error_event(
    servers: ServerThread,
) -> None:
    mock = servers.mock(stall_seconds=30)
    _, url = servers.gateway(
        {
            "models": {
                "chat": {
                    "deployments": [
                        dep("s", mock, headers={"x-mock-fault": "stall"}, timeouts={"stall": 0.3})
                    ]
                }
            }
        }
    )
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{url}/v1/chat/completions",
            json={"model": "chat", "messages": MESSAGES, "stream": True},
        ) as r,
    ):
        assert r.status == 200
        events = (await r.read()).decode().strip().split("\n\n")
    assert len(events) >= 2
    last = orjson.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == "upstream_timeout"
    assert "stalled" in last["error"]["message"]
    assert "data: [DONE]" not in events


class ContextLimited:
    """An upstream with a tiny context window: long prompts get OpenAI's 400."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        size = sum(len(str(m.get("content", ""))) for m in body["messages"])
        if size > self.limit:
            return web.json_response(
                {
                    "error": {
                        "message": f"This model's maximum context length is {self.limit} tokens.",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
                status=400,
            )
        if body.get("temperature") == 99:
            return web.json_response(
                {
                    "error": {
                        "message": "temperature out of range",
                        "type": "invalid_request_error",
                        "param": "temperature",
                        "code": None,
                    }
                },
                status=400,
            )
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "small"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


async def test_context_window_falls_back_to_larger_group_and_400_is_never_retried(
    servers: ServerThread,
) -> None:
    small = ContextLimited(limit=50)
    small_url = servers.serve_app(small.app())
    big = servers.mock()
    _, url = servers.gateway(
        {
            "models": {
                "chat": {
                    "deployments": [
                        {
                            "provider": "openai",
                            "name": "small-1",
                            "model": "s",
                            "base_url": f"{small_url}/v1",
                        },
                        {
                            "provider": "openai",
                            "name": "small-2",
                            "model": "s",
                            "base_url": f"{small_url}/v1",
                        },
                    ],
                    "fallbacks": [{"to": "chat-large", "on": ["context_window_exceeded"]}],
                },
                "chat-large": {"deployments": [dep("large", big)]},
            }
        }
    )
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "x" * 200}]
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-brace-fallback"] == "chat>chat-large"
    assert raw.headers["x-brace-deployment"] == "large"
    assert raw.headers["x-brace-attempts"] == "2"
    assert small.calls == 1  # a context-window error is not retried on the other small deployment

    small.calls = 0
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="chat", messages=MESSAGES, temperature=99)
    assert small.calls == 1
    assert "temperature" in str(info.value)


async def test_everything_failing_names_every_attempt(servers: ServerThread) -> None:
    a = servers.mock(retry_after_seconds=0.01)
    b = servers.mock(retry_after_seconds=0.01)
    _, url = servers.gateway(
        {
            "models": {
                "chat": {
                    "deployments": [dep("a", a, headers={"x-mock-fault": "503"})],
                    "fallbacks": [{"to": "backup"}],
                },
                "backup": {"deployments": [dep("b", b, headers={"x-mock-fault": "500"})]},
            }
        }
    )
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="chat", messages=MESSAGES)
    message = str(info.value)
    assert "a: overloaded" in message and "b: server_error" in message
    assert info.value.response.headers["x-brace-fallback"] == "chat>backup"
    assert int(info.value.response.headers["x-brace-attempts"]) >= 2


async def test_deadline_header_bounds_the_whole_request(servers: ServerThread) -> None:
    slow = servers.mock(latency=2000)
    _, url = servers.gateway({"models": {"chat": {"deployments": [dep("slow", slow)]}}})
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(
            model="chat", messages=MESSAGES, extra_headers={"x-brace-timeout": "0.3"}
        )
    assert info.value.status_code == 504
    assert time.monotonic() - start < 1.5
    assert info.value.body["code"] == "deadline_exceeded"  # type: ignore[index]


async def test_inprocess_client_runs_the_same_stack(servers: ServerThread) -> None:
    sick = servers.mock(error_rates={"503": 0.5}, seed=3)
    healthy = servers.mock()
    config = parse_config(
        {"models": {"chat": {"deployments": [dep("sick", sick), dep("healthy", healthy)]}}}, env={}
    )
    async with brace.AsyncClient(config) as client:
        for _ in range(30):
            reply = await client.chat.completions.create(model="chat", messages=MESSAGES)
            assert reply.choices[0].message.content
        stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text
        with pytest.raises(brace.ModelNotFound):
            await client.chat.completions.create(model="nope", messages=MESSAGES)


def test_sync_inprocess_client(servers: ServerThread) -> None:
    mock = servers.mock()
    with brace.Client({"models": {"chat": {"deployments": [dep("m", mock)]}}}) as client:
        reply = client.chat.completions.create(model="chat", messages=MESSAGES)
        assert reply.choices[0].finish_reason == "stop"
        chunks = list(client.chat.completions.create(model="chat", messages=MESSAGES, stream=True))
        assert chunks[-1].choices[0].finish_reason == "stop"
        emb = client.embeddings.create(model="chat", input="hi")
        assert emb.data[0].embedding
