"""Agent runs and their steps, durably: tables ``runs`` and ``run_steps``.

Written by the request log's writer (:meth:`~brace.store.requests.Store.submit_run`,
:meth:`~brace.store.requests.Store.submit_step`: the same bounded queue, batches and
retry-once-then-drop), upserted by key so that the latest version of a run or a step
wins; several versions of one key waiting in the queue coalesce to the newest.
Retention deletes the runs last active before the request log's ``retention_days``,
with their steps.

Modules: ``_rows`` (the :class:`LoggedRun` / :class:`LoggedStep` protocols, columns,
rows), ``_queries`` (:class:`RunQueries`: listing and one run with its steps, for both
engines), ``_sqlite`` and ``_postgres`` (the engines' upserts and deletes).  The store
never imports :mod:`brace.runs`: it takes records shaped like its ``RunRecord`` and
``StepRecord``.  See ``docs/store.md``, "Runs".
"""

from __future__ import annotations

from ._queries import MAX_LIMIT, MAX_STEPS, RunQueries
from ._rows import RUN_STATUSES, LoggedRun, LoggedStep
from ._sqlite import SQLiteRuns

__all__ = [
    "MAX_LIMIT",
    "MAX_STEPS",
    "RUN_STATUSES",
    "LoggedRun",
    "LoggedStep",
    "RunQueries",
    "SQLiteRuns",
]
