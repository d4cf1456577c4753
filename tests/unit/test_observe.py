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
                req.state.traceparent = traceparent
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


def test_one_deployment_id_in_two_groups_is_priced_by_the_group_that_answered() -> None:
    """The default id (provider/model) repeats across groups: one model on two hosts at
    different prices must not share a price."""
    config = parse_config(
        {
            "models": {
                "cheap": {
                    "deployments": [
                        {
                            "provider": "vllm",
                            "model": "llama",
                            "base_url": "http://10.0.0.1:8000/v1",
                            "prices": {"input": 1.0, "output": 2.0},
                        }
                    ]
                },
                "fast": {
                    "deployments": [
                        {
                            "provider": "vllm",
                            "model": "llama",
                            "base_url": "http://10.0.0.2:8000/v1",
                            "prices": {"input": 10.0, "output": 20.0},
                        }
                    ]
                },
            }
        },
        env={},
    )
    pricing = Pricing(config)
    assert pricing.cost("vllm/llama", None, 1_000_000, 0, group="cheap") == 1.0
    assert pricing.cost("vllm/llama", None, 1_000_000, 0, group="fast") == 10.0
    assert pricing.cost("vllm/llama", None, 0, 1_000_000) == 2.0  # no group: the first


def test_the_group_that_answered_is_the_last_fallback_hop() -> None:
    from brace.stack import answering_group

    req = Request("chat", "smart", {"messages": []})
    assert answering_group(req) == "smart"
    req.state.fallback = ["smart", "cheap", "local"]
    assert answering_group(req) == "local"
