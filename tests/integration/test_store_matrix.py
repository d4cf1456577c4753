"""Every table family of ``brace.store`` on every engine it has: create, migrate,
write, read — and a database written by an older Brace (``tests/data/legacy_*``,
made by ``tests/data/make_legacy_store.py`` at 82f7f15) opened and written by this
one.

The request log and the key tables run on SQLite and PostgreSQL (one fresh schema
per test); the response cache's file is SQLite only (its shared engine is Redis,
tested in ``test_cache_redis.py``)."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from brace.keys import Budget, KeyStore, VirtualKey, open_key_store
from brace.runs import RunRecord, StepRecord
from brace.store import MIGRATIONS
from brace.store.cache import CachedAnswer, SQLiteCache
from brace.store.requests import BaseStore, InvalidQuery, PostgresStore, SQLiteStore
from brace.telemetry.record import AttemptRecord, RequestRecord

from ._services import PG_URL, pg_up

DATA = Path(__file__).resolve().parents[1] / "data"
T0 = 1_714_600_000.0
LEGACY_PG_SCHEMA = "brace_legacy"
NO_PG = pytest.mark.skipif(not pg_up(), reason="no PostgreSQL on 127.0.0.1:5432")


@dataclass
class Database:
    """One database of one engine: a SQLite file, or a fresh PostgreSQL schema."""

    engine: str
    path: Path
    schema: str

    def request_log(self, **options: Any) -> BaseStore:
        options.setdefault("now", lambda: T0)
        options.setdefault("retention_interval", 3600.0)
        if self.engine == "sqlite":
            return SQLiteStore(self.path, **options)
        return PostgresStore(PG_URL, schema=self.schema, **options)

    def key_store(self) -> KeyStore:
        if self.engine == "sqlite":
            return open_key_store(str(self.path))
        # the key store takes a URL: its search_path puts the tables in the schema
        return open_key_store(f"{PG_URL}?search_path={self.schema}")

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.engine == "sqlite":
            conn = sqlite3.connect(self.path)
            try:
                return [tuple(r) for r in conn.execute(sql)]
            finally:
                conn.close()
        pg = await asyncpg.connect(PG_URL, server_settings={"search_path": self.schema})
        try:
            return [tuple(r) for r in await pg.fetch(sql)]
        finally:
            await pg.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=NO_PG)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(request.param, tmp_path / "brace.db", f"brace_test_{uuid.uuid4().hex[:12]}")
    if d.engine == "postgres":
        pg = await asyncpg.connect(PG_URL)
        await pg.execute(f'CREATE SCHEMA "{d.schema}"')
        await pg.close()
    try:
        yield d
    finally:
        if d.engine == "postgres":
            pg = await asyncpg.connect(PG_URL)
            try:
                await pg.execute(f'DROP SCHEMA IF EXISTS "{d.schema}" CASCADE')
            finally:
                await pg.close()


def record(i: int) -> RequestRecord:
    return RequestRecord(
        request_id=f"new-{i}",
        trace_id=f"{i:032x}",
        span_id=f"{i:016x}",
        parent_span_id=None,
        operation="chat",
        model="gpt",
        started_at=T0 - i,
        duration=0.1,
        status=200,
        group="gpt",
        deployment="gpt-a",
        provider="openai",
        cost_usd=0.001,
        attempts=[
            AttemptRecord("gpt-b", "gpt", "openai", 0.0, 0.05, "server_error", 500),
            AttemptRecord("gpt-a", "gpt", "openai", 0.06, 0.04, None, 200, retry_delay=0.01),
        ],
    )


def key(i: int, **kw: Any) -> VirtualKey:
    fields: dict[str, Any] = {
        "id": f"key_new{i}",
        "key_hash": f"{i:064x}",
        "prefix": f"sk-brace-{i}",
        "name": f"k{i}",
        "team": "ml",
        "models": frozenset({"gpt"}),
        "budgets": (Budget("month", 10.0),),
        "metadata": {"n": str(i)},
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(kw)
    return VirtualKey(**fields)


async def applied(db: Database) -> list[str]:
    return [r[0] for r in await db.rows("SELECT name FROM brace_migrations ORDER BY name")]


# ----------------------------------------------------------------------------- the contract


async def request_log_contract(db: Database, *, known: int = 0) -> None:
    """Open (migrating), write a batch, read it back, reopen (no migration again)."""
    store = db.request_log()
    await store.start()
    try:
        for i in range(3):
            store.submit(record(i))
        await store.flush()
        assert store.stats()["written"] == 3
        got = await store.get_request("new-1")
        assert got is not None and got["group"] == "gpt" and got["cost_usd"] == 0.001
        assert [a["deployment"] for a in got["attempts"]] == ["gpt-b", "gpt-a"]
        assert got["attempts"][1]["retry_delay"] == 0.01
        rows, _ = await store.list_requests(limit=1000)
        assert len(rows) == known + 3
    finally:
        await store.aclose()
    assert await applied(db) == [m.name for m in MIGRATIONS]
    again = db.request_log()
    await again.start()
    await again.aclose()
    assert len(await applied(db)) == len(MIGRATIONS)


async def key_contract(db: Database, *, known: int = 0) -> None:
    """Open (migrating), write keys, a team and spend, read them back."""
    store = db.key_store()
    await store.start()
    try:
        before = await store.version()
        await store.insert_key(key(1))
        await store.update_key(key(1, name="renamed", revoked_at=T0 + 1))
        await store.set_team("ml", [Budget("day", 2.0, "soft")], T0)
        await store.add_spend([("key:key_new1", "total", 0.5, 2)] * 2, T0)
        await store.heartbeat("gw-new", before + 3, T0)
        version, keys, teams = await store.load()
        assert version == before + 3
        assert len(keys) == known + 1
        mine = next(k for k in keys if k.id == "key_new1")
        assert mine == key(1, name="renamed", revoked_at=T0 + 1)
        assert teams["ml"] == (Budget("day", 2.0, "soft"),)
        assert (await store.spend(["total"]))[("key:key_new1", "total")] == (1.0, 4)
        assert (await store.instances(T0 - 1))["gw-new"] == before + 3
    finally:
        await store.aclose()
    assert await applied(db) == [m.name for m in MIGRATIONS]


def run(run_id: str, tenant: str = "key_a", **kw: Any) -> RunRecord:
    fields: dict[str, Any] = {"started_at": T0 - 10, "last_activity": T0 - 5, "agent": "bot"}
    fields.update(kw)
    return RunRecord(tenant=tenant, run_id=run_id, **fields)


def step(run_id: str, seq: int, tenant: str = "key_a", **kw: Any) -> StepRecord:
    fields: dict[str, Any] = {"kind": "model", "name": "gpt", "started_at": T0 - 10 + seq}
    fields.update(kw)
    return StepRecord(tenant=tenant, run_id=run_id, seq=seq, **fields)


async def runs_contract(db: Database) -> None:
    """Runs and steps through the writer: upserted by key (the latest version wins,
    versions waiting together coalesce), read back in order, then retention."""
    clock = [T0]
    store = db.request_log(capture_content=True, now=lambda: clock[0])
    await store.start()
    try:
        store.submit_run(run("r1", steps=1, request_ids=["q1"]))
        store.submit_step(step("r1", 1, status="running", request_id="q1"))
        # newer versions of the same keys while the first ones still wait: coalesced
        store.submit_run(run("r1", steps=2, status="running", request_ids=["q1"]))
        store.submit_step(
            step("r1", 1, status="ok", duration=1.5, fallback=["gpt", "claude"], cost_usd=0.25)
        )
        store.submit_step(
            step("r1", 2, kind="tool", name="search", opened_by="q1", content={"args": {"q": 1}})
        )
        store.submit_run(run("r1", tenant="key_b", last_activity=T0 - 86_400 * 10))
        store.submit_step(step("r1", 1, tenant="key_b", started_at=T0 - 86_400 * 10))
        await store.flush()
        stats = store.stats()
        assert stats["coalesced"] == 2
        assert (stats["runs_written"], stats["steps_written"]) == (2, 3)

        # a later batch upserts over the stored rows
        store.submit_run(
            run(
                "r1",
                status="failed",
                steps=2,
                last_activity=T0,
                ended_at=T0,
                failure_step=2,
                failure_class="tool_error",
                request_ids=["q1", "q2"],
            )
        )
        store.submit_step(step("r1", 2, kind="tool", name="search", status="error", duration=0.5))
        await store.flush()

        got = await store.get_run("key_a", "r1")
        assert got is not None
        assert got["status"] == "failed" and got["step_count"] == 2
        assert got["request_ids"] == ["q1", "q2"] and got["duration"] == 10.0
        assert [(s["seq"], s["kind"], s["status"]) for s in got["steps"]] == [
            (1, "model", "ok"),
            (2, "tool", "error"),
        ]
        assert got["steps"][0]["fallback"] == ["gpt", "claude"]
        assert got["steps"][0]["cost_usd"] == 0.25 and got["steps"][0]["duration"] == 1.5
        # the second tool version carries no content: the latest version wins whole
        assert got["steps"][1]["content"] is None

        rows, cursor = await store.list_runs(limit=1)
        assert [(r["tenant"], r["status"]) for r in rows] == [("key_a", "failed")]
        rows, _ = await store.list_runs(before=cursor)
        assert [r["tenant"] for r in rows] == ["key_b"]
        assert [r["tenant"] for r in (await store.list_runs(q="BO"))[0]] == ["key_a", "key_b"]
        with pytest.raises(InvalidQuery) as ambiguous:
            await store.get_run(None, "r1")
        assert ambiguous.value.param == "key" and "2 tenants" in str(ambiguous.value)

        # retention (30 days): runs last active before then go, with their steps
        clock[0] = T0 + 86_400 * 25
        await store.apply_retention()
        assert await store.get_run("key_b", "r1") is None
        assert await store.get_run(None, "r1") is not None  # one tenant left: no key needed
        assert store.stats()["runs_deleted"] == 1
        assert await db.rows("SELECT tenant FROM run_steps WHERE tenant = 'key_b'") == []
    finally:
        await store.aclose()


async def cache_contract(path: Path, *, known: int = 0) -> None:
    cache = SQLiteCache(path, wall=lambda: T0, front_entries=0)
    await cache.start()
    try:
        answer = CachedAnswer(b'{"id":"x"}', {"prompt_tokens": 1}, T0, "dep", "m")
        await cache.set("new", answer, 60)
        assert await cache.get("new") == answer
    finally:
        await cache.aclose()
    reopened = SQLiteCache(path, wall=lambda: T0 + 30, front_entries=0)
    try:
        assert await reopened.get("new") == answer
    finally:
        await reopened.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM brace_cache").fetchone()[0] == known + 1
    finally:
        conn.close()


async def test_request_log(db: Database) -> None:
    await request_log_contract(db)


async def test_runs_and_steps(db: Database) -> None:
    await runs_contract(db)


async def test_keys_teams_and_spend(db: Database) -> None:
    await key_contract(db)


async def test_the_families_share_one_database(db: Database) -> None:
    """Whichever family opens the database first migrates it for both."""
    await key_contract(db)
    await request_log_contract(db)


async def test_response_cache(tmp_path: Path) -> None:
    await cache_contract(tmp_path / "cache.db")


# ----------------------------------------------------------------------------- an old database


async def legacy(db: Database) -> None:
    """Put the database an old Brace wrote in ``db``."""
    if db.engine == "sqlite":
        shutil.copy(DATA / "legacy_store.db", db.path)
        return
    dump = (DATA / "legacy_store.pg.sql").read_text()
    lines = [line for line in dump.splitlines() if not line.startswith("\\")]
    script = "\n".join(lines).replace(LEGACY_PG_SCHEMA, db.schema)
    pg = await asyncpg.connect(PG_URL)
    try:
        await pg.execute(f'DROP SCHEMA "{db.schema}"')  # the dump creates it
        await pg.execute(script)
    finally:
        await pg.close()


async def test_a_legacy_database_migrates_forward(db: Database) -> None:
    await legacy(db)
    stamped = await db.rows("SELECT name, applied_at FROM brace_migrations ORDER BY name")

    log = db.request_log()
    await log.start()
    try:
        old = await log.get_request("legacy-0001")
        assert old is not None
        assert old["group"] == "claude" and old["fallback"] == ["gpt", "claude"]
        assert old["absorbed"] == 1 and old["attempts_count"] == 2
        assert old["content"] == {"messages": [{"role": "user", "content": "hi"}]}
        assert old["run_id"] is None  # 0008_request_run_id: no run before it
        assert [(a["deployment"], a["status"]) for a in old["attempts"]] == [
            ("gpt-a", 429),
            ("claude-a", 200),
        ]
        assert [r["request_id"] for r in await log.trace("a" * 32)] == [
            "legacy-0001",
            "legacy-0002",
        ]
        spend = await log.spend("model", since=T0 - 3600, until=T0)
        assert spend["total"]["requests"] == 2
    finally:
        await log.aclose()

    keys = db.key_store()
    await keys.start()
    try:
        version, found, teams = await keys.load()
        assert version == 3
        ci = next(k for k in found if k.id == "key_legacy1")
        assert ci.models == frozenset({"gpt", "claude"}) and ci.metadata == {"owner": "ana"}
        assert ci.budgets == (Budget("day", 5.0), Budget("total", 100.0, "soft"))
        assert ci.rpm == 60 and ci.priority == "batch" and ci.team == "ml"
        assert next(k for k in found if k.id == "key_legacy2").state(T0) == "revoked"
        assert teams == {"ml": (Budget("day", 5.0),)}
        assert await keys.spend(["total", "day:2024-05-01"]) == {
            ("key:key_legacy1", "total"): (0.25, 3),
            ("team:ml", "day:2024-05-01"): (0.125, 2),
        }
        assert await keys.instances(T0 - 60) == {"gw-1": 3}
    finally:
        await keys.aclose()

    # every migration recorded, none applied again (the ones newer than the legacy
    # database applied once, after them)
    now = await db.rows("SELECT name, applied_at FROM brace_migrations ORDER BY name")
    assert now[: len(stamped)] == stamped
    assert [r[0] for r in now] == [m.name for m in MIGRATIONS]
    # and new writes work beside the old rows
    await request_log_contract(db, known=2)
    await key_contract(db, known=2)
    await runs_contract(db)


async def test_a_legacy_cache_file_is_read_and_written(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    shutil.copy(DATA / "legacy_cache.db", path)
    cache = SQLiteCache(path, wall=lambda: T0, front_entries=0)
    try:
        assert await cache.get("k1") == CachedAnswer(
            b'{"id":"c1","choices":[]}', {"prompt_tokens": 3}, T0, "dep", "m"
        )
        assert await cache.get("k2") == CachedAnswer(b'{"object":"list","data":[]}', None, T0)
    finally:
        await cache.aclose()
    await cache_contract(path, known=2)
