"""The key tables' contract (:class:`KeyTables`) and their SQLite engine."""

from __future__ import annotations

import abc
import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from ...errors import ConfigError
from .._migrations import MIGRATIONS, migrate_sqlite
from .._sqlite import connect

__all__ = ["KEY_COLUMNS", "KeyRow", "KeyTables", "SQLiteKeyTables"]

T = TypeVar("T")

KeyRow = dict[str, Any]
"""One ``api_keys`` row: :data:`KEY_COLUMNS` → plain values (JSON decoded)."""

KEY_COLUMNS = (
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
    f"INSERT INTO api_keys ({', '.join(KEY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in KEY_COLUMNS)})"
)
_UPDATE_KEY = f"UPDATE api_keys SET {', '.join(f'{c} = ?' for c in KEY_COLUMNS[3:])} WHERE id = ?"
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


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _encode(key: Mapping[str, Any]) -> tuple[Any, ...]:
    """A key's row as stored: lists and dicts as JSON text."""
    models = key["models"]
    return (
        *(key[c] for c in KEY_COLUMNS[:5]),
        _json(models) if models is not None else None,
        key["rpm"],
        key["tpm"],
        key["priority"],
        _json(key["budgets"]),
        _json(key["metadata"]),
        *(key[c] for c in KEY_COLUMNS[11:]),
    )


def _decode(row: Sequence[Any]) -> KeyRow:
    d = dict(zip(KEY_COLUMNS, row, strict=True))
    d["models"] = orjson.loads(d["models"]) if d["models"] is not None else None
    d["budgets"] = orjson.loads(d["budgets"] or "[]")
    d["metadata"] = orjson.loads(d["metadata"] or "{}")
    return d


class KeyTables(abc.ABC):
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

    async def load(self) -> tuple[int, list[KeyRow], dict[str, list[dict[str, Any]]]]:
        """Every key (revoked ones too) and team budget list, with the version they are at."""
        version = await self.version()
        rows = await self._fetch(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys")
        teams = await self._fetch("SELECT team, budgets FROM teams")
        return version, [_decode(r) for r in rows], {t: orjson.loads(b or "[]") for t, b in teams}

    async def insert_key(self, key: Mapping[str, Any]) -> None:
        """Store a new key (a :data:`KeyRow`)."""
        await self._transaction([(_INSERT_KEY, _encode(key)), (_BUMP, ())])

    async def update_key(self, key: Mapping[str, Any]) -> None:
        """Rewrite the key ``key["id"]`` (all but its id, hash and prefix)."""
        row = _encode(key)
        await self._transaction([(_UPDATE_KEY, (*row[3:], key["id"])), (_BUMP, ())])

    async def set_team(self, team: str, budgets: Sequence[Mapping[str, Any]], now: float) -> None:
        text = _json(list(budgets))
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


class SQLiteKeyTables(KeyTables):
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
        self._x = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brace-keys")

        def open_() -> None:
            conn = connect(self._path, timeout=10.0, wal=self._path != ":memory:")
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
