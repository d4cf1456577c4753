"""Agent runs on SQLite: the upserts and deletes the request log's writer thread runs
(one connection writes every table family of the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .._sqlite import MultiInsert
from ._rows import (
    RUN_COLUMNS,
    RUN_KEY,
    STEP_COLUMNS,
    STEP_KEY,
    LoggedRun,
    LoggedStep,
    run_row,
    step_row,
)

__all__ = ["SQLiteRuns"]

Plan = list[tuple[str, list[Any]]]


class SQLiteRuns:
    """Multi-row upserts of runs and steps (one statement per chunk of rows: see
    :class:`~brace.store._sqlite.MultiInsert`), and deleting runs with their steps."""

    def __init__(self, max_vars: int) -> None:
        self._runs = MultiInsert(
            "runs", RUN_COLUMNS, ", ".join(RUN_KEY), max_vars, update=RUN_COLUMNS[len(RUN_KEY) :]
        )
        self._steps = MultiInsert(
            "run_steps",
            STEP_COLUMNS,
            ", ".join(STEP_KEY),
            max_vars,
            update=STEP_COLUMNS[len(STEP_KEY) :],
        )

    def plan(
        self, runs: Sequence[LoggedRun], steps: Sequence[LoggedStep], *, capture_content: bool
    ) -> tuple[Plan, Plan]:
        """The statements writing a batch (built on the event loop, run on the writer
        thread by :meth:`write`)."""
        return (
            self._runs.plan([run_row(r) for r in runs]),
            self._steps.plan([step_row(s, capture_content=capture_content) for s in steps]),
        )

    @staticmethod
    def write(conn: sqlite3.Connection, plans: tuple[Plan, Plan]) -> int:
        """Run a :meth:`plan` in one transaction; returns the rows written."""
        conn.execute("BEGIN")
        try:
            written = sum(MultiInsert.execute(conn, plan) for plan in plans)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return written

    @staticmethod
    def delete(conn: sqlite3.Connection, keys: Sequence[tuple[str, str]]) -> int:
        """Delete these runs and their steps in one transaction; returns the runs deleted."""
        conn.execute("BEGIN")
        try:
            conn.executemany("DELETE FROM run_steps WHERE tenant = ? AND run_id = ?", keys)
            deleted = conn.executemany(
                "DELETE FROM runs WHERE tenant = ? AND run_id = ?", keys
            ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return deleted
