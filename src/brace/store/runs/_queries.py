"""Agent runs' queries, written once for both engines: listing (newest activity
first, keyset paging), one run with its steps, and what retention deletes.

An engine supplies ``_fetch`` (a read query with ``?`` placeholders).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from .._query import InvalidQuery, decode_cursor, encode_cursor, like_contains, like_prefix, page
from ._rows import RUN_COLUMNS, RUN_STATUSES, STEP_COLUMNS, row_to_run, row_to_step

__all__ = ["MAX_LIMIT", "MAX_STEPS", "RunQueries"]

MAX_LIMIT = 1_000
MAX_STEPS = 5_000
"""A run's steps shown at most (the first ones, by ``seq``)."""

_RUN_SELECT = ", ".join(RUN_COLUMNS)
_STEP_SELECT = ", ".join(STEP_COLUMNS)


class RunQueries(abc.ABC):
    """The read side of the runs over an engine's read primitive."""

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Run a read query written with ``?`` placeholders."""

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
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Runs, the most recently active first, and the cursor of the next page.

        ``since``/``until`` bound the last activity; ``q`` matches a run id prefix or
        a part of the agent's name (any case).  A run that is active while pages are
        read moves to the top: a later page does not show it again.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery("limit", f"limit must be between 1 and {MAX_LIMIT}")
        if status is not None and status not in RUN_STATUSES:
            raise InvalidQuery("status", f"status must be one of {', '.join(RUN_STATUSES)}")
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("status", status), ("agent", agent), ("tenant", tenant)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("last_activity >= ?")
            params.append(float(since))
        if until is not None:
            where.append("last_activity < ?")
            params.append(float(until))
        if q:
            where.append("(run_id LIKE ? ESCAPE '\\' OR LOWER(agent) LIKE ? ESCAPE '\\')")
            params.extend([like_prefix(q), like_contains(q.lower())])
        if before is not None:
            t, (ten, rid) = decode_cursor(before, 2)
            where.append(
                "(last_activity < ? OR (last_activity = ? AND "
                "(tenant < ? OR (tenant = ? AND run_id < ?))))"
            )
            params.extend([t, t, ten, ten, rid])
        sql = f"SELECT {_RUN_SELECT} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY last_activity DESC, tenant DESC, run_id DESC LIMIT ?"
        params.append(limit + 1)
        rows, cursor = page(
            await self._fetch(sql, params),
            limit,
            lambda last: encode_cursor(
                float(last["last_activity"]), last["tenant"], last["run_id"]
            ),
        )
        return [row_to_run(r) for r in rows], cursor

    async def get_run(self, tenant: str | None, run_id: str) -> dict[str, Any] | None:
        """One run with its ``steps`` (a list, by ``seq``; the count is ``step_count``),
        or ``None``.

        Without ``tenant``, the run id must belong to one tenant only: when several
        have it, :class:`InvalidQuery` (``param="key"``) asks for the tenant.
        """
        if tenant is None:
            rows = await self._fetch(
                f"SELECT {_RUN_SELECT} FROM runs WHERE run_id = ? ORDER BY tenant LIMIT 11",
                [run_id],
            )
            if len(rows) > 1:
                many = f"{len(rows)}" if len(rows) <= 10 else "more than 10"
                names = ", ".join(r["tenant"] for r in rows[:10])
                raise InvalidQuery(
                    "key",
                    f"run {run_id[:80]!r} exists for {many} tenants ({names}): "
                    "ask for one with key=<tenant> (a key id, master or local)",
                )
        else:
            rows = await self._fetch(
                f"SELECT {_RUN_SELECT} FROM runs WHERE tenant = ? AND run_id = ?",
                [tenant, run_id],
            )
        if not rows:
            return None
        out = row_to_run(rows[0])
        steps = await self._fetch(
            f"SELECT {_STEP_SELECT} FROM run_steps WHERE tenant = ? AND run_id = ? "
            "ORDER BY seq LIMIT ?",
            [out["tenant"], run_id, MAX_STEPS],
        )
        # the run's step count moves to step_count: "steps" is the steps themselves
        out["step_count"] = out.pop("steps")
        out["steps"] = [row_to_step(s) for s in steps]
        return out

    async def _expired_runs(self, cutoff: float, limit: int) -> list[tuple[str, str]]:
        """The keys of up to ``limit`` runs last active before ``cutoff``, oldest first."""
        rows = await self._fetch(
            "SELECT tenant, run_id FROM runs WHERE last_activity < ? "
            "ORDER BY last_activity, tenant, run_id LIMIT ?",
            [cutoff, limit],
        )
        return [(r["tenant"], r["run_id"]) for r in rows]
