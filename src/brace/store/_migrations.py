"""Every durable table's schema: one list of ordered, named migrations, and applying it.

One schema serves SQLite and PostgreSQL, and every table family shares it (the
request log, keys/teams/spend, agent runs; the next ones append here): whichever
store opens a database first migrates it.  The DDL sticks to types both engines read the same
way: ``TEXT``, ``INTEGER``/``BIGINT`` and ``DOUBLE PRECISION``.  Times are epoch
seconds as ``DOUBLE PRECISION`` (SQLite gives it REAL affinity); booleans are
``INTEGER`` 0/1; lists and the captured content are JSON text.

Applied migrations are recorded in ``brace_migrations (name, applied_at)``; all the
missing ones apply in one transaction (``BEGIN IMMEDIATE`` on SQLite; under a
``pg_advisory_xact_lock`` on PostgreSQL, so that gateways starting together migrate
once).  A database with a migration this code does not know is refused
(:class:`SchemaTooNew`).  The response cache's own file is not migrated: it is
versioned and rebuilt (see :mod:`brace.store.cache`).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = [
    "MIGRATIONS",
    "Migration",
    "SchemaTooNew",
    "check_applied",
    "migrate_postgres",
    "migrate_sqlite",
]


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer Brace than this one."""

    error_class = "store_schema"


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: applied once, in order, recorded in ``brace_migrations``."""

    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_requests",
        (
            """CREATE TABLE requests (
                request_id TEXT PRIMARY KEY,
                trace_id TEXT NOT NULL,
                span_id TEXT NOT NULL,
                parent_span_id TEXT,
                started_at DOUBLE PRECISION NOT NULL,
                duration DOUBLE PRECISION NOT NULL,
                status INTEGER NOT NULL,
                operation TEXT NOT NULL,
                model TEXT NOT NULL,
                grp TEXT,
                deployment TEXT,
                provider TEXT,
                response_model TEXT,
                error_class TEXT,
                error TEXT,
                stream INTEGER NOT NULL DEFAULT 0,
                ttft DOUBLE PRECISION,
                queue_wait DOUBLE PRECISION,
                input_tokens BIGINT,
                output_tokens BIGINT,
                cached_tokens BIGINT,
                reasoning_tokens BIGINT,
                cost_usd DOUBLE PRECISION,
                finish_reasons TEXT,
                fallback TEXT,
                hedged INTEGER NOT NULL DEFAULT 0,
                priority TEXT,
                tenant TEXT,
                client_disconnected INTEGER NOT NULL DEFAULT 0,
                attempts_count INTEGER NOT NULL DEFAULT 0,
                absorbed INTEGER NOT NULL DEFAULT 0,
                content TEXT
            )""",
            "CREATE INDEX requests_started_at ON requests (started_at, request_id)",
            "CREATE INDEX requests_model_started_at ON requests (model, started_at)",
            "CREATE INDEX requests_trace_id ON requests (trace_id)",
            "CREATE INDEX requests_deployment ON requests (deployment, started_at)",
        ),
    ),
    Migration(
        "0002_attempts",
        (
            """CREATE TABLE attempts (
                request_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                deployment TEXT NOT NULL,
                grp TEXT NOT NULL,
                provider TEXT NOT NULL,
                "offset" DOUBLE PRECISION NOT NULL,
                duration DOUBLE PRECISION NOT NULL,
                error_class TEXT,
                status INTEGER,
                hedge INTEGER NOT NULL DEFAULT 0,
                error TEXT,
                PRIMARY KEY (request_id, seq)
            )""",
        ),
    ),
    Migration(
        "0003_keys",
        (
            # Virtual API keys: only a SHA-256 of the key is stored, never the key.
            """CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                key_hash TEXT NOT NULL UNIQUE,
                prefix TEXT NOT NULL,
                name TEXT NOT NULL,
                team TEXT,
                models TEXT,
                rpm BIGINT,
                tpm BIGINT,
                priority TEXT,
                budgets TEXT,
                metadata TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION,
                revoked_at DOUBLE PRECISION
            )""",
            "CREATE INDEX api_keys_team ON api_keys (team)",
            """CREATE TABLE teams (
                team TEXT PRIMARY KEY,
                budgets TEXT,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            # One row: bumped by every change to keys or teams; instances poll it.
            "CREATE TABLE key_changes (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
            "INSERT INTO key_changes (id, version) VALUES (1, 0)",
            # Gateways sharing the database, and the key version each has loaded.
            """CREATE TABLE instances (
                instance_id TEXT PRIMARY KEY,
                seen_version BIGINT NOT NULL,
                heartbeat_at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    Migration(
        "0004_spend",
        (
            # Settled spend per budget scope ("key:<id>", "team:<name>") and period
            # ("total", "day:2026-11-26", "month:2026-11"), summed over instances.
            """CREATE TABLE spend (
                scope TEXT NOT NULL,
                period TEXT NOT NULL,
                spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
                requests BIGINT NOT NULL DEFAULT 0,
                updated_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (scope, period)
            )""",
        ),
    ),
    Migration(
        "0005_fewer_indexes",
        (
            # Each index costs every insert a b-tree update (~5 µs a row each on SQLite):
            # listings filtered by model or deployment walk requests_started_at newest
            # first instead (they are ordered by it and paged), and spend and overview
            # read time ranges through it.  requests_trace_id stays (trace lookups).
            "DROP INDEX IF EXISTS requests_model_started_at",
            "DROP INDEX IF EXISTS requests_deployment",
        ),
    ),
    Migration(
        "0006_attempt_retry_delay",
        # the backoff waited before a retried attempt (NULL: none was decided)
        ("ALTER TABLE attempts ADD COLUMN retry_delay DOUBLE PRECISION",),
    ),
    Migration(
        "0007_runs",
        (
            # Agent runs, keyed by tenant (a key id, "master", "local"): run ids are
            # scoped to their tenant.  Upserted by the writer: the latest version wins.
            """CREATE TABLE runs (
                tenant TEXT NOT NULL,
                run_id TEXT NOT NULL,
                agent TEXT,
                status TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                last_activity DOUBLE PRECISION NOT NULL,
                ended_at DOUBLE PRECISION,
                linked_by TEXT NOT NULL,
                trace_id TEXT,
                span_id TEXT,
                steps INTEGER NOT NULL DEFAULT 0,
                model_steps INTEGER NOT NULL DEFAULT 0,
                tool_steps INTEGER NOT NULL DEFAULT 0,
                failed_steps INTEGER NOT NULL DEFAULT 0,
                input_tokens BIGINT NOT NULL DEFAULT 0,
                output_tokens BIGINT NOT NULL DEFAULT 0,
                cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
                retries INTEGER NOT NULL DEFAULT 0,
                wait_s DOUBLE PRECISION NOT NULL DEFAULT 0,
                failure_step INTEGER,
                failure_class TEXT,
                failure_deployment TEXT,
                failure_error TEXT,
                request_ids TEXT,
                PRIMARY KEY (tenant, run_id)
            )""",
            # the listing (newest activity first, paged) and retention walk this one
            "CREATE INDEX runs_last_activity ON runs (last_activity, tenant, run_id)",
            "CREATE INDEX runs_status ON runs (status, last_activity)",
            "CREATE INDEX runs_agent ON runs (agent, last_activity)",
            "CREATE INDEX runs_tenant ON runs (tenant, last_activity)",
            # a run id asked for without its tenant (the admin API)
            "CREATE INDEX runs_run_id ON runs (run_id)",
            """CREATE TABLE run_steps (
                tenant TEXT NOT NULL,
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                duration DOUBLE PRECISION,
                status TEXT NOT NULL,
                error_class TEXT,
                error TEXT,
                request_id TEXT,
                deployment TEXT,
                label TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                retries INTEGER NOT NULL DEFAULT 0,
                retry_wait DOUBLE PRECISION NOT NULL DEFAULT 0,
                queue_wait DOUBLE PRECISION,
                fallback TEXT,
                input_tokens BIGINT,
                output_tokens BIGINT,
                cost_usd DOUBLE PRECISION,
                tool_calls INTEGER NOT NULL DEFAULT 0,
                tool_call_id TEXT,
                tool_type TEXT,
                opened_by TEXT,
                closed_by TEXT,
                result_bytes BIGINT,
                content TEXT,
                PRIMARY KEY (tenant, run_id, seq)
            )""",
        ),
    ),
    Migration(
        "0008_request_run_id",
        (
            # the run a request was a step of (NULL: none)
            "ALTER TABLE requests ADD COLUMN run_id TEXT",
            # partial: a request outside any run costs no index update (both engines
            # use it for "run_id = ?", which implies NOT NULL)
            "CREATE INDEX requests_run_id ON requests (run_id) WHERE run_id IS NOT NULL",
        ),
    ),
)
"""Every migration this Brace knows, in the order they apply.  Append only: never
edit or reorder a released migration; add ``0009_...``.  By table family: the request
log (:mod:`brace.store.requests`) ``0001``, ``0002``, ``0005``, ``0006``, ``0008``;
keys, teams and spend (:mod:`brace.store.keys`) ``0003``, ``0004``; agent runs and
their steps (:mod:`brace.store.runs`) ``0007``."""

_NAME = re.compile(r"^\d{4}_[a-z0-9_]+$")


def check_applied(
    applied: Sequence[str], known: Sequence[Migration], where: str
) -> list[Migration]:
    """The migrations still to apply, or :class:`SchemaTooNew` when the database has
    one this code does not know."""
    names = [m.name for m in known]
    for name in names:
        if not _NAME.match(name):  # pragma: no cover - a programming mistake
            raise ValueError(f"migration name {name!r} must look like 0003_what_it_does")
    if names != sorted(names) or len(set(names)) != len(names):  # pragma: no cover
        raise ValueError("migrations must have distinct names in ascending order")
    unknown = sorted(set(applied) - set(names))
    if unknown:
        raise SchemaTooNew(
            f"telemetry.database ({where}) has migrations this Brace does not know: "
            f"{', '.join(unknown)} (it was written by a newer Brace). Upgrade Brace, or point "
            "telemetry.database at another database."
        )
    done = set(applied)
    return [m for m in known if m.name not in done]


_MIGRATION_LOCK = 0x62726163655F6C67
"""The migrations' ``pg_advisory_xact_lock`` key ("brace_lg"): one migrator at a time."""

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
