"""The SQLite connection policy every store shares.

A connection is opened with ``isolation_level=None`` (transactions are explicit:
``BEGIN``/``BEGIN IMMEDIATE`` ... ``COMMIT``) and a ``busy_timeout``; a file (not
``:memory:``) is put in WAL mode, so that a reader proceeds while a writer commits.
Stores run their connections on their own threads (one writer thread; reads on a
second one when the file allows): the event loop never touches a file.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

__all__ = ["connect", "is_memory"]


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
