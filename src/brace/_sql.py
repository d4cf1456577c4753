"""SQL helpers shared by the durable stores: applying the ordered migrations (the
request log and the key store share one list; whichever opens a database first
migrates it) and PostgreSQL placeholders."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from .telemetry.store._schema import Migration, check_applied

__all__ = ["migrate_postgres", "migrate_sqlite", "numbered"]

_MIGRATION_LOCK = 0x62726163655F6C67
"""The request log's ``pg_advisory_xact_lock`` key ("brace_lg"): one migrator at a time."""

_CREATE = (
    "CREATE TABLE IF NOT EXISTS brace_migrations "
    "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)


def migrate_sqlite(conn: sqlite3.Connection, migrations: Sequence[Migration], where: str) -> None:
    """Apply what is missing, in one ``BEGIN IMMEDIATE`` transaction (all or nothing)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_CREATE)
        applied = [r[0] for r in conn.execute("SELECT name FROM brace_migrations")]
        for migration in check_applied(applied, migrations, where):
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO brace_migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, time.time()),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


async def migrate_postgres(
    conn: Any, migrations: Sequence[Migration], where: str, *, schema: str | None = None
) -> None:
    """Apply what is missing, under an advisory lock (gateways starting together
    migrate once); ``schema`` is created first when given (a checked identifier)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        if schema:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(_CREATE)
        applied = [r["name"] for r in await conn.fetch("SELECT name FROM brace_migrations")]
        for migration in check_applied(applied, migrations, where):
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO brace_migrations (name, applied_at) VALUES ($1, $2)",
                migration.name,
                time.time(),
            )


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``?`` placeholders (outside quotes) as PostgreSQL's ``$1, $2...``."""
    out: list[str] = []
    n = 0
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "?" and not quoted:
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)
