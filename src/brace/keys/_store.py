"""Keys, team budgets and settled spend in the database (SQLite or PostgreSQL).

The tables come from the request log's migrations (``0003_keys``, ``0004_spend``):
one schema for both engines, applied by whichever opens the database first.  Every
change to a key or a team bumps the single row of ``key_changes`` in the same
transaction, so gateways sharing the database notice a change with one cheap read.
Nothing here runs per request: authentication reads the in-memory
:class:`~brace.keys.KeyRing`, and spend reaches the database in batches.
"""

from __future__ import annotations

import abc
import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from ..errors import ConfigError
from ..state import redact_url
from ._model import Budget, VirtualKey

__all__ = ["KeyStore", "open_key_store"]

T = TypeVar("T")

_KEY_COLUMNS = (
    "id",
    "key_hash",
    "prefix",
    "name",
    "team",
    "models",
    "rpm",
    "tpm",
    "priority",
    "budgets",
    "metadata",
    "created_at",
    "updated_at",
    "expires_at",
    "revoked_at",
)
_INSERT_KEY = (
    f"INSERT INTO api_keys ({', '.join(_KEY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _KEY_COLUMNS)})"
)
_UPDATE_KEY = f"UPDATE api_keys SET {', '.join(f'{c} = ?' for c in _KEY_COLUMNS[3:])} WHERE id = ?"
_BUMP = "UPDATE key_changes SET version = version + 1 WHERE id = 1"
_ADD_SPEND = (
    "INSERT INTO spend (scope, period, spent_usd, requests, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (scope, period) DO UPDATE SET spent_usd = spend.spent_usd + excluded.spent_usd, "
    "requests = spend.requests + excluded.requests, updated_at = excluded.updated_at"
)
_HEARTBEAT = (
    "INSERT INTO instances (instance_id, seen_version, heartbeat_at) VALUES (?, ?, ?) "
    "ON CONFLICT (instance_id) DO UPDATE SET seen_version = excluded.seen_version, "
    "heartbeat_at = excluded.heartbeat_at"
)


def _key_row(k: VirtualKey) -> tuple[Any, ...]:
    return (
        k.id,
        k.key_hash,
        k.prefix,
        k.name,
        k.team,
        orjson.dumps(sorted(k.models)).decode() if k.models is not None else None,
        k.rpm,
        k.tpm,
        k.priority,
        orjson.dumps([b.to_dict() for b in k.budgets]).decode(),
        orjson.dumps(k.metadata).decode(),
        k.created_at,
        k.updated_at,
        k.expires_at,
        k.revoked_at,
    )


def _row_key(row: Sequence[Any]) -> VirtualKey:
    d = dict(zip(_KEY_COLUMNS, row, strict=True))
    models = orjson.loads(d["models"]) if d["models"] is not None else None
    return VirtualKey(
        id=d["id"],
        key_hash=d["key_hash"],
        prefix=d["prefix"],
        name=d["name"],
        team=d["team"],
        models=frozenset(models) if models is not None else None,
        rpm=d["rpm"],
        tpm=d["tpm"],
        priority=d["priority"],
        budgets=tuple(Budget.from_dict(b) for b in orjson.loads(d["budgets"] or "[]")),
        metadata=orjson.loads(d["metadata"] or "{}"),
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        expires_at=d["expires_at"],
        revoked_at=d["revoked_at"],
    )


def _budgets(text: str | None) -> tuple[Budget, ...]:
    return tuple(Budget.from_dict(b) for b in orjson.loads(text or "[]"))


class KeyStore(abc.ABC):
    """The durable side of keys and budgets.  Subclasses provide four primitives."""

    where: str

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run ``(sql, params)`` statements in one transaction."""

    @abc.abstractmethod
    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    # ------------------------------------------------------------------ keys and teams

    async def version(self) -> int:
        rows = await self._fetch("SELECT version FROM key_changes WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    async def load(self) -> tuple[int, list[VirtualKey], dict[str, tuple[Budget, ...]]]:
        """Every key (revoked ones too) and team budget, with the version they are at."""
        version = await self.version()
        rows = await self._fetch(f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys")
        teams = await self._fetch("SELECT team, budgets FROM teams")
        return version, [_row_key(r) for r in rows], {t: _budgets(b) for t, b in teams}

    async def insert_key(self, key: VirtualKey) -> None:
        await self._transaction([(_INSERT_KEY, _key_row(key)), (_BUMP, ())])

    async def update_key(self, key: VirtualKey) -> None:
        row = _key_row(key)
        await self._transaction([(_UPDATE_KEY, (*row[3:], key.id)), (_BUMP, ())])

    async def set_team(self, team: str, budgets: Sequence[Budget], now: float) -> None:
        text = orjson.dumps([b.to_dict() for b in budgets]).decode()
        await self._transaction(
            [
                (
                    "INSERT INTO teams (team, budgets, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (team) DO UPDATE SET budgets = excluded.budgets, "
                    "updated_at = excluded.updated_at",
                    (team, text, now),
                ),
                (_BUMP, ()),
            ]
        )

    # ------------------------------------------------------------------ instances

    async def heartbeat(self, instance: str, seen_version: int, now: float) -> None:
        await self._transaction([(_HEARTBEAT, (instance, seen_version, now))])

    async def instances(self, alive_since: float) -> dict[str, int]:
        """Live instances (heartbeat since ``alive_since``) and the version each loaded."""
        rows = await self._fetch(
            "SELECT instance_id, seen_version FROM instances WHERE heartbeat_at >= ?",
            (alive_since,),
        )
        return {r[0]: int(r[1]) for r in rows}

    async def forget_instance(self, instance: str) -> None:
        await self._transaction([("DELETE FROM instances WHERE instance_id = ?", (instance,))])

    # ------------------------------------------------------------------ spend

    async def add_spend(self, rows: Sequence[tuple[str, str, float, int]], now: float) -> None:
        """Add settled spend: ``(scope, period, usd, requests)`` rows, summed in place."""
        if rows:
            await self._executemany(_ADD_SPEND, [(*r, now) for r in rows])

    async def spend(self, periods: Sequence[str]) -> dict[tuple[str, str], tuple[float, int]]:
        """Settled spend of every scope in ``periods``: ``{(scope, period): (usd, requests)}``."""
        if not periods:
            return {}
        marks = ", ".join("?" for _ in periods)
        rows = await self._fetch(
            f"SELECT scope, period, spent_usd, requests FROM spend WHERE period IN ({marks})",
            list(periods),
        )
        return {(r[0], r[1]): (float(r[2]), int(r[3])) for r in rows}


# ----------------------------------------------------------------------------- SQLite


class SQLiteKeyStore(KeyStore):
    """One connection on one thread: the event loop never waits on SQLite."""

    def __init__(self, path: str) -> None:
        self.where = path
        self._path = path
        self._x: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[], T]) -> T:
        assert self._x is not None, "the key store is not started"
        return await asyncio.get_running_loop().run_in_executor(self._x, fn)

    async def start(self) -> None:
        from .._sql import migrate_sqlite
        from ..telemetry.store._schema import MIGRATIONS

        self._x = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brace-keys")

        def open_() -> None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=10.0)
            conn.execute("PRAGMA busy_timeout = 10000")
            if self._path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            self._conn = conn
            migrate_sqlite(conn, MIGRATIONS, self._path)

        try:
            await self._run(open_)
        except sqlite3.Error as exc:
            await self.aclose()
            raise ConfigError(
                f"keys.database: cannot open the SQLite key store {self._path!r}: {exc}. "
                "Check that its directory exists and is writable."
            ) from None

    async def aclose(self) -> None:
        x, self._x = self._x, None
        if x is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(x, conn.close)
        x.shutdown(wait=False)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        def fetch() -> list[tuple[Any, ...]]:
            assert self._conn is not None
            return [tuple(r) for r in self._conn.execute(sql, tuple(params))]

        return await self._run(fetch)

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        def run() -> None:
            conn = self._conn
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    conn.execute(sql, tuple(params))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(run)

    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def run() -> None:
            conn = self._conn
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, [tuple(r) for r in rows])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(run)


# ----------------------------------------------------------------------------- PostgreSQL


class PostgresKeyStore(KeyStore):
    """An asyncpg pool of two connections."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.where = redact_url(url)
        self._pool: Any = None

    async def start(self) -> None:
        try:
            import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
        except ImportError:
            raise ConfigError(
                "keys.database is a PostgreSQL URL but asyncpg is not installed: "
                "pip install 'brace[postgres]'"
            ) from None
        from .._sql import migrate_postgres
        from ..telemetry.store._schema import MIGRATIONS

        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=2,
                timeout=10.0,
                command_timeout=30.0,
                server_settings={"application_name": "brace-keys"},
            )
            async with self._pool.acquire() as conn:
                await migrate_postgres(conn, MIGRATIONS, self.where)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.aclose()
            raise ConfigError(
                f"keys.database: cannot open the PostgreSQL key store at {self.where}: "
                f"{type(exc).__name__}"
            ) from None

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        from .._sql import numbered

        rows = await self._pool.fetch(numbered(sql), *params)
        return [tuple(r) for r in rows]

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        from .._sql import numbered

        async with self._pool.acquire() as conn, conn.transaction():
            for sql, params in statements:
                await conn.execute(numbered(sql), *params)

    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        from .._sql import numbered

        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(numbered(sql), rows)


def open_key_store(database: str) -> KeyStore:
    """The store for ``database``: a PostgreSQL URL, else a SQLite path."""
    if database.startswith(("postgres://", "postgresql://")):
        return PostgresKeyStore(database)
    return SQLiteKeyStore(database)
