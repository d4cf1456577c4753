"""Bad input, upstream failures, pass-through fidelity and disconnects, over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from .conftest import ServerThread

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


class Recorder:
    """A tiny OpenAI-compatible upstream that records what it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.cancelled = threading.Event()
        self.stream_started = threading.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            try:
                for i in range(1000):
                    chunk = {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}
                        ],
                    }
                    await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                    self.stream_started.set()
                    await asyncio.sleep(0.01)
            except (asyncio.CancelledError, ConnectionResetError):
                self.cancelled.set()
                raise
            return resp
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


@pytest.fixture(scope="module")
def env(servers: ServerThread) -> dict[str, Any]:
    mock = servers.mock(retry_after_seconds=0.05)
    recorder = Recorder()
    rec_url = servers.serve_app(recorder.app())

    def dep(fault: str | None = None, **extra: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"provider": "mock", "model": "m", "base_url": f"{mock}/v1", **extra}
        if fault:
            d["headers"] = {"x-mock-fault": fault}
        return {"deployments": [d]}

    _, url = servers.gateway(
        {
            "server": {"max_body_bytes": 4096},
            "models": {
                "chat": dep(),
                "down503": dep("503"),
                "limited": dep("429"),
                "broken": dep("500"),
                "malformed": dep("malformed"),
                "truncated": dep("truncate"),
                "reset": dep("reset"),
                "refused": {
                    "deployments": [
                        {"provider": "mock", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
                    ]
                },
                "record": {
                    "deployments": [
                        {
                            "provider": "openai",
                            "model": "upstream-model",
                            "base_url": f"{rec_url}/v1",
                            "api_key": "${SECRET_KEY:-sk-test-secret}",
                            "headers": {"x-extra": "1"},
                        }
                    ]
                },
            },
        }
    )
    return {"url": url, "recorder": recorder}


async def post(
    url: str, data: bytes | str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=data, headers=headers or {"Content-Type": "application/json"}) as r,
    ):
        raw = await r.read()
        return r.status, orjson.loads(raw), {k.lower(): v for k, v in r.headers.items()}


def assert_openai_error(body: dict[str, Any]) -> dict[str, Any]:
    err = body["error"]
    assert set(err) == {"message", "type", "code", "param"}
    assert isinstance(err["message"], str) and err["message"]
    return err


@pytest.mark.parametrize(
    ("data", "status", "param", "fragment"),
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b"", 400, None, "empty"),
        (b"[1, 2]", 400, None, "JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model", "'model' is required"),
        (b'{"model": "chat"}', 400, "messages", "'messages' is required"),
        (b'{"model": "chat", "messages": []}', 400, "messages", "non-empty"),
        (b'{"model": "chat", "messages": ["hi"]}', 400, "messages[0]", "must be an object"),
        (
            b'{"model": "chat", "messages": [{"content": "x"}]}',
            400,
            "messages[0].role",
            "role is required",
        ),
        (
            b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            400,
            "stream",
            "true or false",
        ),
        (
            b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            400,
            "max_tokens",
            "positive integer",
        ),
        (
            b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "model",
            "not configured",
        ),
    ],
)
async def test_bad_input_is_openai_shaped(
    env: dict[str, Any], data: bytes, status: int, param: str | None, fragment: str
) -> None:
    code, body, headers = await post(f"{env['url']}/v1/chat/completions", data)
    assert code == status
    err = assert_openai_error(body)
    assert err["param"] == param
    assert fragment in err["message"]
    assert headers["x-request-id"]


async def test_body_over_limit_is_413(env: dict[str, Any]) -> None:
    big = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]})
    code, body, _ = await post(f"{env['url']}/v1/chat/completions", big)
    assert code == 413
    assert "max_body_bytes" in assert_openai_error(body)["message"]


async def test_chunked_body_over_limit_is_413(env: dict[str, Any]) -> None:
    async def gen():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 1000

    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{env['url']}/v1/chat/completions", data=gen()) as r,
    ):
        assert r.status == 413
        assert_openai_error(await r.json())


async def test_embeddings_bad_input(env: dict[str, Any]) -> None:
    code, body, _ = await post(f"{env['url']}/v1/embeddings", b'{"model": "chat"}')
    assert code == 400 and assert_openai_error(body)["param"] == "input"


async def test_unknown_path_and_method(env: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{env['url']}/v1/nothing") as r:
            assert r.status == 404
            assert_openai_error(await r.json())
        async with s.get(f"{env['url']}/v1/chat/completions") as r:
            assert r.status == 405
            assert r.headers["Allow"] == "POST"
            assert_openai_error(await r.json())


async def test_health_and_ready(env: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as s:
        for path in ("/healthz", "/readyz"):
            async with s.get(env["url"] + path) as r:
                assert r.status == 200


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("down503", 503, "overloaded"),
        ("limited", 429, "rate_limit_exceeded"),
        ("broken", 502, "upstream_server_error"),
        ("malformed", 502, "upstream_malformed_response"),
        ("reset", 502, "upstream_connection_error"),
        ("refused", 502, "upstream_connection_error"),
    ],
)
async def test_upstream_failures_map_to_clear_errors(
    env: dict[str, Any], model: str, status: int, code: str
) -> None:
    got, body, headers = await post(
        f"{env['url']}/v1/chat/completions", orjson.dumps({**CHAT, "model": model})
    )
    assert got == status
    err = assert_openai_error(body)
    assert err["code"] == code
    assert "deployment" in err["message"]
    if model == "limited":
        assert float(headers["retry-after"]) >= 0
        assert "retry-after-ms" in headers


async def test_stream_failure_before_first_chunk_has_real_status(env: dict[str, Any]) -> None:
    client = openai.AsyncOpenAI(base_url=f"{env['url']}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(
            model="down503", messages=CHAT["messages"], stream=True
        )  # type: ignore[call-overload]
    assert info.value.status_code == 503


async def test_truncated_stream_ends_with_sse_error_event(env: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{env['url']}/v1/chat/completions", json={**CHAT, "model": "truncated", "stream": True}
        ) as r,
    ):
        assert r.status == 200
        text = (await r.read()).decode()
    events = [e[len("data: ") :] for e in text.strip().split("\n\n")]
    assert "[DONE]" not in events
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "upstream_malformed_response"
    # and the SDK surfaces it as an error, not a silent truncation
    client = openai.AsyncOpenAI(base_url=f"{env['url']}/v1", api_key="x", max_retries=0)
    stream = await client.chat.completions.create(
        model="truncated", messages=CHAT["messages"], stream=True
    )  # type: ignore[call-overload]
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_passthrough_fidelity_and_credentials(env: dict[str, Any]) -> None:
    rec: Recorder = env["recorder"]
    body = {
        "model": "record",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.invalid/cat.png", "detail": "low"},
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            },
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
        "some_future_field": {"nested": [1, 2, 3]},
        "temperature": 0.2,
    }
    code, res, _ = await post(
        f"{env['url']}/v1/chat/completions",
        orjson.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": "Bearer client-key"},
    )
    assert code == 200 and res["choices"][0]["message"]["content"] == "ok"
    sent = rec.bodies[-1]
    assert sent == {**body, "model": "upstream-model"}
    headers = {k.lower(): v for k, v in rec.headers[-1].items()}
    # the deployment's key goes upstream, never the caller's
    assert headers["authorization"] == "Bearer sk-test-secret"
    assert headers["x-extra"] == "1"


async def test_client_disconnect_mid_stream_cancels_upstream(env: dict[str, Any]) -> None:
    rec: Recorder = env["recorder"]
    rec.cancelled.clear()
    rec.stream_started.clear()
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            f"{env['url']}/v1/chat/completions", json={**CHAT, "model": "record", "stream": True}
        )
        assert r.status == 200
        await r.content.readuntil(b"\n\n")
        r.close()  # hang up mid-stream
    assert await asyncio.to_thread(rec.cancelled.wait, 5), "the upstream stream was not cancelled"
