"""What both engines share: the bounded writer and retention (the queries are in
:mod:`._queries`, and the runs' in :mod:`brace.store.runs`).

An engine supplies a handful of primitives (open and migrate, write one batch in
one transaction, delete a set of requests, run a read query); everything else —
the queue, batching, retry-once-then-drop, retention, the SQL of every query —
is written once, so both engines store and answer the same way.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from ..._tasks import stop_task
from .._migrations import MIGRATIONS, Migration
from ..runs import LoggedRun, LoggedStep, RunQueries
from ._queries import RequestQueries
from ._rows import LoggedRequest

__all__ = ["BaseStore"]

log = logging.getLogger("brace.telemetry.store")
"""The request log's logger keeps its name from when it lived in telemetry (users
filter on it)."""

BATCH_ROWS = 500
"""At most this many records per write transaction."""
FLUSH_INTERVAL = 0.25
"""A partial batch waits at most this long."""
RETENTION_INTERVAL = 60.0
DELETE_CHUNK = 2_000
"""Retention deletes this many requests (and their attempts) per transaction."""


class BaseStore(RequestQueries, RunQueries):
    """The bounded writer, retention and queries over an engine's primitives.

    The writer's queue holds request records (a deque: each is written once) and the
    latest version of each run and step waiting (ordered maps by key: a newer version
    replaces the waiting one in place).  One bound, ``writer_queue``, covers the three.
    """

    engine: ClassVar[str]

    def __init__(
        self,
        *,
        capture_content: bool = False,
        retention_days: float = 30.0,
        retention_max_rows: int = 1_000_000,
        writer_queue: int = 10_000,
        batch_rows: int = BATCH_ROWS,
        flush_interval: float = FLUSH_INTERVAL,
        retention_interval: float = RETENTION_INTERVAL,
        retry_delay: float = 0.1,
        now: Callable[[], float] = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        if writer_queue < 1 or batch_rows < 1:
            raise ValueError("writer_queue and batch_rows must be at least 1")
        self.capture_content = capture_content
        self.retention_days = retention_days
        self.retention_max_rows = retention_max_rows
        self.writer_queue = writer_queue
        self.batch_rows = batch_rows
        self.flush_interval = flush_interval
        self.retention_interval = retention_interval
        self.retry_delay = retry_delay
        self.now = now
        self.migrations: tuple[Migration, ...] = tuple(migrations)
        self._queue: collections.deque[LoggedRequest] = collections.deque()
        self._runs: collections.OrderedDict[tuple[str, str], LoggedRun] = collections.OrderedDict()
        self._steps: collections.OrderedDict[tuple[str, str, int], LoggedStep] = (
            collections.OrderedDict()
        )
        self._wake: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._flushing = 0
        """Callers waiting in :meth:`flush`: the writer writes everything, not only
        full batches."""
        self._writer: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self.written = 0
        self.dropped = 0
        self.duplicates = 0
        self.batches = 0
        self.errors = 0
        self.last_error: str | None = None
        self.retention_deleted = 0
        self.runs_written = 0
        self.steps_written = 0
        self.coalesced = 0
        """Run and step versions replaced by a newer one before they were written."""
        self.runs_deleted = 0
        self._retention_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ engine primitives

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """The database, safe to log and show (no password)."""

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect and apply pending migrations (raise ConfigError / SchemaTooNew)."""

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _write(self, records: list[LoggedRequest]) -> int:
        """Insert a batch (requests and attempts) in one transaction, skipping request
        ids already stored; returns how many were skipped as duplicates."""

    @abc.abstractmethod
    async def _delete(self, request_ids: list[str]) -> int:
        """Delete these requests and their attempts in one transaction; returns how
        many requests were deleted."""

    @abc.abstractmethod
    async def _write_runs(self, runs: list[LoggedRun], steps: list[LoggedStep]) -> int:
        """Upsert runs and steps by key in one transaction; returns the rows written."""

    @abc.abstractmethod
    async def _delete_runs(self, keys: list[tuple[str, str]]) -> int:
        """Delete these runs (``(tenant, run_id)``) and their steps in one transaction;
        returns how many runs were deleted."""

    def _redact(self, text: str) -> str:
        """``text`` without any secret of the connection (engines override)."""
        return text

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the database, migrate, start the writer and the retention task."""
        if self._writer is not None:
            return
        await self._open()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        if not self._pending():
            self._drained.set()
        self._writer = asyncio.create_task(self._run_writer(), name=f"brace-store-{self.engine}")
        self._retention = asyncio.create_task(self._run_retention(), name="brace-store-retention")

    def submit(self, record: LoggedRequest) -> None:
        """Queue a record for the writer; never blocks, never raises.  When the queue
        is full (or the store is closed) the record is dropped and counted."""
        if len(self._queue) + len(self._runs) + len(self._steps) >= self.writer_queue or (
            self._closed
        ):
            self.dropped += 1
            return
        self._queue.append(record)
        if self._drained is not None:
            self._drained.clear()
        if self._wake is not None and len(self._queue) >= self.batch_rows:
            self._wake.set()

    def submit_run(self, run: LoggedRun) -> None:
        """Queue a run's latest version (upserted by ``(tenant, run_id)``); a version
        still waiting is replaced.  Never blocks, never raises; full queue → dropped."""
        self._hold(self._runs, (run.tenant, run.run_id), run)

    def submit_step(self, step: LoggedStep) -> None:
        """Queue a step's latest version (upserted by ``(tenant, run_id, seq)``), as
        :meth:`submit_run`."""
        self._hold(self._steps, (step.tenant, step.run_id, step.seq), step)

    def _hold(self, waiting: collections.OrderedDict[Any, Any], key: Any, record: Any) -> None:
        if self._closed:
            self.dropped += 1
            return
        if key in waiting:
            waiting[key] = record  # the newest version wins, in the older one's place
            self.coalesced += 1
            return
        if self._pending() >= self.writer_queue:
            self.dropped += 1
            return
        waiting[key] = record
        if self._drained is not None:
            self._drained.clear()
        if self._wake is not None and self._pending() >= self.batch_rows:
            self._wake.set()

    def _pending(self) -> int:
        return len(self._queue) + len(self._runs) + len(self._steps)

    async def flush(self) -> None:
        """Wait until every record submitted so far is written (or dropped)."""
        if self._writer is None or self._wake is None or self._drained is None:
            return
        if self._writer.done():
            return
        self._flushing += 1
        try:
            self._wake.set()
            await self._drained.wait()
        finally:
            self._flushing -= 1

    async def aclose(self) -> None:
        """Write everything queued, stop the tasks, close the database."""
        if self._closed:
            return
        self._closing = True
        await stop_task(self._retention)
        if self._writer is not None and self._wake is not None:
            self._wake.set()
            await self._writer
        self._closed = True
        if self._writer is not None:
            await self._close()

    def stats(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "database": self.where,
            "queued": self._pending(),
            "capacity": self.writer_queue,
            "written": self.written,
            "dropped": self.dropped,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "errors": self.errors,
            "last_error": self.last_error,
            "retention_deleted": self.retention_deleted,
            "capture_content": self.capture_content,
            "runs_written": self.runs_written,
            "steps_written": self.steps_written,
            "coalesced": self.coalesced,
            "runs_deleted": self.runs_deleted,
        }

    # ------------------------------------------------------------------ the writer

    async def _run_writer(self) -> None:
        assert self._wake is not None and self._drained is not None
        while True:
            if self._pending() < self.batch_rows and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            while self._queue or self._runs or self._steps:
                ok = True
                if self._queue:
                    n = min(self.batch_rows, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(n)]
                    ok = await self._write_batch(batch)
                if self._runs or self._steps:
                    runs = _take(self._runs, self.batch_rows)
                    steps = _take(self._steps, self.batch_rows - len(runs))
                    ok = await self._write_run_batch(runs, steps) and ok
                if not ok and self._closing:
                    # the database is failing and we are shutting down: do not hold
                    # the shutdown for every remaining batch
                    self.dropped += self._pending()
                    self._queue.clear()
                    self._runs.clear()
                    self._steps.clear()
                if self._pending() < self.batch_rows and not (self._closing or self._flushing):
                    # what arrived while that batch was written waits for the next
                    # interval: a few large batches cost far less than a stream of
                    # small ones (every statement hands the GIL back and forth)
                    break
            if not self._pending():
                self._drained.set()
            if self._closing:
                return

    async def _write_batch(self, batch: list[LoggedRequest]) -> bool:
        skipped = await self._twice(len(batch), lambda: self._write(batch))
        if skipped is None:
            return False
        self.batches += 1
        self.duplicates += skipped
        self.written += len(batch) - skipped
        return True

    async def _write_run_batch(self, runs: list[LoggedRun], steps: list[LoggedStep]) -> bool:
        if await self._twice(len(runs) + len(steps), lambda: self._write_runs(runs, steps)) is None:
            return False
        self.batches += 1
        self.runs_written += len(runs)
        self.steps_written += len(steps)
        return True

    async def _twice(self, n: int, write: Callable[[], Awaitable[int]]) -> int | None:
        """``write()``, retried once after a database failure; ``None`` (the ``n``
        records dropped and counted) when the retry fails too."""
        for attempt in (1, 2):
            try:
                return await write()
            except Exception as exc:  # any DB failure: counted, never raised into requests
                self.errors += 1
                self.last_error = self._redact(f"{type(exc).__name__}: {exc}")[:500]
                log.warning(
                    "request log (%s): writing %d records failed (%s): %s",
                    self.where,
                    n,
                    "retrying once" if attempt == 1 else "dropped",
                    self.last_error,
                )
                if attempt == 1 and self.retry_delay > 0 and not self._closing:
                    await asyncio.sleep(self.retry_delay)
        self.dropped += n
        return None

    # ------------------------------------------------------------------ retention

    async def _run_retention(self) -> None:
        while True:
            try:
                await self.apply_retention()
            except Exception as exc:  # a failed pass is logged; the next one retries
                self.errors += 1
                self.last_error = self._redact(f"retention: {type(exc).__name__}: {exc}")[:500]
                log.warning("request log (%s): %s", self.where, self.last_error)
            await asyncio.sleep(self.retention_interval)

    async def apply_retention(self) -> dict[str, int]:
        """Delete requests older than ``retention_days``, then the oldest beyond
        ``retention_max_rows`` (attempts with them), then the runs last active before
        ``retention_days`` (steps with them).  Returns the requests deleted (the runs
        are counted in ``runs_deleted``)."""
        if self._retention_lock is None:
            self._retention_lock = asyncio.Lock()
        async with self._retention_lock:  # one pass at a time (the task, or a caller)
            return await self._apply_retention()

    async def _apply_retention(self) -> dict[str, int]:
        cutoff = self.now() - self.retention_days * 86_400
        expired = await self._delete_where("started_at < ?", [cutoff])
        trimmed = 0
        rows = await self._fetch(
            "SELECT started_at, request_id FROM requests "
            "ORDER BY started_at DESC, request_id DESC LIMIT 1 OFFSET ?",
            [self.retention_max_rows],
        )
        if rows:
            s, rid = float(rows[0]["started_at"]), rows[0]["request_id"]
            trimmed = await self._delete_where(
                "(started_at < ? OR (started_at = ? AND request_id <= ?))", [s, s, rid]
            )
        self.retention_deleted += expired + trimmed
        if expired or trimmed:
            log.info(
                "request log (%s): retention deleted %d expired and %d beyond %d rows",
                self.where,
                expired,
                trimmed,
                self.retention_max_rows,
            )
        runs = 0
        while keys := await self._expired_runs(cutoff, DELETE_CHUNK):
            deleted = await self._delete_runs(keys)
            runs += deleted
            if not deleted:  # pragma: no cover - another gateway deleted them first
                break
        self.runs_deleted += runs
        if runs:
            log.info("request log (%s): retention deleted %d runs", self.where, runs)
        return {"expired": expired, "trimmed": trimmed}  # runs: stats()["runs_deleted"]

    async def _delete_where(self, condition: str, params: list[Any]) -> int:
        deleted = 0
        while True:
            rows = await self._fetch(
                f"SELECT request_id FROM requests WHERE {condition} "
                "ORDER BY started_at, request_id LIMIT ?",
                [*params, DELETE_CHUNK],
            )
            if not rows:
                return deleted
            deleted += await self._delete([r["request_id"] for r in rows])


def _take(waiting: collections.OrderedDict[Any, Any], n: int) -> list[Any]:
    """Up to ``n`` of the oldest waiting records, removed from ``waiting``."""
    if len(waiting) <= n:
        out = list(waiting.values())
        waiting.clear()
        return out
    return [waiting.popitem(last=False)[1] for _ in range(n)]
