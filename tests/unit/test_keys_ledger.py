"""The spend ledger, periods, worst-case bounds and key authentication, in process
(a fake wall clock; a real SQLite key store where the database matters)."""

from __future__ import annotations

import asyncio
import calendar
from pathlib import Path
from typing import Any

import pytest

from brace.errors import AuthenticationFailed, BudgetExceeded
from brace.keys import (
    MASTER,
    Budget,
    KeyCreate,
    KeyRing,
    KeyUpdate,
    LocalLedger,
    Scope,
    hash_key,
    open_key_store,
    period_id,
    period_reset,
)
from brace.policies.budget import worst_case_tokens

NOV_30_2359 = calendar.timegm((2026, 11, 30, 23, 59, 0))
DEC_31_2359 = calendar.timegm((2026, 12, 31, 23, 59, 0))


class Wall:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_periods_are_utc_days_and_months() -> None:
    assert period_id("day", NOV_30_2359) == "day:2026-11-30"
    assert period_id("month", NOV_30_2359) == "month:2026-11"
    assert period_id("total", NOV_30_2359) == "total"
    assert period_reset("day", NOV_30_2359) == NOV_30_2359 + 60
    assert period_reset("month", NOV_30_2359) == NOV_30_2359 + 60  # Dec 1st, 00:00
    assert period_reset("month", DEC_31_2359) == DEC_31_2359 + 60  # Jan 1st of next year
    assert period_reset("total", NOV_30_2359) is None


def test_worst_case_is_an_upper_bound_of_the_prompt_and_the_answer() -> None:
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "héllo"},  # 6 UTF-8 bytes
            {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url"}]},
        ],
        "max_tokens": 100,
        "n": 2,
    }
    prompt, completion = worst_case_tokens(body, 256)
    assert prompt == 6 + 8 + 3 + 8 + 1_500
    assert completion == 200
    assert worst_case_tokens({"messages": [{"role": "user", "content": "x"}]}, 64) == (9, 64)
    with_tools = {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}
    assert worst_case_tokens(with_tools, 1)[0] > 9
    assert worst_case_tokens({"input": ["ab", "c"]}, 1) == (5, 0)
    assert worst_case_tokens({"input": [1, 2, 3]}, 1) == (3, 0)  # one token array
    assert worst_case_tokens({"input": [[1, 2], [3]]}, 1) == (3, 0)


def scopes(day_limit: float, *, mode: str = "hard") -> list[Scope]:
    return [Scope("key:k1", "key 'k1'", (Budget("day", day_limit, mode),))]  # type: ignore[arg-type]


async def test_holds_refuse_what_would_overshoot_and_settle_releases() -> None:
    wall = Wall(NOV_30_2359 - 3600)
    ledger = LocalLedger(None, wall=wall)
    holds = [await ledger.reserve(scopes(1.0), 0.3) for _ in range(3)]
    with pytest.raises(BudgetExceeded) as info:
        await ledger.reserve(scopes(1.0), 0.3)
    assert "daily hard budget of $1.00" in info.value.message
    assert "2026-12-01T00:00:00Z" in info.value.message
    assert info.value.retry_after == pytest.approx(3660)
    assert info.value.headers()["x-should-retry"] == "false"
    # settling at the real (smaller) cost frees room for another request
    await ledger.settle(holds[0], 0.1, scopes(1.0))
    await ledger.settle(holds[0], 0.1, scopes(1.0))  # a second settle is a no-op
    extra = await ledger.reserve(scopes(1.0), 0.3)
    usage = {u["period"]: u for u in await ledger.usage(scopes(1.0)[0])}
    assert usage["day"]["spent_usd"] == pytest.approx(0.1)
    assert usage["day"]["held_usd"] == pytest.approx(0.9)
    assert usage["total"]["spent_usd"] == pytest.approx(0.1)  # every period is counted
    for h in (*holds[1:], extra):
        await ledger.settle(h, 0.0, scopes(1.0))
    assert (await ledger.usage(scopes(1.0)[0]))[1]["held_usd"] == 0

    # a new day: the day's budget starts again, the total keeps counting
    wall.t = NOV_30_2359 + 120
    big = await ledger.reserve(scopes(1.0), 0.95)
    await ledger.settle(big, 0.95, scopes(1.0))
    usage = {u["period"]: u for u in await ledger.usage(scopes(1.0)[0])}
    assert usage["day"]["spent_usd"] == pytest.approx(0.95)
    assert usage["total"]["spent_usd"] == pytest.approx(1.05)


async def test_soft_budgets_alert_once_per_threshold_and_never_refuse() -> None:
    alerts: list[Any] = []
    ledger = LocalLedger(None, wall=Wall(NOV_30_2359), alert_at=(0.5, 1.0), on_alert=alerts.append)
    soft = scopes(1.0, mode="soft")
    for _ in range(5):
        hold = await ledger.reserve(soft, 10.0)  # far over: soft never refuses
        await ledger.settle(hold, 0.3, soft)
    assert [a.threshold for a in alerts] == [0.5, 1.0]
    assert alerts[0].spent_usd == pytest.approx(0.6) and alerts[0].scope == "key:k1"
    assert ledger.alerts == 2


class FailingStore:
    """A key store whose writes fail until ``healthy``."""

    def __init__(self) -> None:
        self.healthy = False
        self.rows: list[tuple[str, str, float, int]] = []

    async def add_spend(self, rows: list[tuple[str, str, float, int]], now: float) -> None:
        if not self.healthy:
            raise OSError("disk full")
        self.rows += rows

    async def spend(self, periods: list[str]) -> dict[tuple[str, str], tuple[float, int]]:
        out: dict[tuple[str, str], tuple[float, int]] = {}
        for s, p, usd, n in self.rows:
            old = out.get((s, p), (0.0, 0))
            out[(s, p)] = (old[0] + usd, old[1] + n)
        return out


async def test_a_failed_sync_keeps_the_spend_for_the_next() -> None:
    store = FailingStore()
    ledger = LocalLedger(store, wall=Wall(NOV_30_2359))  # type: ignore[arg-type]
    hold = await ledger.reserve(scopes(1.0), 0.2)
    await ledger.settle(hold, 0.2, scopes(1.0))
    await ledger.sync()
    assert ledger.sync_errors == 1 and store.rows == []
    store.healthy = True
    await ledger.sync()
    assert sum(r[2] for r in store.rows if r[1] == "day:2026-11-30") == pytest.approx(0.2)
    assert (await ledger.usage(scopes(1.0)[0]))[1]["spent_usd"] == pytest.approx(0.2)


async def test_ring_authenticates_and_follows_changes_made_elsewhere(tmp_path: Path) -> None:
    db = str(tmp_path / "k.db")
    sa, sb = open_key_store(db), open_key_store(db)
    await sa.start()
    await sb.start()
    wall = Wall(NOV_30_2359)
    a = KeyRing(sa, master_key=None, wall=wall)
    b = KeyRing(sb, master_key="m-key", wall=wall)
    await a.start()
    await b.start()
    try:
        assert a.authenticate(None) is None  # local mode: no master key, no key
        assert b.authenticate("Bearer m-key") is MASTER
        with pytest.raises(AuthenticationFailed) as info:
            b.authenticate(None)
        assert info.value.error_code == "missing_api_key"
        with pytest.raises(AuthenticationFailed):
            b.authenticate("Basic m-key")

        key, plaintext = await a.create(KeyCreate(name="svc", team="t", expires_in=60))
        assert a.auth_required  # the first key ends local mode
        assert key.key_hash == hash_key(plaintext) and plaintext not in repr(key)
        await b.refresh()
        assert b.authenticate(f"Bearer {plaintext}") == key
        assert [s.id for s in b.scopes(key)] == [f"key:{key.id}", "team:t"]

        status = await a.propagate()
        assert status["instances"] == 2 and status["confirmed"] == 2

        await a.update(key, KeyUpdate(models=["chat"]))
        await b.refresh()
        updated = b.authenticate(f"Bearer {plaintext}")
        assert not isinstance(updated, type(MASTER)) and updated is not None
        assert updated.allows("chat") and not updated.allows("other")  # type: ignore[union-attr]

        wall.t += 61
        with pytest.raises(AuthenticationFailed) as info:
            b.authenticate(f"Bearer {plaintext}")
        assert info.value.error_code == "key_expired"
        await a.revoke(a.get(key.id))  # type: ignore[arg-type]
        await b.refresh()
        with pytest.raises(AuthenticationFailed) as info:
            b.authenticate(f"Bearer {plaintext}")
        assert info.value.error_code == "key_revoked"
    finally:
        await a.aclose()
        await b.aclose()
        await sa.aclose()
        await sb.aclose()


def test_admin_input_is_checked() -> None:
    with pytest.raises(ValueError, match="one budget per period"):
        KeyCreate(
            name="x", budgets=[{"period": "day", "limit_usd": 1}, {"period": "day", "limit_usd": 2}]
        )  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not both"):
        KeyCreate(name="x", expires_at=1.0, expires_in=5).expiry(0.0)
    assert KeyCreate(name="x", expires_at="2026-12-01T00:00:00Z").expiry(0.0) == calendar.timegm(
        (2026, 12, 1, 0, 0, 0)
    )


async def test_the_event_loop_never_waits_on_sqlite(tmp_path: Path) -> None:
    store = open_key_store(str(tmp_path / "k.db"))
    await store.start()
    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await store.add_spend([("key:a", "total", 1.0, 1)] * 50, 0.0)
        task.cancel()
        assert ticks > 0  # the loop ran while the write happened on the store's thread
    finally:
        await store.aclose()
