"""Write the databases of an "old" Brace, for the forward-migration test.

Run ONCE at commit 82f7f15 (before the ``store`` package existed), from the
repository's root::

    PYTHONPATH=src python tests/data/make_legacy_store.py

It writes, with that commit's own code:

- ``tests/data/legacy_store.db``: a SQLite request log + key store (every migration
  of that time applied) with a few rows in ``requests``, ``attempts``, ``api_keys``,
  ``teams``, ``key_changes``, ``instances`` and ``spend``;
- ``tests/data/legacy_cache.db``: a SQLite response cache with two entries;
- ``tests/data/legacy_store.pg.sql``: the same rows in PostgreSQL, dumped with
  ``pg_dump --schema=brace_legacy --no-owner --inserts`` (the test loads it into a
  schema of its own).

The files are committed; do not regenerate them with newer code (they stand for a
database created by an old Brace).  The test is
``tests/integration/test_store_matrix.py::test_a_legacy_database_migrates_forward``.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_SCHEMA = "brace_legacy"
T0 = 1_714_600_000.0


def records() -> list[Any]:
    from brace.telemetry.record import AttemptRecord, RequestRecord

    return [
        RequestRecord(
            request_id="legacy-0001",
            trace_id="a" * 32,
            span_id="b" * 16,
            parent_span_id=None,
            operation="chat",
            model="gpt",
            started_at=T0 - 60,
            duration=1.2,
            status=200,
            group="claude",
            deployment="claude-a",
            provider="anthropic",
            input_tokens=12,
            output_tokens=3,
            cost_usd=0.0002,
            fallback=["gpt", "claude"],
            finish_reasons=["stop"],
            attempts=[
                AttemptRecord("gpt-a", "gpt", "openai", 0.0, 0.1, "rate_limited", 429),
                AttemptRecord("claude-a", "claude", "anthropic", 0.4, 0.8, None, 200),
            ],
            content={"messages": [{"role": "user", "content": "hi"}]},
        ),
        RequestRecord(
            request_id="legacy-0002",
            trace_id="a" * 32,
            span_id="c" * 16,
            parent_span_id=None,
            operation="embeddings",
            model="embed",
            started_at=T0 - 30,
            duration=0.2,
            status=502,
            group="embed",
            deployment="emb-1",
            provider="openai",
            error_class="server_error",
            error="upstream 502",
            attempts=[AttemptRecord("emb-1", "embed", "openai", 0.0, 0.2, "server_error", 502)],
        ),
    ]


def keys() -> tuple[list[Any], list[Any]]:
    from brace.keys import Budget, VirtualKey

    budgets = [Budget("day", 5.0), Budget("total", 100.0, "soft")]
    return [
        VirtualKey(
            id="key_legacy1",
            key_hash="f" * 64,
            prefix="sk-brace-abc",
            name="ci",
            team="ml",
            models=frozenset({"gpt", "claude"}),
            rpm=60,
            tpm=10_000,
            priority="batch",
            budgets=tuple(budgets),
            metadata={"owner": "ana"},
            created_at=T0 - 3600,
            updated_at=T0 - 3600,
        ),
        VirtualKey(
            id="key_legacy2",
            key_hash="e" * 64,
            prefix="sk-brace-def",
            name="old",
            created_at=T0 - 7200,
            updated_at=T0 - 100,
            revoked_at=T0 - 100,
        ),
    ], budgets


async def fill(store: Any, key_store: Any) -> None:
    await store.start()
    for r in records():
        store.submit(r)
    await store.aclose()
    await key_store.start()
    ks, budgets = keys()
    for k in ks:
        await key_store.insert_key(k)
    await key_store.set_team("ml", budgets[:1], T0 - 50)
    await key_store.heartbeat("gw-1", 3, T0 - 10)
    await key_store.add_spend(
        [("key:key_legacy1", "total", 0.25, 3), ("team:ml", "day:2024-05-01", 0.125, 2)], T0 - 5
    )
    await key_store.aclose()


async def sqlite() -> None:
    from brace.telemetry.store import SQLiteStore

    from brace.cache.backends import CachedAnswer, SQLiteCache
    from brace.keys import open_key_store

    db = HERE / "legacy_store.db"
    db.unlink(missing_ok=True)
    await fill(SQLiteStore(db, capture_content=True, now=lambda: T0), open_key_store(str(db)))
    conn_checkpoint(db)

    path = HERE / "legacy_cache.db"
    path.unlink(missing_ok=True)
    cache = SQLiteCache(path, wall=lambda: T0)
    await cache.start()
    await cache.set(
        "k1", CachedAnswer(b'{"id":"c1","choices":[]}', {"prompt_tokens": 3}, T0, "dep", "m"), 1e9
    )
    await cache.set("k2", CachedAnswer(b'{"object":"list","data":[]}', None, T0), 1e9)
    await cache.aclose()
    conn_checkpoint(path)


def conn_checkpoint(path: Path) -> None:
    """Fold the WAL into the file, so that one file is the whole database."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()


async def postgres() -> None:
    import asyncpg  # type: ignore[import-untyped]
    from brace.telemetry.store import PostgresStore

    from brace.keys import open_key_store

    conn = await asyncpg.connect(PG_URL)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    await conn.close()
    # the key store of that time took no schema: the URL's search_path puts it there
    await fill(
        PostgresStore(PG_URL, schema=PG_SCHEMA, capture_content=True, now=lambda: T0),
        open_key_store(f"{PG_URL}?search_path={PG_SCHEMA}"),
    )
    dump = subprocess.run(  # noqa: ASYNC221  (a one-off script: nothing else runs)
        ["pg_dump", "--schema", PG_SCHEMA, "--no-owner", "--no-privileges", "--inserts", PG_URL],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (HERE / "legacy_store.pg.sql").write_text(dump)
    conn = await asyncpg.connect(PG_URL)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    await conn.close()


if __name__ == "__main__":
    asyncio.run(sqlite())
    asyncio.run(postgres())
