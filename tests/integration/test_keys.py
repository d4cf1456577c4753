"""Virtual keys through the gateway: the real openai SDK, real SQLite and PostgreSQL,
two gateways sharing one key database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from brace.config import BraceConfig, parse_config
from brace.errors import ConfigError
from brace.gateway import Gateway

from .conftest import ServerThread

MASTER = "test-master-key-0123456789"
MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]


def make_config(mock: str, db: str, *, keys_db: str | None = None, **extra: Any) -> BraceConfig:
    dep = {"provider": "mock", "model": "m", "base_url": f"{mock}/v1"}
    raw: dict[str, Any] = {
        "server": {"admin_key": "${BRACE_ADMIN_KEY}", **extra.pop("server", {})},
        "telemetry": {"database": db},
        "keys": {"database": keys_db} if keys_db else {},
        "models": {"chat": {"deployments": [dep]}, "other": {"deployments": [dep]}},
        **extra,
    }
    return parse_config(raw, env={"BRACE_ADMIN_KEY": MASTER})


async def admin(
    url: str, method: str, path: str, body: Any = None, *, key: str = MASTER
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{url}{path}", json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


def sdk(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def env(servers: ServerThread) -> Iterator[dict[str, Any]]:
    mock = servers.mock()
    gw, url = servers.gateway(make_config(mock, f"{servers.tmp}/keys.db"))
    yield {
        "mock": mock,
        "url": url,
        "db": f"{servers.tmp}/keys.db",
        # the gateway lives on the servers' loop: flush its request log there
        "flush": lambda: asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(gw.telemetry.store.flush(), servers.loop)
        ),
    }


async def test_no_key_unknown_key_and_a_created_key(env: dict[str, Any]) -> None:
    url = env["url"]
    async with aiohttp.ClientSession() as s, s.post(f"{url}/v1/chat/completions", json={}) as r:
        assert r.status == 401
        err = (await r.json())["error"]
        assert err["code"] == "missing_api_key" and "Authorization: Bearer" in err["message"]
    with pytest.raises(openai.AuthenticationError) as info:
        await sdk(url, "sk-brace-notakey-000000000000").chat.completions.create(
            model="chat", messages=MESSAGES
        )
    assert info.value.code == "invalid_api_key"
    assert "000000000000" not in info.value.message  # never echoed whole

    status, created = await admin(url, "POST", "/admin/keys", {"name": "app", "team": "search"})
    assert status == 201, created
    key = created["key"]
    assert key.startswith("sk-brace-") and len(key) > 40
    assert created["propagation"]["confirmed"] == created["propagation"]["instances"] >= 1
    answer = await sdk(url, key).chat.completions.create(model="chat", messages=MESSAGES)
    assert answer.choices[0].message.content
    # the master key works on every model too
    await sdk(url, MASTER).chat.completions.create(model="other", messages=MESSAGES)

    # listing never shows the key or its hash; the key's id is the request log's tenant
    status, listing = await admin(url, "GET", "/admin/keys")
    text = str(listing)
    assert key not in text and "key_hash" not in text
    mine = next(k for k in listing["data"] if k["id"] == created["id"])
    assert mine["state"] == "active" and mine["team"] == "search"
    await env["flush"]()
    status, logged = await admin(url, "GET", f"/admin/requests?tenant={created['id']}")
    assert status == 200 and len(logged["data"]) >= 1


async def test_the_database_holds_only_a_hash(env: dict[str, Any]) -> None:
    status, created = await admin(env["url"], "POST", "/admin/keys", {"name": "hashed"})
    assert status == 201
    await sdk(env["url"], created["key"]).chat.completions.create(model="chat", messages=MESSAGES)
    await env["flush"]()
    secret = created["key"].removeprefix("sk-brace-")
    for path in Path(env["db"]).parent.glob(Path(env["db"]).name + "*"):  # db, -wal, -shm
        assert secret.encode() not in path.read_bytes()


async def test_scope_expiry_and_revocation(env: dict[str, Any]) -> None:
    url = env["url"]
    status, created = await admin(
        url, "POST", "/admin/keys", {"name": "scoped", "models": ["chat"], "priority": "batch"}
    )
    assert status == 201
    client = sdk(url, created["key"])
    await client.chat.completions.create(model="chat", messages=MESSAGES)
    # a batch key's requests queue as batch, whatever their header says
    await client.chat.completions.create(
        model="chat", messages=MESSAGES, extra_headers={"x-brace-priority": "interactive"}
    )
    await env["flush"]()
    status, logged = await admin(url, "GET", f"/admin/requests?tenant={created['id']}")
    assert [r["priority"] for r in logged["data"]] == ["batch", "batch"]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await client.chat.completions.create(model="other", messages=MESSAGES)
    assert denied.value.status_code == 403
    assert "'other'" in denied.value.message and "chat" in denied.value.message
    models = await client.models.list()
    assert [m.id for m in models.data] == ["chat"]

    # expiry: a key whose expiry has passed is refused at once
    status, updated = await admin(url, "PATCH", f"/admin/keys/{created['id']}", {"expires_in": 0.2})
    assert status == 200 and updated["expires_at"]
    await asyncio.sleep(0.3)
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(model="chat", messages=MESSAGES)
    assert info.value.code == "key_expired"
    status, updated = await admin(
        url, "PATCH", f"/admin/keys/{created['id']}", {"expires_at": None}
    )
    assert updated["state"] == "active"
    await client.chat.completions.create(model="chat", messages=MESSAGES)

    status, revoked = await admin(url, "DELETE", f"/admin/keys/{created['id']}")
    assert status == 200 and revoked["state"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(model="chat", messages=MESSAGES)
    assert info.value.code == "key_revoked"


async def test_key_rate_limit_is_an_immediate_429(env: dict[str, Any]) -> None:
    status, created = await admin(env["url"], "POST", "/admin/keys", {"name": "slow", "rpm": 6})
    assert status == 201
    client = sdk(env["url"], created["key"])
    # a burst of 10 s of the rate: one request, then refused with an honest retry-after
    await client.chat.completions.create(model="chat", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    assert info.value.code == "key_rate_limited"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 10


async def test_bad_admin_input_is_a_clear_400(env: dict[str, Any]) -> None:
    url = env["url"]
    for body, param in (
        ({}, "name"),
        ({"name": "x", "models": ["nope"]}, "models"),
        ({"name": "x", "budgets": [{"period": "week", "limit_usd": 1}]}, "budgets.0.period"),
        ({"name": "x", "rpm": 0}, "rpm"),
        ({"name": "x", "expires_at": "tomorrow"}, None),
    ):
        status, err = await admin(url, "POST", "/admin/keys", body)
        assert status == 400, (body, err)
        assert err["error"]["type"] == "invalid_request_error"
        if param:
            assert err["error"]["param"] == param, err
    status, err = await admin(url, "GET", "/admin/keys/key_nope")
    assert status == 404 and err["error"]["code"] == "key_not_found"
    status, err = await admin(url, "GET", "/admin/keys", key="wrong")
    assert status == 401


# ----------------------------------------------------------------------------- many instances


def test_changes_take_effect_at_once_on_every_instance(
    servers: ServerThread, shared_db: str
) -> None:
    mock = servers.mock()
    urls = []
    for i in range(2):
        _, url = servers.gateway(
            make_config(mock, f"{servers.tmp}/log-{uuid.uuid4().hex[:6]}-{i}.db", keys_db=shared_db)
        )
        urls.append(url)
    a, b = urls

    async def scenario() -> None:
        status, created = await admin(
            a, "POST", "/admin/keys", {"name": "shared", "models": ["chat"]}
        )
        assert status == 201
        assert created["propagation"]["instances"] >= 2
        assert created["propagation"]["confirmed"] == created["propagation"]["instances"]
        on_b = sdk(b, created["key"])
        await on_b.chat.completions.create(model="chat", messages=MESSAGES)  # known on B at once

        status, _ = await admin(a, "PATCH", f"/admin/keys/{created['id']}", {"models": ["other"]})
        assert status == 200
        with pytest.raises(openai.PermissionDeniedError):
            await on_b.chat.completions.create(model="chat", messages=MESSAGES)

        status, revoked = await admin(a, "DELETE", f"/admin/keys/{created['id']}")
        assert revoked["propagation"]["confirmed"] == revoked["propagation"]["instances"]
        with pytest.raises(openai.AuthenticationError) as info:
            await on_b.chat.completions.create(model="other", messages=MESSAGES)
        assert info.value.code == "key_revoked"

    servers.call(scenario())


# ----------------------------------------------------------------------------- local mode


def test_local_mode_serves_without_keys_but_not_on_a_public_address(
    servers: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    mock = servers.mock()
    dep = {"provider": "mock", "model": "m", "base_url": f"{mock}/v1"}
    raw = {
        "telemetry": {"database": f"{servers.tmp}/local.db"},
        "models": {"chat": {"deployments": [dep]}},
    }
    with caplog.at_level("WARNING"):
        _, url = servers.gateway(parse_config(raw, env={}))
    assert any("LOCAL MODE" in r.getMessage() for r in caplog.records)

    async def call() -> None:
        answer = await sdk(url, "anything").chat.completions.create(model="chat", messages=MESSAGES)
        assert answer.choices

    servers.call(call())

    async def start_public(cfg: BraceConfig) -> int:
        """Start on every address; the admin API's status from 127.0.0.1."""
        gw = Gateway(cfg)
        try:
            port = await gw.start(host="0.0.0.0", port=0)
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"http://127.0.0.1:{port}/admin/keys") as r,
            ):
                return r.status
        finally:
            await gw.stop()

    with pytest.raises(ConfigError) as info:
        servers.call(start_public(parse_config(raw, env={})))
    assert "--allow-unauthenticated" in info.value.message
    allowed = {**raw, "server": {"allow_unauthenticated": True}}
    # served, but the admin API (which could create keys) is off without a master key,
    # although the config's own server.host is loopback
    assert servers.call(start_public(parse_config(allowed, env={}))) == 403
    # a master key ends local mode: public binding is then fine
    keyed = {**raw, "server": {"admin_key": "${BRACE_ADMIN_KEY}"}}
    assert servers.call(start_public(parse_config(keyed, env={"BRACE_ADMIN_KEY": MASTER}))) == 401
