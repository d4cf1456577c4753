"""Agent runs for the fake admin API (``_fake.py``): ``GET /admin/runs`` and
``GET /admin/runs/{run_id}?key=``, in the shapes of :mod:`brace.runs` (the records
themselves, through their ``to_dict``), with times relative to now.

The fixture runs:

- ``COMPLETED``: a research agent's run, model → two parallel tools → model (waited
  for capacity, retried once, fell back to ``backup``) → tool → final model answer;
- ``FAILED``: a support agent's run whose third step (a model call) failed:
  ``overloaded`` from ``backup-1`` after queueing, two retries and a fallback;
- ``RUNNING``: a run still going, one of its two parallel tool calls still out;
- ``ABANDONED``: a run that went idle with a tool call never answered (``unfinished``);
- ``FILLER`` older completed runs, so that the list has a second page.

The ids of ``COMPLETED`` and ``FAILED`` share their first 26 characters: the page
must never cut an id down to that prefix.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiMapping

from brace.runs import RunRecord, StepRecord

COMPLETED = "run_01JD4X8K2M7Q9R3T5V7W9Y1A2B"
FAILED = "run_01JD4X8K2M7Q9R3T5V7W9Y1C3D"
RUNNING = "run_01JD4XB7N0P2S4U6W8Y0A2C4E6"
ABANDONED = "run_01JD4W2F9H1K3M5P7R9T1V3X5Z"
FILLER = 55
"""Older completed runs: with the four above, more than one page (50)."""


def _model(
    seq: int, at: float, duration: float | None, request_id: str, **kw: Any
) -> dict[str, Any]:
    return {
        "seq": seq,
        "kind": "model",
        "name": kw.pop("name", "chat"),
        "started_at": at,
        "duration": duration,
        "status": kw.pop("status", "ok" if duration is not None else "running"),
        "request_id": request_id,
        "deployment": kw.pop("deployment", "chat-a"),
        "attempts": kw.pop("attempts", 1),
        **kw,
    }


def _tool(
    seq: int, at: float, duration: float | None, name: str, opened_by: str, **kw: Any
) -> dict[str, Any]:
    return {
        "seq": seq,
        "kind": "tool",
        "name": name,
        "started_at": at,
        "duration": duration,
        "status": kw.pop("status", "ok" if duration is not None else "running"),
        "tool_call_id": f"call_{name}_{seq}",
        "tool_type": "function",
        "opened_by": opened_by,
        **kw,
    }


def _build(
    tenant: str,
    run_id: str,
    started: float,
    steps: list[dict[str, Any]],
    *,
    agent: str | None,
    status: str,
    ended: float | None,
    last: float,
    trace: str,
) -> tuple[RunRecord, list[StepRecord]]:
    records = [
        StepRecord(tenant=tenant, run_id=run_id, **{**s, "started_at": started + s["started_at"]})
        for s in steps
    ]
    run = RunRecord(
        tenant=tenant,
        run_id=run_id,
        started_at=started,
        last_activity=started + last,
        agent=agent,
        status=status,  # type: ignore[arg-type]
        ended_at=None if ended is None else started + ended,
        trace_id=trace,
        span_id=trace[:16],
    )
    # the run's totals, summed from its steps as the tracker does
    for st in records:
        run.steps += 1
        if st.kind == "model":
            run.model_steps += 1
            run.input_tokens += st.input_tokens or 0
            run.output_tokens += st.output_tokens or 0
            run.cost_usd += st.cost_usd or 0.0
            run.retries += st.retries
            run.wait_s += (st.queue_wait or 0.0) + st.retry_wait
            if st.request_id:
                run.request_ids.append(st.request_id)
        else:
            run.tool_steps += 1
        if st.status in ("failed", "error"):
            run.failed_steps += 1
        if st.status == "failed":
            run.failure_step = st.seq
            run.failure_class = st.error_class
            run.failure_deployment = st.deployment
            run.failure_error = st.error
    run.cost_usd = round(run.cost_usd, 9)
    run.wait_s = round(run.wait_s, 6)
    return run, records


def fixture_runs(now: float) -> list[tuple[RunRecord, list[StepRecord]]]:
    """Every fixture run with its steps, the most recently active first."""
    runs = [
        _build(
            "key_alpha",
            RUNNING,
            now - 20,
            [
                _model(
                    1,
                    0.0,
                    1.1,
                    "req-run-c1",
                    input_tokens=610,
                    output_tokens=48,
                    cost_usd=0.00142,
                    tool_calls=2,
                ),
                _tool(
                    2,
                    1.15,
                    0.9,
                    "web_search",
                    "req-run-c1",
                    closed_by="req-run-c2",
                    result_bytes=5120,
                ),
                _tool(3, 1.16, None, "run_code", "req-run-c1"),
            ],
            agent="research-bot",
            status="running",
            ended=None,
            last=2.05,
            trace="c" * 32,
        ),
        _build(
            "key_beta",
            FAILED,
            now - 300,
            [
                _model(
                    1,
                    0.0,
                    0.9,
                    "req-run-b1",
                    input_tokens=420,
                    output_tokens=31,
                    cost_usd=0.00096,
                    tool_calls=1,
                ),
                _tool(
                    2,
                    0.95,
                    0.6,
                    "lookup_order",
                    "req-run-b1",
                    closed_by="req-run-b3",
                    result_bytes=880,
                ),
                _model(
                    3,
                    1.6,
                    6.5,
                    "req-run-b3",
                    status="failed",
                    deployment="backup-1",
                    attempts=3,
                    retries=2,
                    retry_wait=2.5,
                    queue_wait=1.2,
                    fallback=["chat", "backup"],
                    error_class="overloaded",
                    error="upstream answered 503: the model is overloaded, try again later",
                ),
            ],
            agent="support-agent",
            status="failed",
            ended=8.1,
            last=8.1,
            trace="b" * 32,
        ),
        _build(
            "key_alpha",
            COMPLETED,
            now - 600,
            [
                _model(
                    1,
                    0.0,
                    1.2,
                    "req-run-a1",
                    input_tokens=820,
                    output_tokens=64,
                    cost_usd=0.0021,
                    tool_calls=2,
                    label="plan",
                ),
                _tool(
                    2,
                    1.25,
                    2.1,
                    "web_search",
                    "req-run-a1",
                    closed_by="req-run-a4",
                    result_bytes=10240,
                ),
                _tool(
                    3,
                    1.26,
                    3.4,
                    "fetch_page",
                    "req-run-a1",
                    closed_by="req-run-a4",
                    result_bytes=48213,
                ),
                _model(
                    4,
                    4.8,
                    2.0,
                    "req-run-a4",
                    deployment="backup-1",
                    attempts=2,
                    retries=1,
                    retry_wait=0.5,
                    queue_wait=0.4,
                    fallback=["chat", "backup"],
                    input_tokens=3950,
                    output_tokens=120,
                    cost_usd=0.0087,
                    tool_calls=1,
                ),
                _tool(
                    5,
                    6.9,
                    0.8,
                    "summarize",
                    "req-run-a4",
                    closed_by="req-run-a6",
                    status="error",
                    error="tool raised: timeout after 0.8 s",
                ),
                _model(
                    6,
                    7.8,
                    1.5,
                    "req-run-a6",
                    input_tokens=4400,
                    output_tokens=310,
                    cost_usd=0.0112,
                    label="answer",
                ),
            ],
            agent="research-bot",
            status="completed",
            ended=9.3,
            last=9.3,
            trace="a" * 32,
        ),
        _build(
            "key_beta",
            ABANDONED,
            now - 2400,
            [
                _model(
                    1,
                    0.0,
                    0.7,
                    "req-run-d1",
                    input_tokens=200,
                    output_tokens=22,
                    cost_usd=0.0004,
                    tool_calls=1,
                ),
                _tool(2, 0.75, None, "ask_human", "req-run-d1", status="unfinished"),
            ],
            agent="batch-agent",
            status="abandoned",
            ended=900.0,
            last=0.7,
            trace="d" * 32,
        ),
    ]
    for i in range(FILLER):
        rid = f"run_fill_{i:04d}"
        runs.append(
            _build(
                "key_alpha" if i % 2 else "key_gamma",
                rid,
                now - 3700 - 60 * i,
                [
                    _model(
                        1,
                        0.0,
                        0.5 + (i % 5) / 10,
                        f"req-{rid}",
                        input_tokens=100 + i,
                        output_tokens=10 + i,
                        cost_usd=0.0001 * (i + 1),
                    ),
                ],
                agent="nightly-eval",
                status="completed",
                ended=0.5 + (i % 5) / 10,
                last=0.5 + (i % 5) / 10,
                trace=f"{i + 1:032x}",
            )
        )
    return runs


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "not_found"}}, status=status)


def list_runs(
    runs: list[tuple[RunRecord, list[StepRecord]]], q: MultiMapping[str]
) -> dict[str, Any]:
    rows = sorted((r for r, _ in runs), key=lambda r: -r.last_activity)
    if q.get("status"):
        rows = [r for r in rows if r.status == q["status"]]
    if q.get("agent"):
        rows = [r for r in rows if r.agent == q["agent"]]
    if q.get("key"):
        rows = [r for r in rows if r.tenant == q["key"]]
    if q.get("since"):
        rows = [r for r in rows if r.last_activity >= float(q["since"])]
    if q.get("until"):
        rows = [r for r in rows if r.last_activity < float(q["until"])]
    if q.get("q"):
        text = q["q"]
        rows = [
            r for r in rows if r.run_id.startswith(text) or text.lower() in (r.agent or "").lower()
        ]
    if q.get("before"):
        index = next(i for i, r in enumerate(rows) if r.run_id == q["before"])
        rows = rows[index + 1 :]
    limit = int(q.get("limit", "50"))
    page = rows[:limit]
    return {
        "object": "list",
        "data": [r.to_dict() for r in page],
        "next_cursor": page[-1].run_id if len(rows) > limit else None,
    }


def one_run(
    runs: list[tuple[RunRecord, list[StepRecord]]], run_id: str, key: str | None
) -> dict[str, Any] | None:
    for run, steps in runs:
        if run.run_id == run_id and (not key or run.tenant == key):
            out = run.to_dict()
            out["step_count"] = out["steps"]
            out["steps"] = [s.to_dict() for s in sorted(steps, key=lambda s: s.seq)]
            return out
    return None


def add_routes(app: web.Application, guarded: Any, started: float) -> None:
    runs = fixture_runs(started)

    async def runs_route(request: web.Request) -> web.StreamResponse:
        return web.json_response(list_runs(runs, request.query))

    async def run_route(request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        found = one_run(runs, run_id, request.query.get("key"))
        if found is None:
            return _error(f"no run {run_id}", 404)
        return web.json_response(found)

    app.router.add_get("/admin/runs", guarded(runs_route))
    app.router.add_get("/admin/runs/{run_id}", guarded(run_route))
