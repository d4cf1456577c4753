"""The request log's queries, written once for both engines: listing with keyset
paging, one request or trace with its attempts, spend, and the overview buckets.

An engine supplies ``_fetch`` (a read query with ``?`` placeholders), ``_floor_div``
and ``_in``; the SQL of every query is here.
"""

from __future__ import annotations

import abc
import collections
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from .._query import InvalidQuery, like_prefix, page
from .._query import decode_cursor as cursor_parts
from .._query import encode_cursor as cursor_of
from ._rows import ATTEMPT_COLUMNS, REQUEST_COLUMNS, row_to_attempt, row_to_request

__all__ = [
    "GROUP_BY",
    "GroupBy",
    "InvalidQuery",
    "RequestQueries",
    "decode_cursor",
    "encode_cursor",
]

GroupBy = Literal["model", "deployment", "tenant", "day", "hour"]
GROUP_BY: tuple[str, ...] = ("model", "deployment", "tenant", "day", "hour")

OVERVIEW_MAX_ROWS = 100_000
"""The overview reads at most this many durations (the most recent) for its percentiles."""
TRACE_MAX_REQUESTS = 500
MAX_LIMIT = 1_000
MAX_BUCKETS = 2_000

_LIST_COLUMNS = ", ".join(c for c in REQUEST_COLUMNS if c != "content")
_ALL_COLUMNS = ", ".join(REQUEST_COLUMNS)
_ATTEMPT_SELECT = ", ".join(ATTEMPT_COLUMNS)


def encode_cursor(started_at: float, request_id: str) -> str:
    return cursor_of(started_at, request_id)


def decode_cursor(cursor: str) -> tuple[float, str]:
    """``(started_at, request_id)`` of a cursor from :func:`encode_cursor`, or
    :class:`InvalidQuery`."""
    started_at, (request_id,) = cursor_parts(cursor)
    return started_at, request_id


def _percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (``None`` when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def _cost(value: Any) -> float:
    return 0.0 if value is None else round(float(value), 10)


class RequestQueries(abc.ABC):
    """The read side of the request log over an engine's read primitives."""

    now: Callable[[], float]

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Run a read query written with ``?`` placeholders."""

    @abc.abstractmethod
    def _floor_div(self, expr: str, seconds: int) -> str:
        """SQL for ``floor(expr / seconds)`` as an integer."""

    @abc.abstractmethod
    def _in(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """SQL and parameters for ``column IN values``."""

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
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The newest requests first (no content), and the cursor of the next page."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery("limit", f"limit must be between 1 and {MAX_LIMIT}")
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("model", model),
            ("deployment", deployment),
            ("tenant", tenant),
            ("error_class", error_class),
            ("run_id", run_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if status is not None:
            clause, values = _status_clause(status)
            where.append(clause)
            params.extend(values)
        if q:
            where.append("(request_id LIKE ? ESCAPE '\\' OR trace_id LIKE ? ESCAPE '\\')")
            params.extend([like_prefix(q), like_prefix(q)])
        self._time_range(where, params, since, until)
        if before is not None:
            s, rid = decode_cursor(before)
            where.append("(started_at < ? OR (started_at = ? AND request_id < ?))")
            params.extend([s, s, rid])
        sql = f"SELECT {_LIST_COLUMNS} FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, request_id DESC LIMIT ?"
        params.append(limit + 1)
        rows, cursor = page(
            await self._fetch(sql, params),
            limit,
            lambda last: encode_cursor(float(last["started_at"]), last["request_id"]),
        )
        return [row_to_request(r) for r in rows], cursor

    async def get_request(self, request_id: str) -> dict[str, Any] | None:
        """One request with its attempts (and its content, when captured)."""
        rows = await self._fetch(
            f"SELECT {_ALL_COLUMNS} FROM requests WHERE request_id = ?", [request_id]
        )
        if not rows:
            return None
        out = row_to_request(rows[0])
        attempts = await self._fetch(
            f"SELECT {_ATTEMPT_SELECT} FROM attempts WHERE request_id = ? ORDER BY seq",
            [request_id],
        )
        out["attempts"] = [_attempt(a) for a in attempts]
        return out

    async def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Every request of a trace (a multi-step agent run), oldest first, with attempts."""
        rows = await self._fetch(
            f"SELECT {_LIST_COLUMNS} FROM requests WHERE trace_id = ? "
            "ORDER BY started_at, request_id LIMIT ?",
            [trace_id, TRACE_MAX_REQUESTS],
        )
        out = [row_to_request(r) for r in rows]
        if not out:
            return out
        by_id: dict[str, dict[str, Any]] = {}
        for r in out:
            r["attempts"] = []
            by_id[r["request_id"]] = r
        clause, params = self._in("request_id", list(by_id))
        attempts = await self._fetch(
            f"SELECT {_ATTEMPT_SELECT} FROM attempts WHERE {clause} ORDER BY request_id, seq",
            params,
        )
        for a in attempts:
            by_id[a["request_id"]]["attempts"].append(_attempt(a))
        return out

    async def spend(
        self,
        group_by: GroupBy = "model",
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]:
        """Requests, tokens and cost by model, deployment, tenant, UTC day or UTC hour."""
        if group_by not in GROUP_BY:
            raise InvalidQuery("group_by", f"group_by must be one of {', '.join(GROUP_BY)}")
        timed = group_by in ("day", "hour")
        step = 86_400 if group_by == "day" else 3_600
        key = self._floor_div("started_at", step) if timed else group_by
        where: list[str] = []
        params: list[Any] = []
        self._time_range(where, params, since, until)
        sql = (
            f"SELECT {key} AS k, COUNT(*) AS requests, SUM(input_tokens) AS input_tokens, "
            "SUM(output_tokens) AS output_tokens, SUM(cost_usd) AS cost_usd FROM requests"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY k"
        rows = []
        for r in await self._fetch(sql, params):
            k = r["k"]
            if timed and k is not None:
                t = datetime.fromtimestamp(int(k) * step, UTC)
                k = t.strftime("%Y-%m-%d") if group_by == "day" else t.strftime("%Y-%m-%dT%H:00Z")
            rows.append(
                {
                    "key": k,
                    "requests": _int(r["requests"]),
                    "input_tokens": _int(r["input_tokens"]),
                    "output_tokens": _int(r["output_tokens"]),
                    "cost_usd": _cost(r["cost_usd"]),
                }
            )
        if timed:
            rows.sort(key=lambda x: x["key"] or "")
        else:
            rows.sort(key=lambda x: (-x["cost_usd"], -x["requests"], x["key"] or ""))
        total = {
            "requests": sum(x["requests"] for x in rows),
            "input_tokens": sum(x["input_tokens"] for x in rows),
            "output_tokens": sum(x["output_tokens"] for x in rows),
            "cost_usd": round(sum(x["cost_usd"] for x in rows), 10),
        }
        return {"group_by": group_by, "since": since, "until": until, "rows": rows, "total": total}

    async def overview(
        self, window_s: int = 3600, bucket_s: int = 60, *, now: float | None = None
    ) -> dict[str, Any]:
        """Per-bucket traffic over the last ``window_s`` seconds: requests, surfaced and
        absorbed errors, causes, p50/p99 latency and cost."""
        if bucket_s < 1:
            raise InvalidQuery("bucket_s", "bucket_s must be at least 1 second")
        if window_s < bucket_s:
            raise InvalidQuery("window_s", "window_s must be at least bucket_s")
        n = math.ceil(window_s / bucket_s)
        if n > MAX_BUCKETS:
            raise InvalidQuery(
                "bucket_s", f"window_s / bucket_s must be at most {MAX_BUCKETS} buckets"
            )
        current = self.now() if now is None else now
        last = math.floor(current / bucket_s)
        first = last - n + 1
        since, until = float(first * bucket_s), float((last + 1) * bucket_s)
        b = self._floor_div("started_at", bucket_s)
        buckets: dict[int, dict[str, Any]] = {
            i: {
                "t": i * bucket_s,
                "requests": 0,
                "errors_surfaced": 0,
                "errors_absorbed": 0,
                "by_cause": {},
                "surfaced_by_cause": {},
                "absorbed_by_cause": {},
                "p50_ms": None,
                "p99_ms": None,
                "cost_usd": 0.0,
            }
            for i in range(first, last + 1)
        }
        rng = "started_at >= ? AND started_at < ?"
        for r in await self._fetch(
            f"SELECT {b} AS b, COUNT(*) AS requests, "
            "SUM(CASE WHEN error_class IS NULL THEN 0 ELSE 1 END) AS surfaced, "
            f"SUM(absorbed) AS absorbed, SUM(cost_usd) AS cost_usd FROM requests WHERE {rng} "
            "GROUP BY b",
            [since, until],
        ):
            bucket = buckets.get(int(r["b"]))
            if bucket is not None:
                bucket["requests"] = _int(r["requests"])
                bucket["errors_surfaced"] = _int(r["surfaced"])
                bucket["errors_absorbed"] = _int(r["absorbed"])
                bucket["cost_usd"] = _cost(r["cost_usd"])
        surfaced_causes = await self._fetch(
            f"SELECT {b} AS b, error_class, COUNT(*) AS n FROM requests "
            f"WHERE {rng} AND error_class IS NOT NULL GROUP BY b, error_class",
            [since, until],
        )
        rb = self._floor_div("r.started_at", bucket_s)
        absorbed_causes = await self._fetch(
            f"SELECT {rb} AS b, a.error_class AS error_class, COUNT(*) AS n "
            "FROM requests r JOIN attempts a ON a.request_id = r.request_id "
            "WHERE r.started_at >= ? AND r.started_at < ? AND r.error_class IS NULL "
            "AND a.error_class IS NOT NULL GROUP BY b, a.error_class",
            [since, until],
        )
        totals_causes: dict[str, dict[str, int]] = {
            "by_cause": {},
            "surfaced_by_cause": {},
            "absorbed_by_cause": {},
        }
        for split, rows in (
            ("surfaced_by_cause", surfaced_causes),
            ("absorbed_by_cause", absorbed_causes),
        ):
            for r in rows:
                bucket = buckets.get(int(r["b"]))
                if bucket is None:
                    continue
                cls, count = r["error_class"], _int(r["n"])
                for target in (bucket["by_cause"], bucket[split]):
                    target[cls] = target.get(cls, 0) + count
                for key in ("by_cause", split):
                    target = totals_causes[key]
                    target[cls] = target.get(cls, 0) + count
        durations = await self._fetch(
            f"SELECT started_at, duration FROM requests WHERE {rng} "
            "ORDER BY started_at DESC LIMIT ?",
            [since, until, OVERVIEW_MAX_ROWS],
        )
        per_bucket: dict[int, list[float]] = collections.defaultdict(list)
        every: list[float] = []
        for r in durations:
            d = float(r["duration"])
            per_bucket[math.floor(float(r["started_at"]) / bucket_s)].append(d)
            every.append(d)
        for i, values in per_bucket.items():
            bucket = buckets.get(i)
            if bucket is not None:
                values.sort()
                bucket["p50_ms"] = _ms(_percentile(values, 0.5))
                bucket["p99_ms"] = _ms(_percentile(values, 0.99))
        every.sort()
        out = list(buckets.values())
        requests = sum(x["requests"] for x in out)
        surfaced = sum(x["errors_surfaced"] for x in out)
        totals = {
            "requests": requests,
            "errors_surfaced": surfaced,
            "errors_absorbed": sum(x["errors_absorbed"] for x in out),
            "error_rate": round(surfaced / requests, 6) if requests else 0.0,
            **totals_causes,
            "p50_ms": _ms(_percentile(every, 0.5)),
            "p99_ms": _ms(_percentile(every, 0.99)),
            "cost_usd": round(sum(x["cost_usd"] for x in out), 10),
            "sampled": len(durations) >= OVERVIEW_MAX_ROWS,
        }
        return {
            "window_s": window_s,
            "bucket_s": bucket_s,
            "since": since,
            "until": until,
            "buckets": out,
            "totals": totals,
        }

    @staticmethod
    def _time_range(
        where: list[str], params: list[Any], since: float | None, until: float | None
    ) -> None:
        if since is not None:
            where.append("started_at >= ?")
            params.append(float(since))
        if until is not None:
            where.append("started_at < ?")
            params.append(float(until))


def _attempt(row: dict[str, Any]) -> dict[str, Any]:
    out = row_to_attempt(row)
    out.pop("request_id", None)
    return out


def _status_clause(status: int | str) -> tuple[str, list[Any]]:
    """``status`` filter: an HTTP status (``429``), a class (``5xx``), ``ok`` (no error)
    or ``error`` (any surfaced error, including a stream that ended in an error event)."""
    if isinstance(status, int):
        return "status = ?", [status]
    s = status.strip().lower()
    if s == "ok":
        return "error_class IS NULL", []
    if s == "error":
        return "error_class IS NOT NULL", []
    if len(s) == 3 and s[0] in "12345" and s[1:] == "xx":
        low = int(s[0]) * 100
        return "status >= ? AND status < ?", [low, low + 100]
    if s.isdigit() and len(s) == 3:
        return "status = ?", [int(s)]
    raise InvalidQuery("status", "status must be an HTTP status (429), a class (5xx), ok or error")
