"""The request log's schema: ordered, named migrations and the row mapping.

One schema serves SQLite and PostgreSQL.  The DDL sticks to types both engines
read the same way: ``TEXT``, ``INTEGER``/``BIGINT`` and ``DOUBLE PRECISION``.
Times are epoch seconds as ``DOUBLE PRECISION`` (SQLite gives it REAL affinity);
booleans are ``INTEGER`` 0/1; lists and the captured content are JSON text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ...errors import ConfigError
from ..record import RequestRecord

__all__ = [
    "ATTEMPT_COLUMNS",
    "MIGRATIONS",
    "REQUEST_COLUMNS",
    "Migration",
    "SchemaTooNew",
    "attempt_rows",
    "check_applied",
    "request_row",
    "row_to_attempt",
    "row_to_request",
    "unique_records",
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
)
"""Every migration this Brace knows, in the order they apply.  Append only: never
edit or reorder a released migration; add ``0003_...``."""

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


REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "started_at",
    "duration",
    "status",
    "operation",
    "model",
    "grp",
    "deployment",
    "provider",
    "response_model",
    "error_class",
    "error",
    "stream",
    "ttft",
    "queue_wait",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "finish_reasons",
    "fallback",
    "hedged",
    "priority",
    "tenant",
    "client_disconnected",
    "attempts_count",
    "absorbed",
    "content",
)

ATTEMPT_COLUMNS: tuple[str, ...] = (
    "request_id",
    "seq",
    "deployment",
    "grp",
    "provider",
    '"offset"',
    "duration",
    "error_class",
    "status",
    "hedge",
    "error",
    "retry_delay",
)

_BOOLS = ("stream", "hedged", "client_disconnected")
_JSON = ("finish_reasons", "fallback", "content")


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def request_row(r: RequestRecord, *, capture_content: bool) -> tuple[Any, ...]:
    """The ``requests`` row of a record (in :data:`REQUEST_COLUMNS` order).  The
    content is kept only with ``capture_content``."""
    return (
        r.request_id,
        r.trace_id,
        r.span_id,
        r.parent_span_id,
        float(r.started_at),
        float(r.duration),
        int(r.status),
        r.operation,
        r.model,
        r.group,
        r.deployment,
        r.provider,
        r.response_model,
        r.error_class,
        r.error,
        int(r.stream),
        _float(r.ttft),
        _float(r.queue_wait),
        r.input_tokens,
        r.output_tokens,
        r.cached_tokens,
        r.reasoning_tokens,
        _float(r.cost_usd),
        _json(r.finish_reasons),
        _json(r.fallback),
        int(r.hedged),
        r.priority,
        r.tenant,
        int(r.client_disconnected),
        len(r.attempts),
        r.absorbed,
        _json(r.content) if capture_content and r.content is not None else None,
    )


def attempt_rows(r: RequestRecord) -> list[tuple[Any, ...]]:
    """The ``attempts`` rows of a record (in :data:`ATTEMPT_COLUMNS` order)."""
    return [
        (
            r.request_id,
            seq,
            a.deployment,
            a.group,
            a.provider,
            float(a.offset),
            float(a.duration),
            a.error_class,
            a.status,
            int(a.hedge),
            a.error,
            _float(a.retry_delay),
        )
        for seq, a in enumerate(r.attempts)
    ]


def row_to_request(row: dict[str, Any]) -> dict[str, Any]:
    """A ``requests`` row as the admin API shows it (``grp`` → ``group``, booleans and
    JSON decoded)."""
    out = dict(row)
    if "grp" in out:
        out["group"] = out.pop("grp")
    for key in _BOOLS:
        if key in out:
            out[key] = bool(out[key])
    for key in _JSON:
        if out.get(key) is not None:
            out[key] = orjson.loads(out[key])
    return out


def row_to_attempt(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["group"] = out.pop("grp")
    out["hedge"] = bool(out["hedge"])
    return out


def unique_records(records: list[RequestRecord]) -> list[RequestRecord]:
    """The first record of each request id (a caller may reuse ``x-request-id``: the
    first record stored under an id wins)."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r.request_id not in seen:
            seen.add(r.request_id)
            out.append(r)
    return out
