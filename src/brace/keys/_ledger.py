"""The spend ledger: reserve a request's worst-case cost, settle its real cost.

Budgets belong to *scopes* (``key:<id>``, ``team:<name>``) and count per period
(``total``, ``day:YYYY-MM-DD``, ``month:YYYY-MM``, UTC).  A request first
:meth:`~Ledger.reserve`\\ s its worst-case cost on every period of every scope it
spends for: if a hard budget would go over, nothing is held and
:class:`~brace.errors.BudgetExceeded` says which budget and when it resets.  When
the request ends it :meth:`~Ledger.settle`\\ s: the hold is released and the real
cost added.  So concurrent requests on a nearly spent key can overshoot a budget
only by what their real costs exceed their holds — zero when the holds are true
upper bounds.

Two ledgers:

- :class:`LocalLedger` (no Redis): holds and settled spend in memory, exact within
  the instance.  Settled spend is added to the database's ``spend`` table every
  ``keys.spend_sync_seconds`` and the totals of every instance read back, so it
  survives restarts and gateways sharing the database see each other's spend one
  sync late (their in-flight holds are not shared).
- :class:`RedisLedger` (``server.redis_url``): the check and the hold are one Lua
  script on shared hashes, so every instance sees every hold at once; a hold of an
  instance that died (no heartbeat) is dropped.  Settled spend also goes to the
  database (history, restarts of Redis).  When Redis fails, the local ledger answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._tasks import stop_task
from ..errors import BudgetExceeded
from ._model import Budget, Period, iso, period_id, period_reset
from ._store import KeyStore

__all__ = ["BudgetAlert", "Hold", "Ledger", "LocalLedger", "RedisLedger", "Scope"]

log = logging.getLogger("brace.budgets")

_PERIODS: tuple[Period, ...] = ("total", "day", "month")


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a request spends for: a key or a team, its label and its budgets."""

    id: str
    """``key:<id>`` or ``team:<name>``."""
    label: str
    """How errors and alerts name it (``key 'ci-bot' (key_ab12…)``, ``team 'search'``)."""
    budgets: tuple[Budget, ...] = ()


@dataclass(slots=True)
class Hold:
    """A reservation to settle: the (scope, period) entries and the amount held."""

    entries: list[tuple[str, str]]
    amount: float
    remote: bool = False
    settled: bool = False


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A soft budget crossed a threshold (emitted once per scope, period, threshold)."""

    scope: str
    label: str
    period: str
    limit_usd: float
    spent_usd: float
    threshold: float


class Ledger(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def reserve(self, scopes: Sequence[Scope], amount: float) -> Hold: ...

    async def settle(self, hold: Hold, cost: float, scopes: Sequence[Scope]) -> None: ...

    async def usage(self, scope: Scope) -> list[dict[str, Any]]: ...

    def stats(self) -> dict[str, Any]: ...


def _used(spent: float, limit: float) -> float:
    """Fraction of a budget spent (a $0 budget is fully used: it allows nothing)."""
    return spent / limit if limit > 0 else 1.0


def _exceeded(
    scope: Scope, budget: Budget, spent: float, held: float, amount: float, now: float
) -> BudgetExceeded:
    reset = period_reset(budget.period, now)
    when = (
        f"it resets at {iso(reset)}"
        if reset is not None
        else "a total budget does not reset: raise it or use another key"
    )
    name = {"total": "total", "day": "daily", "month": "monthly"}[budget.period]
    return BudgetExceeded(
        f"budget exceeded: {scope.label} has spent ${spent:.4f} of its {name} hard budget of "
        f"${budget.limit_usd:.2f} (${held:.4f} more is held by requests in flight) and this "
        f"request may cost up to ${amount:.4f}; {when}",
        retry_after=None if reset is None else reset - now,
    )


class LocalLedger:
    """Holds and spend in memory; settled spend synced with the database."""

    def __init__(
        self,
        store: KeyStore | None,
        *,
        sync_seconds: float = 1.0,
        alert_at: Sequence[float] = (0.8, 1.0),
        on_alert: Callable[[BudgetAlert], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sync_seconds = sync_seconds
        self._alert_at = tuple(sorted(alert_at))
        self._on_alert = on_alert
        self._wall = wall
        self._spent: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], float] = {}
        self._pending: dict[tuple[str, str], list[float]] = {}
        self._alerted: set[tuple[str, str, float]] = set()
        self._task: asyncio.Task[None] | None = None
        self.sync_errors = 0
        self.alerts = 0

    # ------------------------------------------------------------------ lifecycle

    def _current_periods(self, now: float) -> list[str]:
        return [period_id(p, now) for p in _PERIODS]

    async def start(self) -> None:
        if self._store is None:
            return
        self._spent = {
            k: usd
            for k, (usd, _) in (
                await self._store.spend(self._current_periods(self._wall()))
            ).items()
        }
        self._task = asyncio.create_task(self._run_sync(), name="brace-spend-sync")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        await self.sync()

    async def _run_sync(self) -> None:
        while True:
            await asyncio.sleep(self._sync_seconds)
            await self.sync()

    async def sync(self) -> None:
        """Write settled spend to the database and read every instance's totals back."""
        if self._store is None:
            return
        pending, self._pending = self._pending, {}
        now = self._wall()
        try:
            rows = [(s, p, v[0], int(v[1])) for (s, p), v in pending.items()]
            await self._store.add_spend(rows, now)
        except Exception as exc:
            self.sync_errors += 1
            for k, v in pending.items():  # keep it for the next sync: no spend is lost
                mine = self._pending.setdefault(k, [0.0, 0.0])
                mine[0] += v[0]
                mine[1] += v[1]
            log.warning("spend: cannot write to the key store (%s); will retry", type(exc).__name__)
            return
        try:
            totals = await self._store.spend(self._current_periods(now))
        except Exception as exc:
            self.sync_errors += 1
            log.warning("spend: cannot read the key store (%s)", type(exc).__name__)
            return
        current = set(self._current_periods(now))
        spent = {k: usd for k, (usd, _) in totals.items()}
        for k, v in self._pending.items():  # settled during the round trip
            spent[k] = spent.get(k, 0.0) + v[0]
        self._spent = spent
        # a finished period's holds and alerts are no longer needed
        for k in [k for k, v in self._held.items() if k[1] not in current and v <= 0]:
            del self._held[k]
        self._alerted = {a for a in self._alerted if a[1] in current}

    # ------------------------------------------------------------------ reserve / settle

    def check(self, scopes: Sequence[Scope], amount: float, now: float) -> None:
        """Raise :class:`BudgetExceeded` if ``amount`` more would break a hard budget."""
        for scope in scopes:
            for b in scope.budgets:
                if b.mode != "hard":
                    continue
                k = (scope.id, period_id(b.period, now))
                spent, held = self._spent.get(k, 0.0), self._held.get(k, 0.0)
                if spent + held + amount > b.limit_usd + 1e-12:
                    raise _exceeded(scope, b, spent, held, amount, now)

    @staticmethod
    def entries(scopes: Sequence[Scope], now: float) -> list[tuple[str, str]]:
        return [(s.id, period_id(p, now)) for s in scopes for p in _PERIODS]

    async def reserve(self, scopes: Sequence[Scope], amount: float) -> Hold:
        now = self._wall()
        self.check(scopes, amount, now)
        entries = self.entries(scopes, now)
        held = self._held
        for k in entries:
            held[k] = held.get(k, 0.0) + amount
        return Hold(entries, amount)

    def release(self, hold: Hold) -> None:
        held = self._held
        for k in hold.entries:
            left = held.get(k, 0.0) - hold.amount
            held[k] = left if left > 1e-12 else 0.0

    def record(self, entries: Iterable[tuple[str, str]], cost: float) -> None:
        """Add settled spend (kept in memory and queued for the database)."""
        for k in entries:
            self._spent[k] = self._spent.get(k, 0.0) + cost
            p = self._pending.get(k)
            if p is None:
                self._pending[k] = [cost, 1.0]
            else:
                p[0] += cost
                p[1] += 1

    async def settle(self, hold: Hold, cost: float, scopes: Sequence[Scope]) -> None:
        if hold.settled:
            return
        hold.settled = True
        self.release(hold)
        self.record(hold.entries, cost)
        self.check_alerts(scopes, lambda k: self._spent.get(k, 0.0))

    def check_alerts(
        self, scopes: Sequence[Scope], spent_of: Callable[[tuple[str, str]], float]
    ) -> None:
        now = self._wall()
        for scope in scopes:
            for b in scope.budgets:
                if b.mode != "soft" or b.limit_usd <= 0:
                    continue
                pid = period_id(b.period, now)
                spent = spent_of((scope.id, pid))
                for t in self._alert_at:
                    if spent >= t * b.limit_usd and (scope.id, pid, t) not in self._alerted:
                        self._alerted.add((scope.id, pid, t))
                        self.alerts += 1
                        alert = BudgetAlert(scope.id, scope.label, pid, b.limit_usd, spent, t)
                        log.warning(
                            "soft budget: %s has spent $%.4f of its %s budget of $%.2f (%d%%)",
                            scope.label,
                            spent,
                            pid,
                            b.limit_usd,
                            round(100 * t),
                        )
                        if self._on_alert is not None:
                            self._on_alert(alert)

    # ------------------------------------------------------------------ reporting

    def _usage(
        self,
        scope: Scope,
        spent_of: Callable[[tuple[str, str]], float],
        held_of: Callable[[tuple[str, str]], float],
    ) -> list[dict[str, Any]]:
        now = self._wall()
        out = []
        budgets = {b.period: b for b in scope.budgets}
        for p in _PERIODS:
            k = (scope.id, period_id(p, now))
            spent = spent_of(k)
            b = budgets.get(p)
            out.append(
                {
                    "period": p,
                    "period_id": k[1],
                    "spent_usd": round(spent, 8),
                    "held_usd": round(held_of(k), 8),
                    "limit_usd": b.limit_usd if b else None,
                    "mode": b.mode if b else None,
                    "used": _used(spent, b.limit_usd) if b else None,
                    "resets_at": iso(period_reset(p, now)),
                }
            )
        return out

    async def usage(self, scope: Scope) -> list[dict[str, Any]]:
        """Spend, holds and budget use of ``scope`` in each current period."""
        return self._usage(
            scope, lambda k: self._spent.get(k, 0.0), lambda k: self._held.get(k, 0.0)
        )

    def stats(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "scopes": len({k[0] for k in self._spent}),
            "held_usd": round(sum(self._held.values()), 8),
            "sync_errors": self.sync_errors,
            "alerts": self.alerts,
        }


# ----------------------------------------------------------------------------- Redis

_RESERVE = """
local amount = tonumber(ARGV[1])
local field = 'r:' .. ARGV[2]
local hb = ARGV[3]
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 + 2 * i])
  if limit >= 0 then
    local vals = redis.call('HGETALL', KEYS[i])
    local spent, held = 0, 0
    for j = 1, #vals, 2 do
      local f = vals[j]
      if f == 'spent' then
        spent = spent + tonumber(vals[j + 1])
      elseif string.sub(f, 1, 2) == 'r:' then
        if redis.call('EXISTS', hb .. string.sub(f, 3)) == 1 then
          held = held + tonumber(vals[j + 1])
        else
          redis.call('HDEL', KEYS[i], f)
        end
      end
    end
    if spent + held + amount > limit + 1e-12 then
      return {i, tostring(spent), tostring(held)}
    end
  end
end
for i = 1, #KEYS do
  redis.call('HINCRBYFLOAT', KEYS[i], field, amount)
  local ttl = tonumber(ARGV[3 + 2 * i])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return {0, '', ''}
"""

_SETTLE = """
local field = 'r:' .. ARGV[1]
local amount = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
for i = 1, #KEYS do
  local left = tonumber(redis.call('HINCRBYFLOAT', KEYS[i], field, -amount))
  if left <= 1e-12 then redis.call('HDEL', KEYS[i], field) end
  if cost ~= 0 then redis.call('HINCRBYFLOAT', KEYS[i], 'spent', cost) end
end
return 1
"""

_TTL = {"total": 0, "day": 3 * 86_400, "month": 62 * 86_400}


class RedisLedger:
    """Holds and spend in Redis hashes shared by every instance (one Lua script each)."""

    def __init__(
        self,
        url: str,
        local: LocalLedger,
        *,
        namespace: str = "brace",
        heartbeat_seconds: float = 5.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._local = local
        self._ns = namespace
        self._instance = os.urandom(8).hex()
        self._hb_seconds = heartbeat_seconds
        self._wall = wall
        self._redis: Any = None
        self._reserve: Any = None
        self._settle: Any = None
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        self._warned = False
        self._held = 0.0
        self._unsettled: deque[tuple[list[str], list[str]]] = deque(maxlen=10_000)
        self.lost_settlements = 0

    def _key(self, entry: tuple[str, str]) -> str:
        return f"{self._ns}:spend:{entry[0]}:{entry[1]}"

    @property
    def _hb_prefix(self) -> str:
        return f"{self._ns}:spend-instance:"

    async def start(self) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(
            self._url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        await self._local.start()
        try:
            await self._beat()
            await self._seed()
        except Exception as exc:
            self._failed(exc)
        self._task = asyncio.create_task(self._run(), name="brace-spend-heartbeat")

    async def _beat(self) -> None:
        await self._redis.set(
            self._hb_prefix + self._instance, "1", ex=max(1, math.ceil(3 * self._hb_seconds))
        )

    async def _seed(self) -> None:
        """Spend Redis lost (a restart without persistence) comes back from the database."""
        for (scope, period), usd in list(self._local._spent.items()):
            await self._redis.hsetnx(self._key((scope, period)), "spent", repr(usd))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._hb_seconds)
            try:
                await self._beat()
                while self._unsettled:
                    keys, args = self._unsettled[0]
                    await self._settle(keys=keys, args=args)
                    self._unsettled.popleft()
            except Exception as exc:
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if not self._warned:
            self._warned = True
            log.warning(
                "budgets: Redis is unreachable (%s); each gateway enforces budgets from its own "
                "holds and the database until it is back",
                type(exc).__name__,
            )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.delete(self._hb_prefix + self._instance)
            await self._redis.aclose()
            self._redis = None
        await self._local.aclose()

    async def reserve(self, scopes: Sequence[Scope], amount: float) -> Hold:
        now = self._wall()
        entries = LocalLedger.entries(scopes, now)
        per_key: list[str | int] = []
        budgets: list[tuple[Scope, Budget | None]] = []
        for s in scopes:
            hard = {b.period: b for b in s.budgets if b.mode == "hard"}
            for p in _PERIODS:  # the order of LocalLedger.entries
                b = hard.get(p)
                budgets.append((s, b))
                per_key += [repr(b.limit_usd) if b else "-1", _TTL[p]]
        try:
            res = await self._reserve(
                keys=[self._key(e) for e in entries],
                args=[repr(amount), self._instance, self._hb_prefix, *per_key],
            )
        except Exception as exc:
            self._failed(exc)
            return await self._local.reserve(scopes, amount)
        self._warned = False
        index = int(res[0])
        if index:
            scope, budget = budgets[index - 1]
            assert budget is not None
            raise _exceeded(scope, budget, float(res[1]), float(res[2]), amount, now)
        self._held += amount
        return Hold(entries, amount, remote=True)

    async def settle(self, hold: Hold, cost: float, scopes: Sequence[Scope]) -> None:
        if hold.settled:
            return
        if not hold.remote:
            await self._local.settle(hold, cost, scopes)
            return
        hold.settled = True
        self._held -= hold.amount
        self._local.record(hold.entries, cost)  # history in the database
        keys = [self._key(e) for e in hold.entries]
        args = [self._instance, repr(hold.amount), repr(cost)]
        try:
            await self._settle(keys=keys, args=args)
        except Exception as exc:
            self._failed(exc)
            # retried by the heartbeat loop: the hold is released and the spend counted
            # once Redis answers again (bounded; beyond it the oldest are dropped, logged)
            if len(self._unsettled) == self._unsettled.maxlen:
                self.lost_settlements += 1
            self._unsettled.append((keys, args))
            return
        spent = await self._spent_of(hold.entries)
        self._local.check_alerts(scopes, lambda k: spent.get(k, 0.0))

    async def _spent_of(self, entries: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        try:
            pipe = self._redis.pipeline(transaction=False)
            for e in entries:
                pipe.hgetall(self._key(e))
            results = await pipe.execute()
        except Exception as exc:
            self._failed(exc)
            return {}
        for e, vals in zip(entries, results, strict=True):
            out[e] = float(vals.get(b"spent", 0.0))
            held = sum(float(v) for f, v in vals.items() if f.startswith(b"r:"))
            out[(e[0], e[1] + "#held")] = held
        return out

    async def usage(self, scope: Scope) -> list[dict[str, Any]]:
        now = self._wall()
        values = await self._spent_of([(scope.id, period_id(p, now)) for p in _PERIODS])
        if not values:
            return await self._local.usage(scope)
        return self._local._usage(
            scope,
            lambda k: values.get(k, 0.0),
            lambda k: values.get((k[0], k[1] + "#held"), 0.0),
        )

    def stats(self) -> dict[str, Any]:
        local = self._local.stats()
        return {
            **local,
            "backend": "redis",
            "held_usd": round(local["held_usd"] + max(0.0, self._held), 8),
            "redis_failures": self.failures,
            "unsettled": len(self._unsettled),
            "lost_settlements": self.lost_settlements,
        }
