"""The observe policy's trace ids: continued from ``traceparent``, else time-ordered."""

from __future__ import annotations

import asyncio

import orjson

from brace.config import parse_config
from brace.events import EventBus
from brace.stack import Request, Response
from brace.telemetry.cost import Pricing
from brace.telemetry.observe import ObservePolicy
from brace.telemetry.record import RequestEnded, RequestRecord
from brace.testing import FakeClock

BODY = orjson.dumps({"id": "c1", "model": "m", "choices": [{"finish_reason": "stop"}]})


def run(walls: list[float], traceparent: str | None = None) -> list[RequestRecord]:
    config = parse_config(
        {"models": {"chat": {"deployments": [{"provider": "mock", "model": "m"}]}}}, env={}
    )
    bus = EventBus()
    records: list[RequestRecord] = []
    bus.subscribe(lambda e: records.append(e.record) if isinstance(e, RequestEnded) else None)
    times = iter(walls)
    policy = ObservePolicy(
        clock=FakeClock(),
        events=bus,
        pricing=Pricing(config),
        providers={},
        wall=lambda: next(times),
    )

    async def answer(req: Request) -> Response:
        return Response(BODY)

    handler = policy.wrap(answer)

    async def main() -> None:
        for i in range(len(walls)):
            req = Request("chat", "chat", {"messages": []}, request_id=f"r{i}")
            if traceparent:
                req.meta["traceparent"] = traceparent
            await handler(req)

    asyncio.run(main())
    return records


def test_generated_trace_ids_start_with_the_start_time_in_milliseconds() -> None:
    walls = [1_764_000_000.123, 1_764_000_000.123, 1_764_000_000.124, 1_764_000_061.5]
    ids = [r.trace_id for r in run(walls)]
    assert all(len(t) == 32 and int(t, 16) for t in ids)
    assert [t[:12] for t in ids] == [f"{int(w * 1000):012x}" for w in walls]
    assert len(set(ids)) == len(ids)  # 80 random bits tell apart ids of one millisecond
    assert ids[2] > ids[0] and ids[2] > ids[1] and ids[3] > ids[2]  # ordered by time


def test_a_callers_traceparent_is_continued_not_replaced() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    (record,) = run([1_764_000_000.0], traceparent=f"00-{trace}-00f067aa0ba902b7-01")
    assert record.trace_id == trace and record.parent_span_id == "00f067aa0ba902b7"
    assert len(record.span_id) == 16 and record.span_id != "00f067aa0ba902b7"
