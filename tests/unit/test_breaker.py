import asyncio
from typing import Any

import pytest

from brace.config import ERROR_CLASSES, BreakerConfig
from brace.errors import CircuitOpen, RateLimited, ServerError, UpstreamBadRequest
from brace.events import BreakerChanged, Event, EventBus
from brace.policies.breaker import (
    FAILURE_CLASSES,
    IGNORED_CLASSES,
    BreakerPolicy,
    CircuitBreaker,
)
from brace.stack import Request, Response, StreamResponse
from brace.testing import FakeClock, ScriptedProvider, ok_response


def make(clock: FakeClock, events: EventBus | None = None, **config: Any) -> CircuitBreaker:
    return CircuitBreaker("dep-a", BreakerConfig(**config), clock=clock, events=events)


def trip(b: CircuitBreaker, n: int = 10) -> None:
    for _ in range(n):
        b.record("server_error")


def to_half_open(b: CircuitBreaker, clock: FakeClock) -> None:
    trip(b)
    assert b.state == "open"
    retry_after = b.retry_after()
    assert retry_after is not None
    clock.advance(retry_after)
    assert b.state == "half_open"


def req() -> Request:
    return Request(operation="chat", model="m", body={})


# ----------------------------------------------------------------------------- what counts


def test_failure_and_ignored_sets_cover_every_error_class_once() -> None:
    assert not FAILURE_CLASSES & IGNORED_CLASSES
    assert {*ERROR_CLASSES, "deadline_exceeded"} == FAILURE_CLASSES | IGNORED_CLASSES
    assert {"server_error", "overloaded", "timeout", "connection_error", "malformed_response"} == (
        FAILURE_CLASSES
    )


def test_no_trip_below_min_requests_even_at_full_failure() -> None:
    clock = FakeClock()
    b = make(clock)
    trip(b, 9)
    assert b.state == "closed"
    assert b.snapshot()["failure_rate"] == 1.0
    b.record("timeout")
    assert b.state == "open"


@pytest.mark.parametrize(("failures", "expected"), [(2, "closed"), (3, "open")])
def test_trips_at_failure_rate(failures: int, expected: str) -> None:
    clock = FakeClock()
    b = make(clock)
    for _ in range(10 - failures):
        b.record(None)
    for _ in range(failures):
        b.record("overloaded")
    assert b.state == expected  # 0.3 is reached exactly at 3 of 10


def test_a_success_that_brings_the_volume_to_min_requests_can_trip() -> None:
    clock = FakeClock()
    b = make(clock)
    for cls in ["connection_error"] * 3 + [None] * 6:
        b.record(cls)
    assert b.state == "closed"  # 3/9, but only 9 requests
    b.record(None)
    assert b.state == "open"  # 3/10 with the volume reached


def test_ignored_classes_neither_trip_nor_dilute() -> None:
    clock = FakeClock()
    b = make(clock)
    for cls in sorted(IGNORED_CLASSES) * 5 + ["some_unknown_class"]:
        b.record(cls)
    assert b.state == "closed"
    assert b.snapshot()["requests"] == 0
    for _ in range(7):
        b.record(None)
    trip(b, 2)
    for _ in range(50):
        b.record("rate_limited")  # would dilute 2/9 far below 0.3 if counted
    assert b.state == "closed"
    b.record("malformed_response")
    assert b.state == "open"


@pytest.mark.parametrize(("later", "expected"), [(9.5, "open"), (10.0, "closed")])
def test_rolling_window_forgets_old_failures(later: float, expected: str) -> None:
    clock = FakeClock()
    b = make(clock)
    trip(b, 9)
    clock.advance(later)
    b.record("server_error")
    assert b.state == expected
    if expected == "closed":
        assert b.snapshot()["requests"] == 1


def test_window_slides_bucket_by_bucket() -> None:
    clock = FakeClock()
    b = make(clock, min_requests=100)
    for _ in range(5):
        b.record("server_error")
        clock.advance(2.0)
    # buckets at 0, 2, 4, 6, 8 s; now 10 s: the one at 0 s has left the window
    snap = b.snapshot()
    assert (snap["requests"], snap["failures"]) == (4, 4)
    clock.advance(3.0)
    assert b.snapshot()["requests"] == 3
    clock.advance(100.0)
    assert b.snapshot()["requests"] == 0


# ----------------------------------------------------------------------------- open and half-open


def test_open_becomes_half_open_after_open_for() -> None:
    clock = FakeClock()
    b = make(clock)
    trip(b)
    assert b.state == "open"
    assert not b.available()
    assert not b.acquire()
    clock.advance(4.99)
    assert b.state == "open"
    clock.advance(0.01)
    assert b.state == "half_open"
    assert b.available()


def test_half_open_limits_concurrent_probes() -> None:
    clock = FakeClock()
    b = make(clock)
    to_half_open(b, clock)
    assert [b.acquire() for _ in range(4)] == [True, True, True, False]
    assert not b.available()
    assert b.snapshot()["probes_in_flight"] == 3


def test_available_takes_no_probe_slot() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=1)
    to_half_open(b, clock)
    assert all(b.available() for _ in range(5))
    assert b.acquire()
    assert not b.available()


def test_all_probes_succeed_closes_and_clears_the_window() -> None:
    clock = FakeClock()
    b = make(clock)
    to_half_open(b, clock)
    for _ in range(3):
        assert b.acquire()
    b.record(None)
    b.record(None)
    assert b.state == "half_open"
    b.record(None)
    assert b.state == "closed"
    snap = b.snapshot()
    assert (snap["requests"], snap["failures"], snap["probes_in_flight"]) == (0, 0, 0)
    trip(b, 9)  # the window restarted empty: 9 failures are below the volume again
    assert b.state == "closed"


def test_a_probe_failure_reopens_with_a_doubled_period() -> None:
    clock = FakeClock()
    b = make(clock)
    to_half_open(b, clock)
    assert b.acquire()
    b.record(None)
    assert b.acquire()
    b.record("timeout")
    assert b.state == "open"
    assert b.retry_after() == 10.0
    assert b.snapshot()["consecutive_trips"] == 2


def test_ignored_outcome_in_half_open_frees_the_slot_without_counting() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=1)
    to_half_open(b, clock)
    assert b.acquire()
    b.record("rate_limited")
    assert b.state == "half_open"
    assert b.acquire()
    b.record(None)
    assert b.state == "closed"


def test_open_period_growth_is_capped_at_max_open_for() -> None:
    clock = FakeClock()
    b = make(clock, open_for=5.0, max_open_for=60.0, half_open_probes=1)
    trip(b)
    periods = [b.retry_after()]
    for _ in range(6):
        clock.advance(periods[-1] or 0.0)
        assert b.acquire()
        b.record("server_error")
        periods.append(b.retry_after())
    assert periods == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def test_huge_trip_counts_do_not_overflow() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=1)
    trip(b)
    for _ in range(1100):
        clock.advance(60.0)
        assert b.acquire()
        b.record("server_error")
    assert b.retry_after() == 60.0


@pytest.mark.parametrize(("closed_for", "next_period"), [(0.0, 10.0), (9.9, 10.0), (10.0, 5.0)])
def test_consecutive_trips_reset_only_after_a_clean_window(
    closed_for: float, next_period: float
) -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=1)
    to_half_open(b, clock)
    assert b.acquire()
    b.record(None)
    assert b.state == "closed"
    clock.advance(closed_for)
    trip(b)
    assert b.retry_after() == pytest.approx(next_period)


def test_release_frees_a_probe() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=2)
    to_half_open(b, clock)
    assert b.acquire() and b.acquire()
    assert not b.acquire()
    b.release()
    assert b.snapshot()["probes_in_flight"] == 1
    assert b.acquire()
    b.release()
    b.release()
    b.release()  # more releases than probes never go negative
    assert b.snapshot()["probes_in_flight"] == 0


def test_retry_after_values() -> None:
    clock = FakeClock()
    b = make(clock)
    assert b.retry_after() is None
    trip(b)
    assert b.retry_after() == 5.0
    clock.advance(2.0)
    assert b.retry_after() == 3.0
    clock.advance(3.0)
    assert b.retry_after() is None  # half-open now


def test_stale_tickets_are_dropped() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=2)
    slow = b.admit()  # a slow request admitted while closed...
    assert slow is not None
    trip(b)
    clock.advance(5.0)
    probe = b.admit()
    assert probe is not None and probe != slow
    b.record(None, ticket=slow)  # ...finishing during half-open: not a probe
    b.release(ticket=slow)
    snap = b.snapshot()
    assert (snap["probes_in_flight"], snap["probe_successes"]) == (1, 0)
    b.record("server_error", ticket=slow)
    assert b.state == "half_open"
    b.record(None, ticket=probe)
    assert b.snapshot()["probe_successes"] == 1


def test_snapshot_fields() -> None:
    clock = FakeClock()
    b = make(clock)
    for cls in [None] * 6 + ["server_error"] * 4:
        b.record(cls)
    clock.advance(1.5)
    snap = b.snapshot()
    assert snap == {
        "deployment": "dep-a",
        "state": "open",
        "requests": 10,
        "failures": 4,
        "failure_rate": 0.4,
        "consecutive_trips": 1,
        "open_for": 5.0,
        "retry_after": 3.5,
        "probes_in_flight": 0,
        "probe_successes": 0,
    }


def test_events_are_emitted_in_order() -> None:
    clock = FakeClock()
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    b = make(clock, bus, half_open_probes=1)
    trip(b)
    clock.advance(5.0)
    assert b.acquire()
    b.record("server_error")
    clock.advance(10.0)
    assert b.acquire()
    b.record(None)
    assert seen == [
        BreakerChanged("dep-a", "closed", "open", 5.0),
        BreakerChanged("dep-a", "open", "half_open", None),
        BreakerChanged("dep-a", "half_open", "open", 10.0),
        BreakerChanged("dep-a", "open", "half_open", None),
        BreakerChanged("dep-a", "half_open", "closed", None),
    ]


# ----------------------------------------------------------------------------- the policy


async def test_policy_fails_fast_without_calling_inner_when_open() -> None:
    clock = FakeClock()
    b = make(clock)
    provider = ScriptedProvider([ok_response()])
    handler = BreakerPolicy(b).wrap(provider)
    trip(b)
    clock.advance(1.0)
    with pytest.raises(CircuitOpen) as info:
        await handler(req())
    assert provider.calls == []
    err = info.value
    assert err.deployment == "dep-a"
    assert err.retry_after == 4.0
    assert err.http_status == 503
    assert err.headers()["retry-after"] == "4"
    assert "deployment dep-a: circuit open" in err.message


async def test_policy_records_outcomes_from_upstream_failures() -> None:
    clock = FakeClock()
    b = make(clock)
    script: list[Any] = [RateLimited("slow down")] * 20 + [UpstreamBadRequest("bad")] * 20
    script += [ServerError("boom")] * 10
    provider = ScriptedProvider(script, repeat_last=False)
    handler = BreakerPolicy(b).wrap(provider)
    for _ in range(40):
        with pytest.raises((RateLimited, UpstreamBadRequest)):
            await handler(req())
    assert b.snapshot()["requests"] == 0
    for _ in range(10):
        with pytest.raises(ServerError):
            await handler(req())
    assert b.state == "open"
    with pytest.raises(CircuitOpen):
        await handler(req())
    assert len(provider.calls) == 50


async def test_policy_records_successes_and_closes() -> None:
    clock = FakeClock()
    b = make(clock)
    handler = BreakerPolicy(b).wrap(ScriptedProvider([ok_response()]))
    to_half_open(b, clock)
    for _ in range(3):
        assert isinstance(await handler(req()), Response)
    assert b.state == "closed"


async def test_policy_rejects_when_every_probe_is_in_flight() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=1)
    gate = asyncio.Event()

    async def slow(r: Request) -> Response | StreamResponse:
        await gate.wait()
        return ok_response()

    handler = BreakerPolicy(b).wrap(slow)
    to_half_open(b, clock)
    probe = asyncio.create_task(handler(req()))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpen) as info:
        await handler(req())
    assert info.value.retry_after is None
    assert "probe" in info.value.message
    gate.set()
    await probe
    assert b.state == "closed"


async def test_policy_releases_the_probe_on_cancellation() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=2)
    calls = 0

    async def hang(r: Request) -> Response | StreamResponse:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    handler = BreakerPolicy(b).wrap(hang)
    to_half_open(b, clock)
    tasks = [asyncio.create_task(handler(req())) for _ in range(2)]
    await asyncio.sleep(0)
    assert b.snapshot()["probes_in_flight"] == 2
    assert not b.available()
    tasks[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert b.snapshot()["probes_in_flight"] == 1
    assert b.state == "half_open"  # a cancellation is no outcome
    assert b.available()
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert b.snapshot()["probes_in_flight"] == 0
    assert calls == 2


async def test_policy_releases_on_other_exceptions() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=1)
    handler = BreakerPolicy(b).wrap(ScriptedProvider([ValueError("bug")]))
    to_half_open(b, clock)
    with pytest.raises(ValueError):
        await handler(req())
    assert b.state == "half_open"
    assert b.snapshot()["probes_in_flight"] == 0


async def test_policy_drops_the_outcome_of_an_attempt_started_before_a_trip() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=1)
    gate = asyncio.Event()

    async def slow(r: Request) -> Response | StreamResponse:
        await gate.wait()
        raise ServerError("late")

    task = asyncio.create_task(BreakerPolicy(b).wrap(slow)(req()))
    await asyncio.sleep(0)
    to_half_open(b, clock)
    assert b.acquire()
    gate.set()
    with pytest.raises(ServerError):
        await task
    assert b.state == "half_open"  # the late failure is not the probe's outcome
    assert b.snapshot()["probes_in_flight"] == 1
