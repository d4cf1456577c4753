"""Budgets through the gateway: a 100-request race on a nearly spent key, spend that
survives a restart, team budgets, soft-budget alerts, and Redis-shared holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from brace.config import BraceConfig, parse_config
from brace.errors import BudgetExceeded
from brace.gateway import Gateway
from brace.keys import Budget, LocalLedger, Scope, open_key_store
from brace.keys._store import KeyStore

from ._services import shared_redis_up
from .conftest import ServerThread
from .test_keys import MASTER, admin, sdk

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
PRICES = {"input": 1000.0, "output": 2000.0}  # USD per million tokens: cents per request
MAX_TOKENS = 50
# worst case of one request: (5 bytes + 8) prompt tokens and 50 completion tokens
WORST = (13 * PRICES["input"] + MAX_TOKENS * PRICES["output"]) / 1e6


def make_config(mock: str, tmp: str, name: str, **extra: Any) -> BraceConfig:
    dep = {"provider": "mock", "model": "m", "base_url": f"{mock}/v1", "prices": PRICES}
    raw: dict[str, Any] = {
        "server": {"admin_key": "${BRACE_ADMIN_KEY}", **extra.pop("server", {})},
        "telemetry": {"database": f"{tmp}/{name}.db"},
        "keys": {"database": f"{tmp}/{name}-keys.db", **extra.pop("keys", {})},
        "models": {"chat": {"deployments": [dep]}},
        **extra,
    }
    return parse_config(raw, env={"BRACE_ADMIN_KEY": MASTER})


def start(servers: ServerThread, cfg: BraceConfig) -> tuple[Gateway, str]:
    async def go() -> tuple[Gateway, str]:
        gw = Gateway(cfg)
        port = await gw.start(host="127.0.0.1", port=0)
        return gw, f"http://127.0.0.1:{port}"

    return servers.call(go())


async def race(url: str, key: str, n: int = 100) -> tuple[int, list[openai.APIStatusError]]:
    client = sdk(url, key)

    async def one() -> openai.APIStatusError | None:
        try:
            await client.chat.completions.create(
                model="chat", messages=MESSAGES, max_tokens=MAX_TOKENS
            )
        except openai.APIStatusError as exc:
            return exc
        return None

    results = await asyncio.gather(*(one() for _ in range(n)))
    errors = [r for r in results if r is not None]
    return n - len(errors), errors


async def race_http(url: str, key: str, n: int) -> tuple[int, list[dict[str, Any]]]:
    """:func:`race` over plain aiohttp (``n`` concurrent requests; the refusals' bodies)."""
    body = {"model": "chat", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as s:

        async def one() -> dict[str, Any] | None:
            async with s.post(f"{url}/v1/chat/completions", json=body) as r:
                answer = await r.json()
                if r.status == 200:
                    return None
                headers = {k.lower(): v for k, v in r.headers.items()}
                return {"status": r.status, "headers": headers, **answer["error"]}

        results = await asyncio.gather(*(one() for _ in range(n)))
    errors = [r for r in results if r is not None]
    return n - len(errors), errors


def day(usage: list[dict[str, Any]]) -> dict[str, Any]:
    return next(u for u in usage if u["period"] == "day")


@pytest.fixture(scope="module")
def mock(servers: ServerThread) -> str:
    return servers.mock(reply_tokens=20)


def test_a_race_of_100_on_a_key_with_budget_for_10_and_a_restart(
    servers: ServerThread, mock: str
) -> None:
    name = f"race-{uuid.uuid4().hex[:6]}"
    gw, url = start(servers, make_config(mock, servers.tmp, name))
    limit = round(10 * WORST, 6)

    async def first() -> tuple[str, str, float, int]:
        status, created = await admin(
            url,
            "POST",
            "/admin/keys",
            {"name": "racer", "budgets": [{"period": "day", "limit_usd": limit}]},
        )
        assert status == 201, created
        ok, errors = await race_http(url, created["key"], 100)
        assert ok >= 10  # every hold fits until the budget is spent...
        assert errors, "...and then requests are refused"
        for err in errors:
            assert err["status"] == 429 and err["code"] == "budget_exceeded"
            assert err["headers"]["x-should-retry"] == "false"
            assert "daily hard budget" in err["message"] and "resets at" in err["message"]
            assert 0 < int(err["headers"]["retry-after"]) <= 86_400
        status, shown = await admin(url, "GET", f"/admin/keys/{created['id']}")
        spent = day(shown["usage"])
        # holds were true upper bounds: no overshoot at all, nothing left held
        assert 0 < spent["spent_usd"] <= limit + 1e-9
        assert spent["held_usd"] == 0
        assert spent["used"] == pytest.approx(spent["spent_usd"] / limit)
        # the ledger agrees with the request log, request by request
        await gw.telemetry.store.flush()
        status, logged = await admin(
            url, "GET", f"/admin/requests?tenant={created['id']}&limit=200"
        )
        costs = [r["cost_usd"] for r in logged["data"] if r["status"] == 200]
        assert len(costs) == ok
        assert sum(costs) == pytest.approx(spent["spent_usd"], rel=1e-6)
        return created["key"], created["id"], spent["spent_usd"], ok

    key, key_id, spent, _ = servers.call(first())
    servers.call(gw.stop())

    # a new gateway on the same database: the spend is still there, and still enforced
    gw2, url2 = start(servers, make_config(mock, servers.tmp, name))

    async def after_restart() -> None:
        status, shown = await admin(url2, "GET", f"/admin/keys/{key_id}")
        assert day(shown["usage"])["spent_usd"] == pytest.approx(spent, rel=1e-9)
        # what is left (less than the holds that were in flight when the race was
        # refused) is still enforced: nothing more than the budget is ever spent
        ok, errors = await race(url2, key, n=20)
        assert errors and all(e.code == "budget_exceeded" for e in errors)
        status, shown = await admin(url2, "GET", f"/admin/keys/{key_id}")
        assert day(shown["usage"])["spent_usd"] <= limit + 1e-9
        # raising the budget lets it spend again
        status, patched = await admin(
            url2,
            "PATCH",
            f"/admin/keys/{key_id}",
            {"budgets": [{"period": "day", "limit_usd": limit + 5 * WORST}]},
        )
        assert status == 200, patched
        ok, _ = await race(url2, key, n=3)
        assert ok == 3
        # a $0 budget: the openai SDK (2 retries by default) gets the refusal once
        # and does not retry it (x-should-retry: false)
        status, _ = await admin(
            url2,
            "PATCH",
            f"/admin/keys/{key_id}",
            {"budgets": [{"period": "day", "limit_usd": 0}]},
        )
        refusals = f"/admin/requests?tenant={key_id}&status=429&limit=500"
        await gw2.telemetry.store.flush()
        before = len((await admin(url2, "GET", refusals))[1]["data"])
        client = openai.AsyncOpenAI(base_url=f"{url2}/v1", api_key=key)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="chat", messages=MESSAGES)
        assert info.value.code == "budget_exceeded"
        await gw2.telemetry.store.flush()
        assert len((await admin(url2, "GET", refusals))[1]["data"]) == before + 1

    servers.call(after_restart())
    servers.call(gw2.stop())


def test_team_budget_soft_alerts_and_streams(servers: ServerThread, mock: str) -> None:
    hooks: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        hooks.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    hook_url = servers.serve_app(app)
    name = f"team-{uuid.uuid4().hex[:6]}"
    gw, url = start(
        servers, make_config(mock, servers.tmp, name, keys={"alert_webhook": f"{hook_url}/hook"})
    )

    async def scenario() -> None:
        status, team = await admin(
            url,
            "PUT",
            "/admin/teams/search",
            {"budgets": [{"period": "month", "limit_usd": round(4 * WORST, 6)}]},
        )
        assert status == 200 and team["budgets"][0]["period"] == "month"
        keys = []
        for n in ("a", "b"):
            status, created = await admin(url, "POST", "/admin/keys", {"name": n, "team": "search"})
            keys.append(created["key"])
        # two keys without budgets of their own share the team's: ~4 holds' worth
        ok_a, _ = await race(url, keys[0], n=6)
        ok_b, errors = await race(url, keys[1], n=10)
        assert errors and all(e.code == "budget_exceeded" for e in errors)
        assert ok_a + ok_b >= 4  # the team's budget holds four worst cases
        assert "team 'search'" in errors[0].message and "monthly" in errors[0].message
        status, teams = await admin(url, "GET", "/admin/teams")
        search = next(t for t in teams["data"] if t["team"] == "search")
        month = next(u for u in search["usage"] if u["period"] == "month")
        assert 0 < month["spent_usd"] <= 4 * WORST + 1e-9
        assert search["keys"] == 2

        # a soft budget alerts (log, webhook) and never refuses
        status, soft = await admin(
            url,
            "POST",
            "/admin/keys",
            {"name": "soft", "budgets": [{"period": "total", "limit_usd": 0.05, "mode": "soft"}]},
        )
        client = sdk(url, soft["key"])
        for _ in range(4):
            await client.chat.completions.create(
                model="chat", messages=MESSAGES, max_tokens=MAX_TOKENS
            )
        # embeddings of a token array are priced too (no 500 on an int list)
        emb = await client.embeddings.create(model="chat", input=[1, 2, 3])
        assert emb.data
        # a stream settles its real cost when it ends
        before = day((await admin(url, "GET", f"/admin/keys/{soft['id']}"))[1]["usage"])
        stream = await client.chat.completions.create(
            model="chat", messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
        )
        async for _ in stream:
            pass
        for _ in range(50):
            after = day((await admin(url, "GET", f"/admin/keys/{soft['id']}"))[1]["usage"])
            if after["spent_usd"] > before["spent_usd"]:
                break
            await asyncio.sleep(0.02)
        assert after["spent_usd"] > before["spent_usd"] and after["held_usd"] == 0
        for _ in range(100):
            if len(hooks) >= 2:
                break
            await asyncio.sleep(0.02)
        thresholds = sorted(h["threshold"] for h in hooks if h["scope"] == f"key:{soft['id']}")
        assert thresholds == [0.8, 1.0]
        assert hooks[0]["type"] == "brace.budget_alert" and hooks[0]["limit_usd"] == 0.05
        # ...and counts them in /metrics
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{url}/metrics", headers={"Authorization": f"Bearer {MASTER}"}) as r,
        ):
            families = {f.name: f for f in text_string_to_metric_families(await r.text())}
        assert families["brace_budget_alerts"].samples[0].value == 2
        assert families["brace_keys_local_mode"].samples[0].value == 0
        assert families["brace_keys_active"].samples[0].value == 3

    servers.call(scenario())
    servers.call(gw.stop())


@pytest.fixture
def own_servers() -> Iterator[ServerThread]:
    """A loop of its own (the module's carries other tests' gateways and clients)."""
    st = ServerThread()
    try:
        yield st
    finally:
        st.close()


@pytest.mark.skipif(not shared_redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_two_gateways_share_holds_through_redis(own_servers: ServerThread) -> None:
    servers = own_servers
    mock = servers.mock(reply_tokens=20)
    name = f"redis-{uuid.uuid4().hex[:6]}"
    shared_keys = f"{servers.tmp}/{name}-shared-keys.db"
    extra = {
        "server": {
            "redis_url": "redis://127.0.0.1:6379/0",
            "instance_namespace": f"brace-test-{name}",
        },
        "keys": {"database": shared_keys},
    }
    gws = [start(servers, make_config(mock, servers.tmp, f"{name}-{i}", **extra)) for i in range(2)]
    (_, a), (_, b) = gws
    limit = round(10 * WORST, 6)

    async def scenario() -> None:
        status, created = await admin(
            a,
            "POST",
            "/admin/keys",
            {"name": "spread", "budgets": [{"period": "total", "limit_usd": limit}]},
        )
        assert status == 201 and created["propagation"]["confirmed"] == 2
        (ok_a, err_a), (ok_b, err_b) = await asyncio.gather(
            race_http(a, created["key"], 50), race_http(b, created["key"], 50)
        )
        assert ok_a + ok_b >= 10
        assert {(e["status"], e["code"]) for e in err_a + err_b} == {(429, "budget_exceeded")}
        # both gateways answer from the same shared ledger
        totals = []
        for url in (a, b):
            status, shown = await admin(url, "GET", f"/admin/keys/{created['id']}")
            total = next(u for u in shown["usage"] if u["period"] == "total")
            assert total["held_usd"] == pytest.approx(0, abs=1e-12)
            totals.append(total["spent_usd"])
        assert totals[0] == pytest.approx(totals[1], rel=1e-9)
        assert 0 < totals[0] <= limit + 1e-9

    servers.call(scenario())
    for gw, _ in gws:
        servers.call(gw.stop())


# ----------------------------------------------------------------------------- the ledger's database

NOON = 1_795_694_400.0  # 2026-11-26T12:00:00Z


def day_scope(limit: float) -> list[Scope]:
    return [Scope("key:k1", "key 'k1'", (Budget("day", limit),))]


async def test_spend_persists_and_sums_over_instances(shared_db: str) -> None:
    db = shared_db
    stores: list[KeyStore] = [open_key_store(db), open_key_store(db)]
    for s in stores:
        await s.start()
    try:
        a = LocalLedger(stores[0], wall=lambda: NOON)
        b = LocalLedger(stores[1], wall=lambda: NOON)
        await a.start()
        await b.start()
        for ledger, cost in ((a, 0.25), (b, 0.5)):
            hold = await ledger.reserve(day_scope(10.0), cost)
            await ledger.settle(hold, cost, day_scope(10.0))
        await a.sync()
        await b.sync()
        await a.sync()  # a now also sees b's spend
        day = (await a.usage(day_scope(10.0)[0]))[1]
        assert day["spent_usd"] == pytest.approx(0.75)
        await a.aclose()
        await b.aclose()
        fresh = LocalLedger(stores[0], wall=lambda: NOON)
        await fresh.start()
        assert (await fresh.usage(day_scope(10.0)[0]))[1]["spent_usd"] == pytest.approx(0.75)
        with pytest.raises(BudgetExceeded):
            await fresh.reserve(day_scope(1.0), 0.3)  # 0.75 + 0.3 > 1.0
        await fresh.aclose()
    finally:
        for s in stores:
            await s.aclose()
