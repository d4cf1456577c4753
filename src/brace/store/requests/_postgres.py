"""The shared engine: PostgreSQL through an asyncpg pool.

Same schema and migrations as SQLite (applied under an advisory lock, so gateways
starting together migrate once).  A batch is one transaction of two
``executemany`` calls.  The URL's password is never logged nor shown: errors and
stats name the database with :func:`~brace.state.redact_url`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ...errors import ConfigError
from ...state import redact_url
from .._migrations import migrate_postgres
from .._postgres import CONNECT_ERRORS, Secrets, check_schema, close_pool, numbered, open_pool
from ..runs import LoggedRun, LoggedStep
from ..runs._postgres import delete_runs, write_runs
from ._rows import (
    ATTEMPT_COLUMNS,
    REQUEST_COLUMNS,
    LoggedRequest,
    attempt_rows,
    request_row,
    unique_records,
)
from ._writer import BaseStore

__all__ = ["PostgresStore"]


def _marks(n: int) -> str:
    return ", ".join(f"${i}" for i in range(1, n + 1))


_INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES ({_marks(len(REQUEST_COLUMNS))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)
_INSERT_ATTEMPT = (
    f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({_marks(len(ATTEMPT_COLUMNS))}) "
    "ON CONFLICT (request_id, seq) DO NOTHING"
)


class PostgresStore(BaseStore):
    """The request log in PostgreSQL (``telemetry.database: ${DATABASE_URL}``).

    ``schema`` puts the tables in their own schema (created if missing) instead of
    the connection's default search path.
    """

    engine: ClassVar[str] = "postgres"

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not url.startswith(("postgres://", "postgresql://")):
            raise ConfigError(
                f"telemetry.database: {redact_url(url)!r} is not a PostgreSQL URL; expected "
                "postgresql://user:password@host:5432/dbname (e.g. ${DATABASE_URL})"
            )
        check_schema(schema)
        self._url = url
        self._secrets = Secrets(url)
        self.schema = schema
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: Any = None

    @property
    def where(self) -> str:
        where = redact_url(self._url)
        return f"{where} (schema {self.schema})" if self.schema else where

    def _redact(self, text: str) -> str:
        return self._secrets.redact(text)

    # ------------------------------------------------------------------ open / close

    async def _open(self) -> None:
        try:
            self._pool = await open_pool(
                self._url,
                size=self.pool_size,
                connect_timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                application_name="brace",
                schema=self.schema,
            )
            await self._migrate()
        except CONNECT_ERRORS as exc:
            await self._close()
            detail = self._redact(f"{type(exc).__name__}: {exc}")
            raise ConfigError(
                f"telemetry.database: cannot open the PostgreSQL request log at {self.where}: "
                f"{detail}"
            ) from None
        except BaseException:
            await self._close()
            raise

    async def _migrate(self) -> None:
        async with self._pool.acquire() as conn:
            await migrate_postgres(conn, self.migrations, self.where, schema=self.schema)

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    # ------------------------------------------------------------------ primitives

    async def _write(self, records: list[LoggedRequest]) -> int:
        fresh = unique_records(records)
        capture = self.capture_content
        async with self._pool.acquire() as conn, conn.transaction():
            existing = {
                r["request_id"]
                for r in await conn.fetch(
                    "SELECT request_id FROM requests WHERE request_id = ANY($1::text[])",
                    [r.request_id for r in fresh],
                )
            }
            if existing:
                fresh = [r for r in fresh if r.request_id not in existing]
            if fresh:
                await conn.executemany(
                    _INSERT_REQUEST, [request_row(r, capture_content=capture) for r in fresh]
                )
            attempts = [row for r in fresh for row in attempt_rows(r)]
            if attempts:
                await conn.executemany(_INSERT_ATTEMPT, attempts)
        return len(records) - len(fresh)

    async def _delete(self, request_ids: list[str]) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM attempts WHERE request_id = ANY($1::text[])", request_ids
            )
            status: str = await conn.execute(
                "DELETE FROM requests WHERE request_id = ANY($1::text[])", request_ids
            )
        return int(status.rsplit(" ", 1)[-1])  # "DELETE <n>"

    async def _write_runs(self, runs: list[LoggedRun], steps: list[LoggedStep]) -> int:
        return await write_runs(self._pool, runs, steps, capture_content=self.capture_content)

    async def _delete_runs(self, keys: list[tuple[str, str]]) -> int:
        return await delete_runs(self._pool, keys)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        if self._pool is None:
            raise RuntimeError("the store is not started")
        rows = await self._pool.fetch(numbered(sql), *params)
        return [dict(r) for r in rows]

    def _floor_div(self, expr: str, seconds: int) -> str:
        return f"CAST(FLOOR(({expr}) / {float(seconds)!r}) AS BIGINT)"

    def _in(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?::text[])", [list(values)]
