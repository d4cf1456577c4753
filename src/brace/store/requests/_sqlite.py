"""The embedded engine: one SQLite file in WAL mode.

Writes (batches, retention deletes, migrations) run on ONE dedicated writer thread
with its own connection; reads run on one reader thread with a second connection
(WAL lets them proceed while a batch commits).  The event loop never touches the
file.  ``synchronous=NORMAL``: a crash of the machine may lose the last batches,
never corrupt the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ...errors import ConfigError
from .._migrations import migrate_sqlite
from .._sqlite import MultiInsert, connect, is_memory
from ..runs import LoggedRun, LoggedStep, SQLiteRuns
from ._rows import (
    ATTEMPT_COLUMNS,
    REQUEST_COLUMNS,
    LoggedRequest,
    attempt_rows,
    request_row,
    unique_records,
)
from ._writer import BaseStore

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(REQUEST_COLUMNS))}) ON CONFLICT (request_id) DO NOTHING"
)
_INSERT_ATTEMPT = (
    f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))}) ON CONFLICT (request_id, seq) DO NOTHING"
)
_MAX_VARS = 900
"""SQLite's bound-parameter limit is 999 on old builds: ``IN`` lists are chunked below it."""


class SQLiteStore(BaseStore):
    """The request log in a SQLite file (``telemetry.database``, default ``brace.db``)."""

    engine: ClassVar[str] = "sqlite"

    def __init__(self, path: str | Path, **options: Any) -> None:
        super().__init__(**options)
        self.path = str(path)
        self._memory = is_memory(self.path)
        self._wx: ThreadPoolExecutor | None = None
        self._rx: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._insert_requests: MultiInsert | None = None
        self._insert_attempts: MultiInsert | None = None
        self._runs_sql: SQLiteRuns | None = None

    @property
    def where(self) -> str:
        return self.path

    # ------------------------------------------------------------------ threads

    async def _in_writer(self, fn: Callable[[], T]) -> T:
        assert self._wx is not None, "the store is not started"
        return await asyncio.get_running_loop().run_in_executor(self._wx, fn)

    async def _in_reader(self, fn: Callable[[], T]) -> T:
        assert self._rx is not None, "the store is not started"
        return await asyncio.get_running_loop().run_in_executor(self._rx, fn)

    # ------------------------------------------------------------------ open / close

    async def _open(self) -> None:
        self._wx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brace-store-writer")
        self._rx = (
            self._wx
            if self._memory
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="brace-store-reader")
        )
        try:
            await self._in_writer(self._open_writer)
            if not self._memory:
                await self._in_reader(self._open_reader)
        except sqlite3.Error as exc:
            await self._close()
            raise ConfigError(
                f"telemetry.database: cannot open the SQLite request log {self.path!r}: {exc}. "
                "Check that its directory exists and is writable, or set telemetry.store: off."
            ) from None
        except BaseException:
            await self._close()
            raise

    def _open_writer(self) -> None:
        conn = connect(
            self.path, timeout=10.0, wal=not self._memory, synchronous="NORMAL", rows=True
        )
        self._wconn = conn
        self._migrate(conn)
        max_vars = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._insert_requests = MultiInsert("requests", REQUEST_COLUMNS, "request_id", max_vars)
        self._insert_attempts = MultiInsert(
            "attempts", ATTEMPT_COLUMNS, "request_id, seq", max_vars
        )
        self._runs_sql = SQLiteRuns(max_vars)
        if self._memory:
            self._rconn = conn

    def _open_reader(self) -> None:
        self._rconn = connect(self.path, timeout=10.0, wal=False, rows=True)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrate_sqlite(conn, self.migrations, self.path)

    async def _close(self) -> None:
        def close_reader() -> None:
            if self._rconn is not None and self._rconn is not self._wconn:
                self._rconn.close()
            self._rconn = None

        def close_writer() -> None:
            if self._wconn is not None:
                self._wconn.close()
            self._wconn = None

        if self._rx is not None and self._rx is not self._wx:
            await self._in_reader(close_reader)
            self._rx.shutdown(wait=True)
        if self._wx is not None:
            await self._in_writer(close_writer)
            self._wx.shutdown(wait=True)
        self._rx = self._wx = None

    # ------------------------------------------------------------------ primitives

    async def _write(self, records: list[LoggedRequest]) -> int:
        # The rows and parameters are built here, on the event loop, in one short burst;
        # the writer thread then only runs the statements (C code that releases the GIL
        # while SQLite works) instead of interleaving Python with the loop's requests.
        requests, attempts = self._insert_requests, self._insert_attempts
        assert requests is not None and attempts is not None
        fresh = unique_records(records)
        capture = self.capture_content
        request_plan = requests.plan([request_row(r, capture_content=capture) for r in fresh])
        attempt_plan = attempts.plan([row for r in fresh for row in attempt_rows(r)])
        return await self._in_writer(
            lambda: self._write_sync(records, fresh, request_plan, attempt_plan)
        )

    def _write_sync(
        self,
        records: list[LoggedRequest],
        fresh: list[LoggedRequest],
        request_plan: list[tuple[str, list[Any]]],
        attempt_plan: list[tuple[str, list[Any]]],
    ) -> int:
        conn = self._wconn
        assert conn is not None
        # Fast path: insert everything; a request id already stored (a caller reusing
        # x-request-id: rare) shows as fewer rows inserted, and then the batch is
        # rolled back and written the careful way, so that no attempt is ever stored
        # under a request that is not the one it belongs to.
        conn.execute("BEGIN")
        try:
            if MultiInsert.execute(conn, request_plan) == len(fresh):
                MultiInsert.execute(conn, attempt_plan)
                conn.execute("COMMIT")
                return len(records) - len(fresh)
            conn.execute("ROLLBACK")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return self._write_checked(conn, records, fresh)

    def _write_checked(
        self, conn: sqlite3.Connection, records: list[LoggedRequest], fresh: list[LoggedRequest]
    ) -> int:
        ids = [r.request_id for r in fresh]
        existing: set[str] = set()
        for i in range(0, len(ids), _MAX_VARS):
            chunk = ids[i : i + _MAX_VARS]
            sql = f"SELECT request_id FROM requests WHERE request_id IN ({', '.join('?' * len(chunk))})"
            existing.update(row[0] for row in conn.execute(sql, chunk))
        if existing:
            fresh = [r for r in fresh if r.request_id not in existing]
        capture = self.capture_content
        conn.execute("BEGIN")
        try:
            conn.executemany(
                _INSERT_REQUEST, [request_row(r, capture_content=capture) for r in fresh]
            )
            conn.executemany(_INSERT_ATTEMPT, [row for r in fresh for row in attempt_rows(r)])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(records) - len(fresh)

    async def _delete(self, request_ids: list[str]) -> int:
        def delete() -> int:
            conn = self._wconn
            assert conn is not None
            deleted = 0
            conn.execute("BEGIN")
            try:
                for i in range(0, len(request_ids), _MAX_VARS):
                    chunk = request_ids[i : i + _MAX_VARS]
                    marks = ", ".join("?" * len(chunk))
                    conn.execute(f"DELETE FROM attempts WHERE request_id IN ({marks})", chunk)
                    cur = conn.execute(f"DELETE FROM requests WHERE request_id IN ({marks})", chunk)
                    deleted += cur.rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return deleted

        return await self._in_writer(delete)

    async def _write_runs(self, runs: list[LoggedRun], steps: list[LoggedStep]) -> int:
        # as for requests: the rows are built on the loop, the statements run on the
        # writer thread
        sql = self._runs_sql
        assert sql is not None
        plans = sql.plan(runs, steps, capture_content=self.capture_content)

        def write() -> int:
            conn = self._wconn
            assert conn is not None
            return SQLiteRuns.write(conn, plans)

        return await self._in_writer(write)

    async def _delete_runs(self, keys: list[tuple[str, str]]) -> int:
        def delete() -> int:
            conn = self._wconn
            assert conn is not None
            return SQLiteRuns.delete(conn, keys)

        return await self._in_writer(delete)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        def fetch() -> list[dict[str, Any]]:
            conn = self._rconn
            assert conn is not None, "the store is not started"
            return [dict(row) for row in conn.execute(sql, list(params))]

        return await self._in_reader(fetch)

    def _floor_div(self, expr: str, seconds: int) -> str:
        # started_at is positive: truncation is the floor
        return f"CAST(({expr}) / {float(seconds)!r} AS INTEGER)"

    def _in(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        if not values:
            return "1 = 0", []
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)
