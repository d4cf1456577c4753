"""The SQLite connection policy every store shares.

A connection is opened with ``isolation_level=None`` (transactions are explicit:
``BEGIN``/``BEGIN IMMEDIATE`` ... ``COMMIT``) and a ``busy_timeout``; a file (not
``:memory:``) is put in WAL mode, so that a reader proceeds while a writer commits.
Stores run their connections on their own threads (one writer thread; reads on a
second one when the file allows): the event loop never touches a file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["MultiInsert", "connect", "is_memory"]


def is_memory(path: str) -> bool:
    """Whether ``path`` names an in-memory database (one connection sees it)."""
    return path == ":memory:" or path.startswith("file::memory:")


def connect(
    path: str,
    *,
    timeout: float,
    wal: bool,
    synchronous: Literal["NORMAL"] | None = None,
    rows: bool = False,
) -> sqlite3.Connection:
    """A connection to ``path``, waiting up to ``timeout`` seconds for a lock.

    ``wal``: switch the file to WAL mode; ``synchronous="NORMAL"``: a power cut may
    lose the last transactions, never corrupt the file (SQLite's default, ``FULL``,
    otherwise); ``rows``: rows as :class:`sqlite3.Row`.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)
    if rows:
        conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


_MAX_ROWS_PER_INSERT = 500
"""Rows per multi-row ``INSERT`` (also bounded by the connection's variable limit)."""


class MultiInsert:
    """``INSERT INTO t (cols) VALUES (...), (...), ... ON CONFLICT ... DO NOTHING`` (or,
    given ``update``, ``DO UPDATE SET`` those columns: an upsert) for many rows in one
    statement.

    ``executemany`` steps the statement once per row, and every step releases and
    re-takes the GIL: under load the writer thread then waits for the event loop's
    switch interval once per row, and each of those waits interrupts the loop.  One
    statement per chunk of rows binds all values in C and steps once.

    Chunks are powers of two (a batch of 300 rows is 256 + 32 + 8 + 4): a handful of
    distinct statements, each compiled once and then found in the connection's
    statement cache, where one statement per batch size would compile a statement of
    thousands of parameters for nearly every batch (partial batches vary in size).
    """

    __slots__ = ("_conflict", "_head", "_marks", "_sql", "max_rows", "width")

    def __init__(
        self,
        table: str,
        columns: tuple[str, ...],
        conflict: str,
        max_vars: int,
        *,
        update: tuple[str, ...] = (),
    ) -> None:
        self._head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self._marks = "(" + ", ".join("?" * len(columns)) + ")"
        self._conflict = f" ON CONFLICT ({conflict}) " + (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in update)
            if update
            else "DO NOTHING"
        )
        self._sql: dict[int, str] = {}
        self.width = len(columns)
        most = max(1, min(_MAX_ROWS_PER_INSERT, max_vars // self.width))
        self.max_rows = 1 << (most.bit_length() - 1)  # the largest power of two ≤ most

    def sql(self, rows: int) -> str:
        sql = self._sql.get(rows)
        if sql is None:
            sql = self._sql[rows] = self._head + ", ".join([self._marks] * rows) + self._conflict
        return sql

    def plan(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
        """The statements inserting ``rows``: (SQL, flat parameters) per chunk."""
        out = []
        i = 0
        n = len(rows)
        while i < n:
            size = min(self.max_rows, 1 << ((n - i).bit_length() - 1))
            out.append((self.sql(size), [v for row in rows[i : i + size] for v in row]))
            i += size
        return out

    @staticmethod
    def execute(conn: sqlite3.Connection, plan: list[tuple[str, list[Any]]]) -> int:
        """Run a :meth:`plan`; returns how many rows were inserted (conflicts skipped)
        or upserted."""
        return sum(conn.execute(sql, params).rowcount for sql, params in plan)
