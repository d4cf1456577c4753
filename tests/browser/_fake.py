"""A fake admin API in the request log's shapes, behind the real ``/ui`` route.

It answers ``/admin/deployments``, ``/admin/overview``, ``/admin/requests[/{id}]``,
``/admin/spend`` and ``/admin/runs[/{run_id}]`` (``_fake_runs.py``) from fixed fixture data (times relative to now), with the real
``admin_guard``: the dashboard's charts, filters and trace view can then be checked
against exact numbers.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import Any

import orjson
from aiohttp import web

from brace.config import parse_config
from brace.gateway._access import admin_guard
from brace.gateway.routes import ui
from tests.browser import _fake_runs

BUCKET = 60
WINDOW = 3600

# (minutes ago, requests, surfaced {cause: n}, absorbed {cause: n}, p50 ms, p99 ms, cost)
_TRAFFIC = [
    (50, 40, {}, {"rate_limited": 6}, 310.0, 900.0, 0.021),
    (40, 55, {"rate_limited": 1}, {"rate_limited": 14, "server_error": 2}, 330.0, 1400.0, 0.034),
    (30, 70, {}, {"rate_limited": 20}, 350.0, 1700.0, 0.041),
    (20, 62, {"timeout": 1}, {"rate_limited": 9, "timeout": 1}, 420.0, 2600.0, 0.037),
    (10, 48, {}, {"rate_limited": 3}, 300.0, 800.0, 0.026),
    (2, 30, {"server_error": 1}, {"server_error": 2}, 280.0, 700.0, 0.018),
]


def overview(now: float, *, split: bool) -> dict[str, Any]:
    last = math.floor(now / BUCKET)
    first = last - WINDOW // BUCKET + 1
    buckets = []
    for i in range(first, last + 1):
        buckets.append(
            {
                "t": i * BUCKET,
                "requests": 0,
                "errors_surfaced": 0,
                "errors_absorbed": 0,
                "by_cause": {},
                "p50_ms": None,
                "p99_ms": None,
                "cost_usd": 0.0,
            }
        )
    for ago, requests, surfaced, absorbed, p50, p99, cost in _TRAFFIC:
        b = buckets[len(buckets) - 1 - ago]
        by_cause: dict[str, int] = {}
        for cause, n in [*surfaced.items(), *absorbed.items()]:
            by_cause[cause] = by_cause.get(cause, 0) + n
        b.update(
            requests=requests,
            errors_surfaced=sum(surfaced.values()),
            errors_absorbed=sum(absorbed.values()),
            by_cause=by_cause,
            p50_ms=p50,
            p99_ms=p99,
            cost_usd=cost,
        )
        if split:
            b["surfaced_by_cause"] = dict(surfaced)
            b["absorbed_by_cause"] = dict(absorbed)
    totals = {
        "requests": sum(b["requests"] for b in buckets),
        "errors_surfaced": sum(b["errors_surfaced"] for b in buckets),
        "errors_absorbed": sum(b["errors_absorbed"] for b in buckets),
        "by_cause": {},
        "p50_ms": 330.0,
        "p99_ms": 1900.0,
        "cost_usd": round(sum(b["cost_usd"] for b in buckets), 6),
    }
    for b in buckets:
        for k, v in b["by_cause"].items():
            totals["by_cause"][k] = totals["by_cause"].get(k, 0) + v
    return {
        "window_s": WINDOW,
        "bucket_s": BUCKET,
        "since": float(first * BUCKET),
        "until": float((last + 1) * BUCKET),
        "buckets": buckets,
        "totals": totals,
    }


def _request(i: int, now: float) -> dict[str, Any]:
    model = ["chat", "chat", "embed", "chat-mini"][i % 4]
    failed = i % 9 == 4
    fell_over = i == 7
    deployment = {"chat": "chat-a", "embed": "embed-1", "chat-mini": "mini-1"}[model]
    attempts = [
        {
            "seq": 1,
            "deployment": deployment,
            "group": model,
            "provider": "mock",
            "offset": 0.0,
            "duration": 0.4,
            "error_class": "server_error" if failed else None,
            "status": 500 if failed else 200,
            "hedge": False,
            "error": "upstream answered 500" if failed else None,
        }
    ]
    if fell_over:
        attempts = [
            {
                "seq": 1,
                "deployment": "chat-a",
                "group": "chat",
                "provider": "mock",
                "offset": 0.0,
                "duration": 0.12,
                "error_class": "overloaded",
                "status": 503,
                "hedge": False,
                "error": "upstream answered 503",
            },
            {
                "seq": 2,
                "deployment": "backup-1",
                "group": "backup",
                "provider": "mock",
                "offset": 0.15,
                "duration": 0.5,
                "error_class": None,
                "status": 200,
                "hedge": False,
                "error": None,
            },
        ]
        deployment = "backup-1"
    return {
        "request_id": f"req-{i:04d}",
        "trace_id": f"{i:032x}",
        "started_at": now - 20 * i,
        "model": model,
        "group": "backup" if fell_over else model,
        "deployment": deployment,
        "provider": "mock",
        "status": 500 if failed else 200,
        "error_class": "server_error" if failed else None,
        "error": "upstream answered 500" if failed else None,
        "duration": 0.65 if fell_over else 0.4,
        "ttft": None if model == "embed" else 0.2,
        "input_tokens": 100 + i,
        "output_tokens": 0 if model == "embed" else 20 + i,
        "cost_usd": 0.0001 * (i + 1),
        "stream": i % 3 == 0,
        "attempts_count": len(attempts),
        "absorbed": 1 if fell_over else 0,
        "fallback": ["chat", "backup"] if fell_over else None,
        "hedged": False,
        "priority": "normal",
        "tenant": "tenant-a" if i % 2 else "tenant-b",
        "_attempts": attempts,
    }


REQUESTS = 75
"""More than one page (50): "load more" has a second page to fetch."""


def requests_log(now: float) -> list[dict[str, Any]]:
    return [_request(i, now) for i in range(REQUESTS)]


def spend(rows: list[dict[str, Any]], group_by: str) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if group_by == "day":
            key = time.strftime("%Y-%m-%d", time.gmtime(r["started_at"]))
        elif group_by == "hour":
            key = time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(r["started_at"]))
        else:
            key = r[group_by]
        e = out.setdefault(
            key, {"key": key, "requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        )
        e["requests"] += 1
        e["input_tokens"] += r["input_tokens"]
        e["output_tokens"] += r["output_tokens"]
        e["cost_usd"] += r["cost_usd"]
    data = sorted(out.values(), key=lambda e: -e["cost_usd"])
    total = {
        k: sum(e[k] for e in data)
        for k in ("requests", "input_tokens", "output_tokens", "cost_usd")
    }
    return {"group_by": group_by, "rows": data, "total": total}


DEPLOYMENTS: dict[str, Any] = {
    "groups": {
        "chat": [
            {
                "id": "chat-a",
                "weight": 1,
                "outstanding": 3,
                "ewma_latency_s": 0.41,
                "ewma_error_rate": 0.31,
                "breaker": {"state": "open", "failure_rate": 0.6, "retry_after": 4.2},
                "capacity": {
                    "effective_rpm": 450.0,
                    "effective_tpm": 90000.0,
                    "learned_rpm": 500,
                    "learned_tpm": 100000,
                    "in_flight": 3,
                    "concurrency_limit": 4.0,
                    "upstream_429s": 17,
                    "factor": 0.9,
                },
                "retry_budget": {"requests": 120, "retries": 14, "allowed": 34},
            },
            {
                "id": "chat-b",
                "weight": 1,
                "outstanding": 1,
                "ewma_latency_s": 0.33,
                "ewma_error_rate": 0.01,
                "breaker": {"state": "closed", "failure_rate": 0.01, "retry_after": None},
                "capacity": None,
                "retry_budget": {"requests": 90, "retries": 1, "allowed": 28},
            },
        ],
        "backup": [
            {
                "id": "backup-1",
                "weight": 1,
                "outstanding": 0,
                "ewma_latency_s": None,
                "ewma_error_rate": 0.0,
                "breaker": {"state": "half_open", "failure_rate": 0.2, "retry_after": None},
                "capacity": None,
                "retry_budget": {"requests": 4, "retries": 0, "allowed": 10.4},
            }
        ],
    },
    "admission": {
        "chat": {"queue_depth": 5, "by_priority": {"high": 1, "normal": 4, "low": 0}, "shed": 2},
        "backup": {"queue_depth": 0, "by_priority": {"high": 0, "normal": 0, "low": 0}, "shed": 0},
    },
    "limiter": {"backend": "redis", "mode": "degraded", "live_instances": 2, "degraded_calls": 12},
}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def create_app(*, admin_key: str | None = None, split: bool = False) -> web.Application:
    """The real ``/ui`` route and a fake admin API; ``split`` adds absorbed/surfaced by cause."""
    server: dict[str, Any] = {"host": "127.0.0.1"}
    if admin_key is not None:
        server["admin_key"] = "${BRACE_ADMIN_KEY}"
    config = parse_config(
        {"server": server, "models": {"m": {"deployments": [{"provider": "mock", "model": "m"}]}}},
        env={"BRACE_ADMIN_KEY": admin_key or ""},
    )
    gateway: Any = SimpleNamespace(config=config)
    check = admin_guard(gateway)
    started = time.time()
    log = requests_log(started)
    app = web.Application()
    ui.setup(app, gateway)

    def guarded(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            denied = check(request)
            if denied is not None:
                return denied
            return await handler(request)

        return wrapped

    async def deployments(request: web.Request) -> web.StreamResponse:
        return _json(DEPLOYMENTS)

    async def overview_route(request: web.Request) -> web.StreamResponse:
        return _json(overview(time.time(), split=split))

    async def requests_route(request: web.Request) -> web.StreamResponse:
        q = request.query
        rows = log
        for key in ("model", "deployment", "tenant", "error_class"):
            if q.get(key):
                rows = [r for r in rows if r.get(key) == q[key]]
        status = q.get("status")
        if status == "ok":
            rows = [r for r in rows if r["error_class"] is None]
        elif status == "error":
            rows = [r for r in rows if r["error_class"] is not None]
        elif status:
            rows = [r for r in rows if str(r["status"]) == status]
        if q.get("q"):
            rows = [r for r in rows if r["request_id"].startswith(q["q"])]
        if q.get("before"):
            index = next(i for i, r in enumerate(rows) if r["request_id"] == q["before"])
            rows = rows[index + 1 :]
        limit = int(q.get("limit", "50"))
        page = rows[:limit]
        next_cursor = page[-1]["request_id"] if len(rows) > limit else None
        data = [{k: v for k, v in r.items() if k != "_attempts"} for r in page]
        return _json({"data": data, "next_cursor": next_cursor})

    async def one(request: web.Request) -> web.StreamResponse:
        rid = request.match_info["id"]
        for r in log:
            if r["request_id"] == rid:
                out = {k: v for k, v in r.items() if k != "_attempts"}
                out["attempts"] = r["_attempts"]
                return _json(out)
        return _json({"error": {"message": f"no request {rid}", "type": "not_found"}}, 404)

    async def spend_route(request: web.Request) -> web.StreamResponse:
        return _json(spend(log, request.query.get("group_by", "model")))

    app.router.add_get("/admin/deployments", guarded(deployments))
    app.router.add_get("/admin/overview", guarded(overview_route))
    app.router.add_get("/admin/requests", guarded(requests_route))
    app.router.add_get("/admin/requests/{id}", guarded(one))
    app.router.add_get("/admin/spend", guarded(spend_route))
    _fake_runs.add_routes(app, guarded, started)
    return app
