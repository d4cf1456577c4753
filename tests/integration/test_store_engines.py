"""The request-log store against real engines: a SQLite file in ``tmp_path`` and the
machine's PostgreSQL (one fresh schema per test, dropped afterwards).  Every test runs
on both engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from brace.config import TelemetryConfig
from brace.errors import ConfigError
from brace.store.requests import (
    MIGRATIONS,
    BaseStore,
    InvalidQuery,
    Migration,
    PostgresStore,
    SchemaTooNew,
    SQLiteStore,
    open_store,
)
from brace.telemetry.record import AttemptRecord, RequestRecord

from ._services import PG_URL, pg_up

T0 = 1_714_600_000.0
"""A fixed "now" (2024-05-01T21:46:40Z) for seeded data; stores are built with it."""


PG = pytest.param(
    "postgres", marks=pytest.mark.skipif(not pg_up(), reason="no PostgreSQL on 127.0.0.1:5432")
)


def rec(
    i: int,
    *,
    at: float | None = None,
    attempts: list[AttemptRecord] | None = None,
    **kw: Any,
) -> RequestRecord:
    """Request ``i``: ``at`` defaults to ``T0 - i`` (larger i = older)."""
    fields: dict[str, Any] = {
        "request_id": f"req-{i:05d}",
        "trace_id": f"{i:032x}",
        "span_id": f"{i:016x}",
        "parent_span_id": None,
        "operation": "chat",
        "model": "gpt",
        "started_at": T0 - i if at is None else at,
        "duration": 0.1,
        "status": 200,
        "group": "gpt",
        "deployment": "gpt-a",
        "provider": "openai",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_usd": 0.001,
        "attempts": [AttemptRecord("gpt-a", "gpt", "openai", 0.0, 0.1, None, 200)]
        if attempts is None
        else attempts,
    }
    fields.update(kw)
    return RequestRecord(**fields)


Factory = Callable[..., BaseStore]


class Engines:
    """Builds stores of one engine on one database; ``raw`` runs SQL beside them."""

    def __init__(self, engine: str, path: Path, schema: str) -> None:
        self.engine = engine
        self.path = path
        self.schema = schema
        self.stores: list[BaseStore] = []

    def make(self, **options: Any) -> BaseStore:
        options.setdefault("now", lambda: T0)
        options.setdefault("retention_interval", 3600.0)
        options.setdefault("retry_delay", 0.0)
        store: BaseStore
        if self.engine == "sqlite":
            store = SQLiteStore(self.path, **options)
        else:
            store = PostgresStore(PG_URL, schema=self.schema, **options)
        self.stores.append(store)
        return store

    async def started(self, **options: Any) -> BaseStore:
        store = self.make(**options)
        await store.start()
        return store

    async def raw(self, sql: str) -> None:
        if self.engine == "sqlite":
            conn = sqlite3.connect(self.path)
            try:
                conn.execute(sql)
                conn.commit()
            finally:
                conn.close()
        else:
            conn = await asyncpg.connect(PG_URL, server_settings={"search_path": self.schema})
            try:
                await conn.execute(sql)
            finally:
                await conn.close()


@pytest.fixture(params=["sqlite", PG])
async def engines(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engines]:
    e = Engines(request.param, tmp_path / "log.db", f"brace_test_{uuid.uuid4().hex[:12]}")
    try:
        yield e
    finally:
        for store in e.stores:
            with contextlib.suppress(Exception):
                await store.aclose()
        if e.engine == "postgres":
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{e.schema}" CASCADE')
            finally:
                await conn.close()


async def count(store: BaseStore, table: str) -> int:
    rows = await store._fetch(f"SELECT COUNT(*) AS n FROM {table}", [])
    return int(rows[0]["n"])


async def ids(store: BaseStore) -> list[str]:
    rows = await store._fetch("SELECT request_id FROM requests ORDER BY request_id", [])
    return [r["request_id"] for r in rows]


# ----------------------------------------------------------------------------- migrations


async def test_migrations_apply_in_order_once_and_refuse_a_newer_database(engines: Engines) -> None:
    store = await engines.started()
    applied = await store._fetch("SELECT name, applied_at FROM brace_migrations", [])
    known = [m.name for m in MIGRATIONS]
    assert sorted(r["name"] for r in applied) == known
    by_name = {r["name"]: r["applied_at"] for r in applied}
    assert [by_name[n] for n in known] == sorted(by_name[n] for n in known)
    store.submit(rec(1))
    await store.aclose()

    # re-running is a no-op: same rows, data kept
    again = await engines.started()
    assert await count(again, "brace_migrations") == len(MIGRATIONS)
    assert await ids(again) == ["req-00001"]
    await again.aclose()

    # a failing migration rolls back entirely
    broken = (*MIGRATIONS, Migration("0098_broken", ("CREATE INDEX x ON nowhere (y)",)))
    with pytest.raises(Exception, match="nowhere"):
        await engines.started(migrations=broken)

    # a newer migration applies after the others
    newer = (
        *MIGRATIONS,
        Migration("0099_tenant", ("CREATE INDEX req_tenant ON requests (tenant)",)),
    )
    upgraded = await engines.started(migrations=newer)
    names = await upgraded._fetch("SELECT name FROM brace_migrations ORDER BY name", [])
    assert [r["name"] for r in names] == [*known, "0099_tenant"]
    await upgraded.aclose()

    # and this code (without 0099) now refuses the database
    with pytest.raises(SchemaTooNew, match="0099_tenant"):
        await engines.started()


# ----------------------------------------------------------------------------- the writer


async def test_writer_batches_and_aclose_flushes_everything(engines: Engines) -> None:
    store = await engines.started(batch_rows=10, flush_interval=30.0)
    for i in range(25):
        store.submit(rec(i))
    assert store.stats()["queued"] == 25
    await store.aclose()
    stats = store.stats()
    assert stats["written"] == 25 and stats["batches"] == 3 and stats["dropped"] == 0
    assert stats["queued"] == 0

    reopened = await engines.started()
    assert await count(reopened, "requests") == 25
    assert await count(reopened, "attempts") == 25
    # submitting after close drops (and counts) instead of raising
    store.submit(rec(99))
    assert store.stats()["dropped"] == 1


async def test_a_partial_batch_is_written_on_the_interval(engines: Engines) -> None:
    store = await engines.started(flush_interval=0.05)
    for i in range(3):
        store.submit(rec(i))
    deadline = time.monotonic() + 3
    while store.stats()["written"] < 3:
        assert time.monotonic() < deadline, store.stats()
        await asyncio.sleep(0.02)
    assert store.stats()["batches"] == 1
    assert await count(store, "requests") == 3


async def test_overflow_drops_and_counts(engines: Engines) -> None:
    store = await engines.started(writer_queue=5)
    for i in range(12):  # the writer task has not run yet
        store.submit(rec(i))
    stats = store.stats()
    assert stats["queued"] == 5 and stats["dropped"] == 7
    await store.flush()
    assert store.stats()["written"] == 5
    assert await ids(store) == [f"req-{i:05d}" for i in range(5)]


async def test_a_reused_request_id_keeps_the_first_record(engines: Engines) -> None:
    store = await engines.started()
    store.submit(rec(1, status=200))
    store.submit(rec(1, status=500))
    await store.flush()
    store.submit(rec(1, status=502, attempts=[]))
    await store.flush()
    got = await store.get_request("req-00001")
    assert got is not None and got["status"] == 200 and len(got["attempts"]) == 1
    assert store.stats()["duplicates"] == 2 and store.stats()["written"] == 1


async def test_a_failing_database_is_counted_never_raised(
    engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    store = await engines.started()
    await engines.raw("DROP TABLE attempts")
    with caplog.at_level(logging.WARNING, logger="brace.telemetry.store"):
        for i in range(4):
            store.submit(rec(i))  # never raises
        await store.flush()
    stats = store.stats()
    assert stats["errors"] == 2  # the batch, then its one retry
    assert stats["dropped"] == 4 and stats["written"] == 0
    assert "attempts" in (stats["last_error"] or "")
    assert any("retrying once" in r.getMessage() for r in caplog.records)
    assert any("dropped" in r.getMessage() for r in caplog.records)
    # the failed transaction left nothing behind
    assert await count(store, "requests") == 0
    await store.aclose()  # closing a broken store does not raise either


# ----------------------------------------------------------------------------- retention


async def test_retention_by_age_removes_rows_and_their_attempts(engines: Engines) -> None:
    store = await engines.started(retention_days=30)
    store.submit(rec(1, at=T0 - 31 * 86_400))
    store.submit(rec(2, at=T0 - 29 * 86_400))
    store.submit(rec(3, at=T0 - 40 * 86_400))
    await store.flush()
    await store.apply_retention()  # (the pass at start may have run already: count both)
    assert await ids(store) == ["req-00002"]
    assert await count(store, "attempts") == 1
    assert store.stats()["retention_deleted"] == 2
    assert await store.apply_retention() == {"expired": 0, "trimmed": 0}


async def test_retention_by_max_rows_keeps_the_newest(engines: Engines) -> None:
    store = await engines.started(retention_max_rows=5)
    for i in range(8):
        store.submit(rec(i, at=T0 - i))
    store.submit(rec(8, at=T0 - 7))  # same time as req-00007: ties broken by id
    await store.flush()
    await store.apply_retention()  # (the pass at start may have run already: count both)
    assert await ids(store) == [f"req-{i:05d}" for i in range(5)]
    assert await count(store, "attempts") == 5
    assert store.stats()["retention_deleted"] == 4


async def test_retention_runs_at_start_and_periodically(engines: Engines) -> None:
    clock = {"now": T0}
    store = await engines.started(
        retention_days=1, retention_interval=0.05, now=lambda: clock["now"]
    )
    store.submit(rec(1, at=T0 - 3600))
    await store.flush()
    assert await count(store, "requests") == 1
    clock["now"] = T0 + 2 * 86_400  # a day passes: the next pass expires it
    deadline = time.monotonic() + 3
    while await count(store, "requests"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await count(store, "attempts") == 0


# ----------------------------------------------------------------------------- content


async def test_content_is_stored_only_with_capture_content(engines: Engines) -> None:
    content = {"messages": [{"role": "user", "content": "the secret plan"}], "answer": "ok"}
    plain = await engines.started()
    plain.submit(rec(1, content=content))
    await plain.aclose()
    captured = await engines.started(capture_content=True)
    captured.submit(rec(2, content=content))
    await captured.flush()
    one = await captured.get_request("req-00001")
    two = await captured.get_request("req-00002")
    assert one is not None and one["content"] is None
    assert two is not None and two["content"] == content
    listed, _ = await captured.list_requests()
    assert all("content" not in r for r in listed)


# ----------------------------------------------------------------------------- queries


def _seed() -> list[RequestRecord]:
    """40 requests over 40 minutes: 4 models, 2 tenants, errors and absorbed failures."""
    out = []
    for i in range(40):
        model = ["gpt", "claude"][i % 2]
        attempts = [AttemptRecord(f"{model}-a", model, "p", 0.0, 0.2, None, 200)]
        kw: dict[str, Any] = {}
        if i % 5 == 0:  # absorbed: a 429 then a success elsewhere
            attempts = [
                AttemptRecord(f"{model}-a", model, "p", 0.0, 0.1, "rate_limited", 429),
                AttemptRecord(f"{model}-b", model, "p", 0.1, 0.2, None, 200),
            ]
            kw["deployment"] = f"{model}-b"
        if i % 8 == 3:  # surfaced: every attempt failed
            attempts = [AttemptRecord(f"{model}-a", model, "p", 0.0, 0.3, "server_error", 500)]
            kw.update(status=502, error_class="server_error", error="upstream answered 500")
        out.append(
            rec(
                i,
                at=T0 - 60 * i - 1,
                model=model,
                group=model,
                deployment=kw.pop("deployment", f"{model}-a"),
                tenant=["t1", "t2"][i % 3 % 2],
                duration=0.01 * (i + 1),
                cost_usd=0.001 * (i + 1),
                input_tokens=100,
                output_tokens=i,
                attempts=attempts,
                **kw,
            )
        )
    return out


async def seeded(engines: Engines) -> BaseStore:
    store = await engines.started()
    for r in _seed():
        store.submit(r)
    await store.flush()
    assert store.stats()["written"] == 40
    return store


async def test_list_filters(engines: Engines) -> None:
    store = await seeded(engines)
    seed = _seed()

    async def listed(**kw: Any) -> list[str]:
        rows, _ = await store.list_requests(limit=100, **kw)
        return [r["request_id"] for r in rows]

    def expect(pred: Callable[[RequestRecord], bool]) -> list[str]:
        return [r.request_id for r in seed if pred(r)]  # seed is newest first already

    assert await listed() == expect(lambda r: True)
    assert await listed(model="claude") == expect(lambda r: r.model == "claude")
    assert await listed(deployment="gpt-b") == expect(lambda r: r.deployment == "gpt-b")
    assert await listed(tenant="t2") == expect(lambda r: r.tenant == "t2")
    assert await listed(status="error") == expect(lambda r: r.error_class is not None)
    assert await listed(status="ok") == expect(lambda r: r.error_class is None)
    assert await listed(status=502) == expect(lambda r: r.status == 502)
    assert await listed(status="5xx") == expect(lambda r: r.status >= 500)
    assert await listed(error_class="server_error", model="gpt") == expect(
        lambda r: r.error_class == "server_error" and r.model == "gpt"
    )
    assert await listed(q="req-0001") == expect(lambda r: r.request_id.startswith("req-0001"))
    assert await listed(q=f"{7:032x}"[:30]) == expect(
        lambda r: r.trace_id.startswith(f"{7:032x}"[:30])
    )
    assert await listed(q="req_0") == []  # LIKE wildcards are escaped
    window = {"since": T0 - 600, "until": T0 - 300}
    assert await listed(**window) == expect(lambda r: T0 - 600 <= r.started_at < T0 - 300)
    row = (await store.list_requests(limit=1, q="req-00005"))[0][0]
    assert row["absorbed"] == 1 and row["attempts_count"] == 2 and row["group"] == "claude"
    with pytest.raises(InvalidQuery):
        await store.list_requests(limit=0)


async def test_cursor_paging_visits_every_row_once_in_order(engines: Engines) -> None:
    store = await seeded(engines)
    store.submit(rec(100, at=T0 - 61))  # a tie on started_at with req-00001
    await store.flush()
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        rows, cursor = await store.list_requests(limit=7, before=cursor)
        seen += rows
        pages += 1
        if cursor is None:
            break
    assert pages == math.ceil(41 / 7)
    keys = [(r["started_at"], r["request_id"]) for r in seen]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == 41
    filtered, cursor = await store.list_requests(model="gpt", limit=15)
    rest, end = await store.list_requests(model="gpt", limit=15, before=cursor)
    assert end is None and len(filtered) + len(rest) == 21
    with pytest.raises(InvalidQuery):
        await store.list_requests(before="garbage")


async def test_get_request_and_trace(engines: Engines) -> None:
    store = await engines.started()
    trace_id = "f" * 32
    store.submit(rec(1, at=T0 - 5, trace_id=trace_id))
    store.submit(
        rec(
            2,
            at=T0 - 10,
            trace_id=trace_id,
            fallback=["gpt", "claude"],
            hedged=True,
            finish_reasons=["stop"],
            attempts=[
                AttemptRecord("gpt-a", "gpt", "p", 0.0, 0.1, "overloaded", 503, error="busy"),
                AttemptRecord("claude-a", "claude", "p", 0.12, 0.3, None, 200),
                AttemptRecord("claude-b", "claude", "p", 0.2, 0.25, None, 200, hedge=True),
            ],
        )
    )
    store.submit(rec(3))
    await store.flush()
    got = await store.get_request("req-00002")
    assert got is not None
    assert got["fallback"] == ["gpt", "claude"] and got["hedged"] is True
    assert got["finish_reasons"] == ["stop"]
    assert [(a["seq"], a["deployment"], a["group"], a["hedge"]) for a in got["attempts"]] == [
        (0, "gpt-a", "gpt", False),
        (1, "claude-a", "claude", False),
        (2, "claude-b", "claude", True),
    ]
    assert got["attempts"][0]["error"] == "busy" and got["attempts"][0]["offset"] == 0.0
    assert await store.get_request("nope") is None
    steps = await store.trace(trace_id)
    assert [s["request_id"] for s in steps] == ["req-00002", "req-00001"]
    assert [len(s["attempts"]) for s in steps] == [3, 1]
    assert await store.trace("0" * 32) == []


async def test_spend_grouping(engines: Engines) -> None:
    store = await seeded(engines)
    seed = _seed()
    by_model = await store.spend("model")
    assert [r["key"] for r in by_model["rows"]] == ["claude", "gpt"]  # by cost, highest first
    for row in by_model["rows"]:
        mine = [r for r in seed if r.model == row["key"]]
        assert row["requests"] == len(mine)
        assert row["input_tokens"] == 100 * len(mine)
        assert row["output_tokens"] == sum(r.output_tokens or 0 for r in mine)
        assert row["cost_usd"] == pytest.approx(sum(r.cost_usd or 0 for r in mine))
    assert by_model["total"]["requests"] == 40
    assert by_model["total"]["cost_usd"] == pytest.approx(sum(0.001 * (i + 1) for i in range(40)))

    tenants = await store.spend("tenant", since=T0 - 600)
    assert sum(r["requests"] for r in tenants["rows"]) == 10
    deployments = {r["key"]: r["requests"] for r in (await store.spend("deployment"))["rows"]}
    assert deployments == {
        d: sum(1 for r in seed if r.deployment == d) for d in {r.deployment for r in seed}
    }

    days = await engines.started()
    late = datetime(2024, 5, 1, 23, 30, tzinfo=UTC).timestamp()
    for i, at in enumerate([late, late + 60, late + 3600, late + 2 * 3600]):
        days.submit(rec(200 + i, at=at, cost_usd=1.0))
    await days.flush()
    window = {"since": late - 1, "until": late + 86_400}
    by_day = await days.spend("day", **window)
    assert [(r["key"], r["requests"]) for r in by_day["rows"]] == [
        ("2024-05-01", 2),
        ("2024-05-02", 2),
    ]
    by_hour = await days.spend("hour", **window)
    assert [(r["key"], r["requests"]) for r in by_hour["rows"]] == [
        ("2024-05-01T23:00Z", 2),
        ("2024-05-02T00:00Z", 1),
        ("2024-05-02T01:00Z", 1),
    ]
    assert by_hour["total"]["cost_usd"] == 4.0
    with pytest.raises(InvalidQuery):
        await store.spend("week")  # type: ignore[arg-type]


async def test_overview_buckets_absorbed_vs_surfaced(engines: Engines) -> None:
    store = await engines.started()
    now = 1_714_600_030.0  # 30 s into a minute
    minute = math.floor(now / 60) * 60
    ok = AttemptRecord("a", "gpt", "p", 0.0, 0.1, None, 200)
    limited = AttemptRecord("a", "gpt", "p", 0.0, 0.1, "rate_limited", 429)
    timeout = AttemptRecord("b", "gpt", "p", 0.1, 0.1, "timeout", None)
    records = [
        # current minute: 3 requests, one absorbed 429 + one absorbed timeout, one surfaced 5xx
        rec(1, at=minute + 1, duration=0.1, cost_usd=0.5, attempts=[limited, timeout, ok]),
        rec(2, at=minute + 2, duration=0.2, cost_usd=0.25),
        rec(
            3,
            at=minute + 3,
            duration=0.9,
            status=502,
            error_class="server_error",
            attempts=[AttemptRecord("a", "gpt", "p", 0, 0.9, "server_error", 500)],
            cost_usd=None,
        ),
        # two minutes ago: one request, one absorbed 429
        rec(4, at=minute - 120 + 5, duration=0.4, cost_usd=0.125, attempts=[limited, ok]),
        # outside the 3-minute window
        rec(5, at=minute - 180 - 1, duration=5.0, status=429, error_class="rate_limited"),
    ]
    for r in records:
        store.submit(r)
    await store.flush()
    view = await store.overview(window_s=180, bucket_s=60, now=now)
    assert [b["t"] for b in view["buckets"]] == [minute - 120, minute - 60, minute]
    old, empty, current = view["buckets"]
    assert empty["requests"] == 0 and empty["p50_ms"] is None and empty["by_cause"] == {}
    assert current["requests"] == 3
    assert current["errors_surfaced"] == 1
    assert current["errors_absorbed"] == 2
    assert current["by_cause"] == {"rate_limited": 1, "timeout": 1, "server_error": 1}
    assert current["surfaced_by_cause"] == {"server_error": 1}
    assert current["absorbed_by_cause"] == {"rate_limited": 1, "timeout": 1}
    assert current["p50_ms"] == 200.0 and current["p99_ms"] == 900.0
    assert current["cost_usd"] == pytest.approx(0.75)
    assert old["requests"] == 1 and old["errors_absorbed"] == 1 and old["errors_surfaced"] == 0
    assert old["by_cause"] == {"rate_limited": 1} and old["p50_ms"] == 400.0
    totals = view["totals"]
    assert totals["requests"] == 4 and totals["errors_surfaced"] == 1
    assert totals["errors_absorbed"] == 3
    assert totals["by_cause"] == {"rate_limited": 2, "timeout": 1, "server_error": 1}
    assert totals["p50_ms"] == 200.0 and totals["p99_ms"] == 900.0
    assert totals["cost_usd"] == pytest.approx(0.875) and totals["sampled"] is False
    with pytest.raises(InvalidQuery):
        await store.overview(window_s=60, bucket_s=0)


# ----------------------------------------------------------------------------- open_store


async def test_open_store_from_config(tmp_path: Path) -> None:
    path = tmp_path / "from-config.db"
    cfg = TelemetryConfig(database=str(path), writer_queue=3, capture_content=True)
    store = open_store(cfg)
    assert isinstance(store, SQLiteStore) and store.writer_queue == 3 and store.capture_content
    await store.start()
    try:
        assert path.exists()
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        await store.aclose()
    with pytest.raises(ConfigError, match="not a PostgreSQL URL"):
        open_store(TelemetryConfig(store="postgres", database="brace.db"))
    with pytest.raises(ConfigError, match="off"):
        open_store(TelemetryConfig(store="off"))


async def test_an_unopenable_sqlite_path_is_a_config_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "log.db")
    with pytest.raises(ConfigError, match="missing-dir"):
        await store.start()


@pytest.mark.skipif(not pg_up(), reason="no PostgreSQL on 127.0.0.1:5432")
async def test_postgres_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    secret = "hunter2-very-secret"
    refused = PostgresStore(f"postgresql://brace:{secret}@127.0.0.1:1/test", connect_timeout=2)
    with pytest.raises(ConfigError) as info:
        await refused.start()
    assert secret not in info.value.message and "***" in info.value.message

    schema = f"brace_test_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(f"postgresql://postgres:{secret}@127.0.0.1:5432/test", schema=schema)
    try:
        await store.start()  # trust auth: the password is ignored
        assert secret not in str(store.stats())
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        await conn.execute("DROP TABLE requests CASCADE")
        await conn.close()
        with caplog.at_level(logging.WARNING, logger="brace.telemetry.store"):
            store.submit(rec(1))
            await store.flush()
        stats = store.stats()
        assert stats["errors"] >= 2 and stats["dropped"] == 1  # (+1 if a retention pass ran)
        assert "writing 1 records failed" in caplog.text
        assert secret not in caplog.text and secret not in str(store.stats())
    finally:
        await store.aclose()
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
