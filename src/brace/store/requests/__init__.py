"""The request log: every :class:`~brace.telemetry.record.RequestRecord`, durably.

Tables ``requests`` and ``attempts``; the same store (its writer, retention and
database) also keeps the agent runs of :mod:`brace.store.runs` (``runs``,
``run_steps``: :meth:`Store.submit_run`, :meth:`Store.submit_step`).  Modules: ``_rows`` (columns, a record as rows,
a row as the API shows it), ``_writer`` (:class:`BaseStore`: the bounded writer and
retention), ``_queries`` (listing, traces, spend, overview), ``_sqlite`` and
``_postgres`` (the engines' primitives).

One schema, two engines: :class:`SQLiteStore` (a file, the embedded default) and
:class:`PostgresStore` (shared by many gateways).  Ordered, named migrations
(``0001_requests``, ``0002_attempts``...) are recorded in ``brace_migrations`` and
applied at :meth:`Store.start`; a database migrated by a newer Brace is refused.

The request path only calls :meth:`Store.submit`, which appends to a bounded queue
and never blocks: when the queue is full the record is dropped and counted.  One
background task writes batches (up to 500 rows, or every 0.25 s) in one
transaction; SQLite writes run on one dedicated writer thread.  A database failure
is logged (no password), counted, the batch retried once and then dropped: it never
reaches a request.  A retention task deletes rows older than ``retention_days``,
then the oldest beyond ``retention_max_rows``.  See ``docs/store.md``.

Errors::

    ConfigError              (brace.errors) the database cannot be opened, or
    └── SchemaTooNew         it was migrated by a newer Brace (start-up)
    BadRequest               (brace.errors, 400)
    └── InvalidQuery         a query argument is out of range; ``param`` names it

Nothing else is raised by :meth:`Store.submit`, the writer or the retention task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ...errors import ConfigError
from .._migrations import MIGRATIONS, Migration, SchemaTooNew
from ..runs import LoggedRun, LoggedStep
from ._queries import GROUP_BY, GroupBy, InvalidQuery
from ._rows import LoggedAttempt, LoggedRequest
from ._sqlite import SQLiteStore
from ._writer import BaseStore

if TYPE_CHECKING:
    from ...config import TelemetryConfig
    from ._postgres import PostgresStore

__all__ = [
    "GROUP_BY",
    "MIGRATIONS",
    "BaseStore",
    "GroupBy",
    "InvalidQuery",
    "LoggedAttempt",
    "LoggedRequest",
    "Migration",
    "PostgresStore",
    "SQLiteStore",
    "SchemaTooNew",
    "Store",
    "open_store",
]


@runtime_checkable
class Store(Protocol):
    """What the telemetry hub and the admin API use of a request-log store."""

    async def start(self) -> None:
        """Open, migrate, start the writer and retention tasks."""

    def submit(self, record: LoggedRequest) -> None:
        """Queue a record; never blocks or raises (full queue → dropped, counted)."""

    def submit_run(self, run: LoggedRun) -> None:
        """Queue a run's latest version (upserted by key; a waiting one is replaced)."""

    def submit_step(self, step: LoggedStep) -> None:
        """Queue a step's latest version (upserted by key; a waiting one is replaced)."""

    async def flush(self) -> None:
        """Wait until everything submitted so far is written (or dropped)."""

    async def aclose(self) -> None:
        """Write everything queued, then close."""

    def stats(self) -> dict[str, Any]:
        """Writer counters: queued, written, dropped, batches, errors, last_error..."""

    async def apply_retention(self) -> dict[str, int]: ...

    async def list_requests(
        self,
        *,
        model: str | None = None,
        deployment: str | None = None,
        tenant: str | None = None,
        status: int | str | None = None,
        error_class: str | None = None,
        q: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        before: str | None = None,
        run_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def get_request(self, request_id: str) -> dict[str, Any] | None: ...

    async def trace(self, trace_id: str) -> list[dict[str, Any]]: ...

    async def spend(
        self,
        group_by: GroupBy = "model",
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]: ...

    async def overview(
        self, window_s: int = 3600, bucket_s: int = 60, *, now: float | None = None
    ) -> dict[str, Any]: ...

    async def list_runs(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        tenant: str | None = None,
        since: float | None = None,
        until: float | None = None,
        q: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def get_run(self, tenant: str | None, run_id: str) -> dict[str, Any] | None: ...


def open_store(cfg: TelemetryConfig) -> Store:
    """The store ``telemetry:`` asks for (not started: ``await store.start()``)."""
    options: dict[str, Any] = {
        "capture_content": cfg.capture_content,
        "retention_days": cfg.retention_days,
        "retention_max_rows": cfg.retention_max_rows,
        "writer_queue": cfg.writer_queue,
    }
    if cfg.store == "sqlite":
        return SQLiteStore(cfg.database, **options)
    if cfg.store == "postgres":
        try:
            from ._postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - asyncpg is installed in development
            raise ConfigError(
                f"telemetry.store: postgres needs the asyncpg package ({exc}); "
                "pip install asyncpg, or use telemetry.store: sqlite"
            ) from None
        return PostgresStore(cfg.database, **options)
    raise ConfigError("telemetry.store is off: there is no request-log store to open")


def __getattr__(name: str) -> Any:
    # PostgresStore imports asyncpg: only when asked for
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)
