"""One front door: the same bad body gets the same error through the gateway (HTTP,
loopback) and through the in-process client, sync and async."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

import brace

from .conftest import ServerThread

HI = [{"role": "user", "content": "hi"}]

BAD_CHAT: list[dict[str, Any]] = [
    {"messages": HI},
    {"model": "", "messages": HI},
    {"model": 3, "messages": HI},
    {"model": "chat"},
    {"model": "chat", "messages": []},
    {"model": "chat", "messages": "hi"},
    {"model": "chat", "messages": ["hi"]},
    {"model": "chat", "messages": [{"content": "no role"}]},
    {"model": "chat", "messages": HI, "stream": "yes"},
    {"model": "chat", "messages": HI, "max_tokens": 0},
    {"model": "chat", "messages": HI, "max_completion_tokens": -1},
    {"model": "chat", "messages": HI, "n": True},
]
BAD_EMBEDDINGS: list[dict[str, Any]] = [
    {"input": "hi"},
    {"model": "", "input": "hi"},
    {"model": "chat"},
    {"model": "chat", "input": []},
    {"model": "chat", "input": 3},
]
CASES = [("chat/completions", b) for b in BAD_CHAT] + [("embeddings", b) for b in BAD_EMBEDDINGS]


@pytest.fixture(scope="module")
def front(servers: ServerThread) -> tuple[str, dict[str, Any]]:
    config = {"models": {"chat": {"deployments": [{"provider": "mock", "model": "m"}]}}}
    _, url = servers.gateway(config)
    return url, config


def _over_http(url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"{url}/v1/{path}", data=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    return info.value.code, orjson.loads(info.value.read())


def _create(client: Any, path: str) -> Any:
    return client.chat.completions.create if path == "chat" else client.embeddings.create


@pytest.mark.parametrize(("path", "body"), CASES, ids=[orjson.dumps(b).decode() for _, b in CASES])
def test_same_bad_body_same_error(
    front: tuple[str, dict[str, Any]], servers: ServerThread, path: str, body: dict[str, Any]
) -> None:
    url, config = front
    status, answer = _over_http(url, path, body)
    assert status == 400
    assert answer["error"]["code"] == "invalid_request"
    assert answer["error"]["param"]

    op = path.split("/")[0]
    with brace.Client(config) as client, pytest.raises(brace.BadRequest) as sync:
        _create(client, op)(**dict(body))
    aclient = brace.AsyncClient(config)

    async def inproc() -> None:
        try:
            await _create(aclient, op)(**dict(body))
        finally:
            await aclient.aclose()

    with pytest.raises(brace.BadRequest) as asyn:
        servers.call(inproc())
    for exc in (sync.value, asyn.value):
        assert type(exc) is brace.BadRequest
        assert exc.http_status == status
        assert exc.to_dict() == answer
