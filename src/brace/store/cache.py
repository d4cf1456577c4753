"""The response cache's SQLite file (the embedded default): :class:`SQLiteCache`, and
what every cache backend stores, :class:`CachedAnswer`.

Table ``brace_cache (key, value, size, expires_at, accessed_at)`` in its own file
(``cache.path``).  It is not part of the ordered migrations: it is only a cache, so
a file of another ``PRAGMA user_version`` is emptied and recreated
(:data:`_SCHEMA_VERSION`).  A backend never fails a request: a broken file is a miss
(logged once per outage) and a lost write; only :meth:`SQLiteCache.start` raises,
:class:`~brace.errors.ConfigError`, when the file cannot be opened at start-up.

Times are *wall-clock* seconds (``wall``, default :func:`time.time`): entries outlive
the process and are shared by machines, so a monotonic clock would be meaningless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..errors import ConfigError
from ._sqlite import connect, is_memory

__all__ = ["LRU", "CachedAnswer", "SQLiteCache", "Wall"]

log = logging.getLogger("brace.cache")

T = TypeVar("T")
Wall = Callable[[], float]


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A complete OpenAI JSON answer (``chat.completion`` or an embeddings list), as bytes.

    A streamed answer is stored as the JSON answer assembled from its chunks, so one
    entry serves JSON and streaming requests alike.  ``usage`` is the answer's usage
    (also inside ``body``; kept apart so a hit is priced without parsing),
    ``created_at`` the wall-clock time it was stored, ``deployment`` and ``model`` who
    answered (for the saved-cost estimate).
    """

    body: bytes
    usage: dict[str, Any] | None = None
    created_at: float = 0.0
    deployment: str | None = None
    model: str | None = None

    def encode(self) -> bytes:
        """One blob: a JSON header line, then the body (which may contain newlines)."""
        head = {"c": self.created_at, "u": self.usage, "d": self.deployment, "m": self.model}
        return orjson.dumps(head) + b"\n" + self.body

    @classmethod
    def decode(cls, blob: bytes) -> CachedAnswer:
        """Inverse of :meth:`encode`; :class:`ValueError` if ``blob`` is not one."""
        head_raw, sep, body = blob.partition(b"\n")
        if not sep:
            raise ValueError("not a cached answer")
        head = orjson.loads(head_raw)  # JSONDecodeError is a ValueError
        if not isinstance(head, dict):
            raise ValueError("not a cached answer")
        usage = head.get("u")
        return cls(
            body=body,
            usage=usage if isinstance(usage, dict) else None,
            created_at=float(head.get("c") or 0.0),
            deployment=head.get("d") if isinstance(head.get("d"), str) else None,
            model=head.get("m") if isinstance(head.get("m"), str) else None,
        )

    @property
    def size(self) -> int:
        return len(self.body)


class LRU:
    """A small byte- and count-bounded LRU of (answer, expires_at); event loop only
    (the front of :class:`SQLiteCache`, and ``brace.cache.MemoryCache``)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._items: OrderedDict[str, tuple[CachedAnswer, float]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, now: float) -> CachedAnswer | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= now:
            self.pop(key)
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, answer: CachedAnswer, expires_at: float) -> None:
        self.pop(key)
        if answer.size > self._max_bytes or self._max_entries <= 0:
            return
        self._items[key] = (answer, expires_at)
        self.bytes += answer.size
        while len(self._items) > self._max_entries or self.bytes > self._max_bytes:
            _, (old, _) = self._items.popitem(last=False)
            self.bytes -= old.size

    def pop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= item[0].size


_SCHEMA_VERSION = 1
"""A cache file of another version is emptied and recreated (it is only a cache)."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS brace_cache ("
    " key TEXT PRIMARY KEY, value BLOB NOT NULL, size INTEGER NOT NULL,"
    " expires_at REAL NOT NULL, accessed_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS brace_cache_accessed ON brace_cache (accessed_at)",
    "CREATE INDEX IF NOT EXISTS brace_cache_expires ON brace_cache (expires_at)",
)


class SQLiteCache:
    """Answers in one SQLite file (WAL), bounded in size, expired by TTL.

    Writes — inserts, last-access updates, expiry purges and eviction — run on ONE
    writer thread with its own connection; lookups run on a reader thread with a
    second connection, behind a small in-memory LRU of recent entries, so the event
    loop never touches the file.  When the stored bytes pass ``max_bytes`` the
    expired rows go first, then the least recently *used* ones (a hit updates
    ``accessed_at``; updates are coalesced into one batch on the writer) until the
    file holds under 90 % of the bound.  Expired rows are also purged every
    ``purge_interval`` seconds of writes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 2**20,
        wall: Wall = time.time,
        front_entries: int = 256,
        front_bytes: int = 8 * 2**20,
        purge_interval: float = 60.0,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = str(path)
        self.max_bytes = max_bytes
        self._wall = wall
        self._front = LRU(front_entries, front_bytes)
        self._purge_interval = purge_interval
        self._memory = is_memory(self.path)
        self._wx: ThreadPoolExecutor | None = None
        self._rx: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._total = 0  # bytes stored, as the writer thread knows it
        self._last_purge = 0.0
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()
        self._touch_pending = False
        self._failing = False
        self.evicted = 0

    # -- lifecycle

    async def start(self) -> None:
        if self._wx is not None or self._closed:
            return
        async with self._start_lock:
            if self._wx is not None:
                return
            wx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brace-cache-writer")
            rx = (
                wx
                if self._memory
                else ThreadPoolExecutor(max_workers=1, thread_name_prefix="brace-cache-reader")
            )
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(wx, self._open_writer)
                if not self._memory:
                    await loop.run_in_executor(rx, self._open_reader)
            except sqlite3.Error as exc:
                await loop.run_in_executor(wx, self._close_conns)
                wx.shutdown(wait=False)
                rx.shutdown(wait=False)
                raise ConfigError(
                    f"cache.path: cannot open the SQLite cache {self.path!r}: {exc}. "
                    "Check that its directory exists and is writable."
                ) from None
            self._wx, self._rx = wx, rx

    def _open_writer(self) -> None:
        conn = connect(self.path, timeout=5.0, wal=not self._memory, synchronous="NORMAL")
        self._wconn = conn
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version != _SCHEMA_VERSION:
            conn.execute("DROP TABLE IF EXISTS brace_cache")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        self._total = self._sum(conn)
        if self._memory:
            self._rconn = conn

    def _open_reader(self) -> None:
        self._rconn = connect(self.path, timeout=5.0, wal=False)

    def _close_conns(self) -> None:
        for conn in {id(c): c for c in (self._rconn, self._wconn) if c is not None}.values():
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._rconn = self._wconn = None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        wx, rx = self._wx, self._rx
        if wx is None or rx is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(wx, self._flush_touches)
        if rx is not wx:
            await loop.run_in_executor(rx, self._close_reader)
            rx.shutdown(wait=True)
        await loop.run_in_executor(wx, self._close_conns)
        wx.shutdown(wait=True)

    def _close_reader(self) -> None:
        if self._rconn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._rconn.close()
            self._rconn = None

    # -- the protocol

    async def get(self, key: str) -> CachedAnswer | None:
        now = self._wall()
        answer = self._front.get(key, now)
        if answer is None:
            found = await self._run_reader(lambda: self._read(key))
            if found is None:
                return None
            answer, expires_at = found
            if expires_at <= now:
                return None
            self._front.put(key, answer, expires_at)
        self._touch(key, now)
        return answer

    async def set(self, key: str, answer: CachedAnswer, ttl: float) -> None:
        now = self._wall()
        blob = answer.encode()
        if self._closed or len(blob) > self.max_bytes or not ttl > 0:
            return
        self._front.put(key, answer, now + ttl)
        await self._run_writer(lambda: self._write(key, blob, now + ttl, now))

    # -- threads

    async def _run_reader(self, fn: Callable[[], T]) -> T | None:
        return await self._run(fn, writer=False)

    async def _run_writer(self, fn: Callable[[], T]) -> T | None:
        return await self._run(fn, writer=True)

    async def _run(self, fn: Callable[[], T], *, writer: bool) -> T | None:
        if self._closed:
            return None
        await self.start()
        executor = self._wx if writer else self._rx
        assert executor is not None
        try:
            result = await asyncio.get_running_loop().run_in_executor(executor, fn)
        except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: closed under our feet
            if not self._failing:
                self._failing = True
                log.warning("brace cache: SQLite %r failed (%s); treated as a miss", self.path, exc)
            return None
        if self._failing:
            self._failing = False
            log.info("brace cache: SQLite %r works again", self.path)
        return result

    def _read(self, key: str) -> tuple[CachedAnswer, float] | None:
        assert self._rconn is not None
        row = self._rconn.execute(
            "SELECT value, expires_at FROM brace_cache WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        try:
            return CachedAnswer.decode(bytes(row[0])), float(row[1])
        except ValueError:
            return None

    @staticmethod
    def _sum(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM brace_cache").fetchone()[0])

    def _write(self, key: str, blob: bytes, expires_at: float, now: float) -> None:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = conn.execute("SELECT size FROM brace_cache WHERE key = ?", (key,)).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO brace_cache (key, value, size, expires_at, accessed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, blob, len(blob), expires_at, now),
            )
            self._total += len(blob) - (int(old[0]) if old else 0)
            if self._total > self.max_bytes:
                self._evict(conn, now)
            elif now - self._last_purge >= self._purge_interval:
                self._purge(conn, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM brace_cache WHERE expires_at <= ?", (now,))
        self._last_purge = now
        self._total = self._sum(conn)  # also corrects for other processes sharing the file

    def _evict(self, conn: sqlite3.Connection, now: float) -> None:
        self._purge(conn, now)
        target = int(self.max_bytes * 0.9)
        while self._total > target:
            rows = conn.execute(
                "SELECT key, size FROM brace_cache ORDER BY accessed_at LIMIT 64"
            ).fetchall()
            if not rows:
                self._total = 0
                return
            doomed = []
            for key, size in rows:
                if self._total <= target:
                    break
                doomed.append((key,))
                self._total -= int(size)
            conn.executemany("DELETE FROM brace_cache WHERE key = ?", doomed)
            self.evicted += len(doomed)

    def _touch(self, key: str, now: float) -> None:
        """Note a hit; the writer stores the access times in one batch."""
        wx = self._wx
        if wx is None or self._closed:
            return
        with self._touch_lock:
            self._touched[key] = now
            if self._touch_pending:
                return
            self._touch_pending = True
        with contextlib.suppress(RuntimeError):  # the executor is shutting down
            wx.submit(self._flush_touches)

    def _flush_touches(self) -> None:
        with self._touch_lock:
            touched, self._touched = self._touched, {}
            self._touch_pending = False
        if not touched or self._wconn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self._wconn.executemany(
                "UPDATE brace_cache SET accessed_at = ? WHERE key = ?",
                [(t, k) for k, t in touched.items()],
            )
