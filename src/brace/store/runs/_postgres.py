"""Agent runs on PostgreSQL: the upserts and deletes, over the request log's asyncpg
pool (``ON CONFLICT ... DO UPDATE``: the latest version of a run or step wins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

__all__ = ["delete_runs", "write_runs"]


def _upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
    )


_UPSERT_RUN = _upsert("runs", RUN_COLUMNS, RUN_KEY)
_UPSERT_STEP = _upsert("run_steps", STEP_COLUMNS, STEP_KEY)
_KEYS = "(tenant, run_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"


async def write_runs(
    pool: Any,
    runs: Sequence[LoggedRun],
    steps: Sequence[LoggedStep],
    *,
    capture_content: bool,
) -> int:
    """Upsert a batch in one transaction; returns the rows written."""
    async with pool.acquire() as conn, conn.transaction():
        if runs:
            await conn.executemany(_UPSERT_RUN, [run_row(r) for r in runs])
        if steps:
            await conn.executemany(
                _UPSERT_STEP, [step_row(s, capture_content=capture_content) for s in steps]
            )
    return len(runs) + len(steps)


async def delete_runs(pool: Any, keys: Sequence[tuple[str, str]]) -> int:
    """Delete these runs and their steps in one transaction; returns the runs deleted."""
    tenants = [k[0] for k in keys]
    run_ids = [k[1] for k in keys]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"DELETE FROM run_steps WHERE {_KEYS}", tenants, run_ids)
        status: str = await conn.execute(f"DELETE FROM runs WHERE {_KEYS}", tenants, run_ids)
    return int(status.rsplit(" ", 1)[-1])  # "DELETE <n>"
