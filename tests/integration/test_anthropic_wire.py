"""AnthropicProvider over real loopback HTTP against a tiny replaying upstream.

The upstream records what the provider sent (URL, headers, body) and answers with
recorded Messages API responses, so these tests check the wire contract itself:
headers, the translated body, JSON and streamed answers, early close, errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from brace.config import Deployment
from brace.errors import (
    BadRequest,
    MalformedResponse,
    Overloaded,
    RateLimited,
    UpstreamAuthError,
    UpstreamBadRequest,
)
from brace.providers.anthropic import AnthropicProvider
from brace.stack import Request, Response, StreamResponse, collect_stream, frame_payloads

MESSAGE = {
    "id": "msg_wire",
    "type": "message",
    "role": "assistant",
    "model": "claude-upstream",
    "content": [{"type": "text", "text": "Bonjour"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 9, "output_tokens": 2, "cache_read_input_tokens": 4},
}


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


STREAM_HEAD = sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_s",
            "type": "message",
            "role": "assistant",
            "model": "claude-upstream",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 11, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Bon"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "jour"}},
)
STREAM_TAIL = sse(
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
    {"type": "message_stop"},
)


@dataclass
class Upstream:
    """What the fake upstream received, and what it should answer next."""

    seen: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    body: bytes = orjson.dumps(MESSAGE)
    headers: dict[str, str] = field(default_factory=dict)
    stream_parts: list[bytes] = field(default_factory=lambda: [STREAM_HEAD, STREAM_TAIL])
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to let a held stream continue past its first part."""
    hold_stream: bool = False
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        self.seen.append(
            (request.path, {k.lower(): v for k, v in request.headers.items()}, payload)
        )
        if self.status != 200 or not payload.get("stream"):
            return web.Response(
                status=self.status,
                body=self.body,
                headers={"content-type": "application/json", **self.headers},
            )
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i, part in enumerate(self.stream_parts):
                if i == 1 and self.hold_stream:
                    await self.hold.wait()
                await resp.write(part)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        await resp.write_eof()
        return resp


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    state = Upstream()
    app = web.Application()
    app.router.add_post("/v1/messages", state.handle)
    server = TestServer(app, host="127.0.0.1", port=0, handler_cancellation=True)
    await server.start_server()
    try:
        yield state, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def provider(url: str, session: aiohttp.ClientSession, **kw: Any) -> AnthropicProvider:
    dep = Deployment(
        provider="anthropic",
        model="claude-cfg",
        base_url=url,
        api_key=SecretStr("sk-ant-secret"),
        **kw,
    )
    return AnthropicProvider(dep, session)


def chat(stream: bool = False, **body: Any) -> Request:
    body.setdefault(
        "messages", [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    )
    return Request(
        operation="chat", model="claude", body={"model": "claude", **body}, stream=stream
    )


async def test_json_request_and_headers(
    upstream: tuple[Upstream, str], session: aiohttp.ClientSession
) -> None:
    state, url = upstream
    p = provider(url, session, headers={"anthropic-beta": "x-test"})
    resp = await p(chat(max_tokens=20, temperature=0.5, seed=3))
    assert isinstance(resp, Response)
    out = orjson.loads(resp.body)
    assert out == resp.json()
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "Bonjour"
    assert out["usage"]["prompt_tokens"] == 13
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 4

    path, headers, sent = state.seen[0]
    assert path == "/v1/messages"
    assert headers["x-api-key"] == "sk-ant-secret"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert headers["anthropic-beta"] == "x-test"
    assert "authorization" not in headers
    assert sent == {
        "model": "claude-cfg",
        "system": "Be kind.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 20,
        "temperature": 0.5,
    }
    assert "sk-ant-secret" not in repr(p)


async def test_no_key_sends_no_key_header(
    upstream: tuple[Upstream, str], session: aiohttp.ClientSession
) -> None:
    state, url = upstream
    dep = Deployment(provider="anthropic-mock", model="claude-mock", base_url=url)
    await AnthropicProvider(dep, session)(chat())
    assert "x-api-key" not in state.seen[0][1]


async def test_stream(upstream: tuple[Upstream, str], session: aiohttp.ClientSession) -> None:
    state, url = upstream
    resp = await provider(url, session)(chat(stream=True, stream_options={"include_usage": True}))
    assert isinstance(resp, StreamResponse)
    chunks = await collect_stream(resp)
    assert state.seen[0][2]["stream"] is True
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Bonjour"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 14
    assert {c["id"] for c in chunks} == {"msg_s"}


async def test_truncated_stream_raises(
    upstream: tuple[Upstream, str], session: aiohttp.ClientSession
) -> None:
    state, url = upstream
    state.stream_parts = [STREAM_HEAD]
    resp = await provider(url, session)(chat(stream=True))
    assert isinstance(resp, StreamResponse)
    with pytest.raises(MalformedResponse, match="truncated"):
        await collect_stream(resp)


async def test_early_close_releases_the_upstream(
    upstream: tuple[Upstream, str], session: aiohttp.ClientSession
) -> None:
    state, url = upstream
    state.hold_stream = True
    resp = await provider(url, session)(chat(stream=True))
    assert isinstance(resp, StreamResponse)
    first = await resp.chunks.__anext__()
    assert orjson.loads(frame_payloads(first)[0])["choices"][0]["delta"]["role"] == "assistant"
    await resp.aclose()
    # The upstream sees the disconnect while still generating (its handler is cancelled).
    await asyncio.wait_for(state.disconnected.wait(), timeout=5)


async def test_stream_error_event(
    upstream: tuple[Upstream, str], session: aiohttp.ClientSession
) -> None:
    state, url = upstream
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    state.stream_parts = [STREAM_HEAD, sse(error)]
    resp = await provider(url, session)(chat(stream=True))
    assert isinstance(resp, StreamResponse)
    with pytest.raises(Overloaded):
        await collect_stream(resp)


@pytest.mark.parametrize(
    ("status", "etype", "expected"),
    [
        (529, "overloaded_error", Overloaded),
        (429, "rate_limit_error", RateLimited),
        (401, "authentication_error", UpstreamAuthError),
        (400, "invalid_request_error", UpstreamBadRequest),
    ],
)
async def test_http_errors_are_classified(
    upstream: tuple[Upstream, str],
    session: aiohttp.ClientSession,
    status: int,
    etype: str,
    expected: type[Exception],
) -> None:
    state, url = upstream
    state.status = status
    state.body = orjson.dumps({"type": "error", "error": {"type": etype, "message": "nope"}})
    state.headers = {"retry-after": "2"}
    with pytest.raises(expected) as info:
        await provider(url, session)(chat())
    if isinstance(info.value, RateLimited):
        assert info.value.retry_after == 2.0


async def test_non_message_200_is_malformed(
    upstream: tuple[Upstream, str], session: aiohttp.ClientSession
) -> None:
    state, url = upstream
    state.body = b'{"choices": []}'
    with pytest.raises(MalformedResponse):
        await provider(url, session)(chat())


async def test_bad_request_is_raised_before_any_call(
    upstream: tuple[Upstream, str], session: aiohttp.ClientSession
) -> None:
    state, url = upstream
    with pytest.raises(BadRequest):
        await provider(url, session)(chat(n=3))
    assert state.seen == []


async def test_embeddings_are_refused(
    upstream: tuple[Upstream, str], session: aiohttp.ClientSession
) -> None:
    state, url = upstream
    req = Request(operation="embeddings", model="e", body={"input": "x"})
    with pytest.raises(UpstreamBadRequest, match="no embeddings") as info:
        await provider(url, session)(req)
    assert info.value.http_status == 400
    assert state.seen == []
