"""The key tables in PostgreSQL: an asyncpg pool of two connections (imported only
when ``keys.database`` is a PostgreSQL URL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import ConfigError
from ...state import redact_url
from .._migrations import MIGRATIONS, migrate_postgres
from .._postgres import CONNECT_ERRORS, close_pool, numbered, open_pool
from ._tables import KeyTables

__all__ = ["PostgresKeyTables"]


class PostgresKeyTables(KeyTables):
    """An asyncpg pool of two connections."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.where = redact_url(url)
        self._pool: Any = None

    async def start(self) -> None:
        try:
            self._pool = await open_pool(
                self._url,
                size=2,
                connect_timeout=10.0,
                command_timeout=30.0,
                application_name="brace-keys",
            )
            async with self._pool.acquire() as conn:
                await migrate_postgres(conn, MIGRATIONS, self.where)
        except CONNECT_ERRORS as exc:
            await self.aclose()
            raise ConfigError(
                f"keys.database: cannot open the PostgreSQL key store at {self.where}: "
                f"{type(exc).__name__}"
            ) from None

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows = await self._pool.fetch(numbered(sql), *params)
        return [tuple(r) for r in rows]

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            for sql, params in statements:
                await conn.execute(numbered(sql), *params)

    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(numbered(sql), rows)
