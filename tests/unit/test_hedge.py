import asyncio
import random
from typing import Any

import pytest

from brace.config import HedgeConfig, RetryConfig, Timeouts
from brace.errors import (
    AttemptsExhausted,
    ContextWindowExceeded,
    Overloaded,
    ServerError,
    UpstreamFailure,
)
from brace.events import AttemptEnded, Event, EventBus, Hedged, Retried
from brace.policies.attempt import AttemptPolicy
from brace.policies.balance import Balancer, DeploymentState
from brace.policies.hedge import HedgePolicy, LatencyTracker
from brace.policies.retry import RetryBudget, RetryPolicy
from brace.stack import Handler, Request, Response, build_stack
from brace.testing import FakeClock, ScriptedProvider, ok_response

from .conftest import body_of, settle


class Slow:
    """A provider answer that waits for ``gate``, and notices when it is cancelled."""

    def __init__(self, answer: Any) -> None:
        self.gate = asyncio.Event()
        self.answer = answer
        self.cancelled = False

    async def __call__(self, req: Request) -> Response:
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if isinstance(self.answer, BaseException):
            raise self.answer
        assert isinstance(self.answer, Response)
        return self.answer


class Group:
    """hedge → balancer → per deployment: attempt → scripted provider (as in the engine),
    optionally with the retry policy on top."""

    def __init__(
        self,
        scripts: dict[str, list[Any]],
        *,
        hedge: HedgeConfig | None = None,
        retry: RetryConfig | None = None,
        with_retry: bool = False,
        tracker: LatencyTracker | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.providers = {d: ScriptedProvider(s, id=d) for d, s in scripts.items()}
        self.states = [
            DeploymentState(
                d,
                build_stack(p, [AttemptPolicy(d, "g", Timeouts(), clock=self.clock, events=bus)]),
            )
            for d, p in self.providers.items()
        ]
        for i, s in enumerate(self.states):  # the first deployment takes the first attempt
            s.samples = 1  # a latency counts only once a success has been observed
            s.latency = 0.0 if i == 0 else 1.0
        retry = retry or RetryConfig(max_attempts=2)
        self.budget = RetryBudget(retry, clock=self.clock)
        self.balancer = Balancer(
            self.states, clock=self.clock, rng=random.Random(0), budget=self.budget
        )
        self.hedge = HedgePolicy(
            "g",
            hedge or HedgeConfig(enabled=True, after=0.5),
            has_alternative=self.balancer.has_alternative,
            clock=self.clock,
            events=bus,
            tracker=tracker,
        )
        layers: list[Any] = [self.hedge]
        if with_retry:
            layers.insert(
                0,
                RetryPolicy(
                    "g",
                    retry,
                    has_alternative=self.balancer.has_alternative,
                    budget_exhausted=self.balancer.budget_exhausted,
                    clock=self.clock,
                    events=bus,
                    rng=random.Random(1),
                ),
            )
        self.handler: Handler = build_stack(self.balancer, layers)

    def calls(self, d: str) -> int:
        return len(self.providers[d].calls)

    def hedged(self) -> list[Hedged]:
        return [e for e in self.events if isinstance(e, Hedged)]


# ----------------------------------------------------------------------------- fixed delay


async def test_slow_primary_is_hedged_and_the_hedge_wins() -> None:
    slow = Slow(ok_response("from a"))
    g = Group({"a": [slow], "b": [ok_response("from b")]})
    req = Request("chat", "m", {}, request_id="r1")
    task = asyncio.create_task(g.handler(req))
    await settle()
    assert (g.calls("a"), g.calls("b")) == (1, 0)
    g.clock.advance(0.49)
    await settle()
    assert g.calls("b") == 0 and not task.done()
    g.clock.advance(0.01)
    res = await task
    assert body_of(res) == "from b"
    assert (g.calls("a"), g.calls("b")) == (1, 1)
    assert slow.cancelled
    assert req.state.hedged is True
    assert req.state.deployment == "b"
    assert g.hedged() == [Hedged("r1", "g", 0.5)]
    assert [a[:4] for a in req.state.attempts] == [("b", None, 200, 0.0)]
    ended = [e for e in g.events if isinstance(e, AttemptEnded)]
    assert ended == [AttemptEnded("r1", "g", "b", None, 200, 0.0, hedge=True)]
    # the cancelled primary released its slot in the balancer
    assert [s.outstanding for s in g.states] == [0, 0]
    # the first attempt is deposited to a, the hedge is charged to b, which took it
    assert g.budget.snapshot("a") == {"requests": 1, "retries": 0, "allowed": 100.2}
    assert g.budget.snapshot("b") == {"requests": 0, "retries": 1, "allowed": 100.0}


async def test_hedge_excludes_the_slow_deployment() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    def first_call_hangs(dep: str) -> Any:
        async def answer(req: Request) -> Response:
            order.append(dep)
            if len(order) == 1:
                await gate.wait()
            return ok_response(f"from {dep}")

        return answer

    g = Group({d: [first_call_hangs(d)] for d in ("a", "b", "c")})
    req = Request("chat", "m", {})
    task = asyncio.create_task(g.handler(req))
    await settle()
    g.clock.advance(0.5)
    res = await task
    slow, fast = order
    assert slow != fast
    assert body_of(res) == f"from {fast}"
    second = g.providers[fast].calls[0]
    assert second.state.exclude == {slow}
    assert second.state.hedge is True
    assert g.providers[slow].calls[0].state.exclude is None


async def test_primary_that_answers_after_the_hedge_started_still_wins() -> None:
    slow_a = Slow(ok_response("from a"))
    slow_b = Slow(ok_response("from b"))
    g = Group({"a": [slow_a], "b": [slow_b]})
    req = Request("chat", "m", {})
    task = asyncio.create_task(g.handler(req))
    await settle()
    g.clock.advance(0.5)
    await settle()
    assert g.calls("b") == 1
    slow_a.gate.set()
    assert body_of(await task) == "from a"
    assert slow_b.cancelled
    assert req.state.deployment == "a"
    assert req.state.hedged is False


async def test_fast_primary_is_not_hedged() -> None:
    g = Group({"a": [ok_response("from a")], "b": [ok_response("from b")]})
    req = Request("chat", "m", {})
    res = await g.handler(req)
    assert body_of(res) == "from a"
    assert g.calls("b") == 0
    assert g.hedged() == []
    assert g.clock.sleepers == 0  # the hedge timer was cancelled
    g.clock.advance(10.0)
    await settle()
    assert g.calls("b") == 0
    assert req.state.hedged is False


async def test_no_alternative_deployment_no_hedge() -> None:
    slow = Slow(ok_response("from a"))
    g = Group({"a": [slow]})
    task = asyncio.create_task(g.handler(Request("chat", "m", {})))
    await settle()
    g.clock.advance(5.0)
    await settle()
    assert g.calls("a") == 1 and not task.done()
    slow.gate.set()
    assert body_of(await task) == "from a"
    assert g.hedged() == []


async def test_budget_exhausted_no_hedge() -> None:
    slow = Slow(ok_response("from a"))
    g = Group(
        {"a": [slow], "b": [ok_response("from b")]},
        retry=RetryConfig(budget_ratio=0.0, budget_min_retries_per_second=0),
    )
    req = Request("chat", "m", {})
    task = asyncio.create_task(g.handler(req))
    await settle()
    g.clock.advance(5.0)
    await settle()
    assert g.calls("b") == 0 and not task.done()
    slow.gate.set()
    assert body_of(await task) == "from a"
    assert req.state.hedged is False


async def test_budget_exhausted_emits_no_hedged_event() -> None:
    slow = Slow(ok_response("from a"))
    g = Group(
        {"a": [slow], "b": [ok_response("from b")]},
        retry=RetryConfig(budget_ratio=0.0, budget_min_retries_per_second=0),
    )
    task = asyncio.create_task(g.handler(Request("chat", "m", {})))
    await settle()
    g.clock.advance(5.0)
    await settle()
    slow.gate.set()
    assert body_of(await task) == "from a"
    assert g.calls("b") == 0
    assert g.hedged() == []


async def test_no_hedge_when_the_deadline_comes_first() -> None:
    slow = Slow(ok_response("from a"))
    g = Group({"a": [slow], "b": [ok_response("from b")]})
    req = Request("chat", "m", {}, deadline=g.clock.now() + 0.4)
    task = asyncio.create_task(g.handler(req))
    await settle()
    assert g.clock.sleepers == 1  # only the attempt's own timeout, no hedge timer
    slow.gate.set()
    assert body_of(await task) == "from a"
    assert g.calls("b") == 0


async def test_both_fail_attempts_exhausted() -> None:
    e_a = Overloaded("busy", deployment="a", upstream_status=503)
    e_b = ServerError("boom", deployment="b", upstream_status=500)
    slow = Slow(e_a)
    g = Group({"a": [slow], "b": [e_b]})
    task = asyncio.create_task(g.handler(Request("chat", "m", {})))
    await settle()
    g.clock.advance(0.5)
    await settle()
    assert g.calls("b") == 1 and not task.done()  # b failed: a's answer is awaited
    slow.gate.set()
    with pytest.raises(AttemptsExhausted) as info:
        await task
    assert info.value.failures == [e_b, e_a]
    assert info.value.http_status == 503


async def test_primary_fails_then_hedge_answers() -> None:
    slow_a = Slow(Overloaded("busy", deployment="a"))
    slow_b = Slow(ok_response("from b"))
    g = Group({"a": [slow_a], "b": [slow_b]})
    req = Request("chat", "m", {})
    task = asyncio.create_task(g.handler(req))
    await settle()
    g.clock.advance(0.5)
    await settle()
    slow_a.gate.set()
    await settle()
    assert not task.done()
    slow_b.gate.set()
    assert body_of(await task) == "from b"
    assert req.state.hedged is True


# ----------------------------------------------------------------------------- p95


def test_latency_tracker_p95() -> None:
    t = LatencyTracker()
    for _ in range(19):
        t.add(0.1)
    assert t.p95 is None  # not enough samples yet
    t.add(2.0)
    assert t.p95 == 2.0  # ordered[int(0.95 * 20)] of 20 samples

    t = LatencyTracker(size=100, every=100)
    for i in range(1, 101):
        t.add(i / 100)
    assert t.p95 == 0.96


def test_latency_tracker_keeps_the_last_size_samples() -> None:
    t = LatencyTracker(size=20, every=20)
    for _ in range(20):
        t.add(5.0)
    assert t.p95 == 5.0
    for _ in range(20):
        t.add(0.2)
    assert t.p95 == 0.2


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], None),  # fewer than 20 samples: no hedge at all
        ([0.3] * 19, None),
        ([0.3] * 20, 0.3),
        ([0.01] * 20, 0.1),  # bounded below by min_after
        ([30.0] * 20, 2.0),  # bounded above by max_after
    ],
)
def test_p95_delay_is_bounded(samples: list[float], expected: float | None) -> None:
    tracker = LatencyTracker()
    for s in samples:
        tracker.add(s)
    policy = HedgePolicy(
        "g",
        HedgeConfig(enabled=True, after="p95", min_after=0.1, max_after=2.0),
        has_alternative=lambda exclude: True,
        clock=FakeClock(),
        events=EventBus(),
        tracker=tracker,
    )
    assert policy.delay() == expected


def test_fixed_delay_ignores_the_tracker() -> None:
    tracker = LatencyTracker()
    for _ in range(20):
        tracker.add(9.0)
    policy = HedgePolicy(
        "g",
        HedgeConfig(enabled=True, after=0.25),
        has_alternative=lambda exclude: True,
        clock=FakeClock(),
        events=EventBus(),
        tracker=tracker,
    )
    assert policy.delay() == 0.25


async def test_p95_mode_hedges_after_observed_latency() -> None:
    tracker = LatencyTracker()
    for _ in range(20):
        tracker.add(0.3)
    slow = Slow(ok_response("from a"))
    g = Group(
        {"a": [slow], "b": [ok_response("from b")]},
        hedge=HedgeConfig(enabled=True, after="p95", min_after=0.05, max_after=5.0),
        tracker=tracker,
    )
    req = Request("chat", "m", {}, request_id="r1")
    task = asyncio.create_task(g.handler(req))
    await settle()
    g.clock.advance(0.29)
    await settle()
    assert g.calls("b") == 0
    g.clock.advance(0.01)
    assert body_of(await task) == "from b"
    assert g.hedged() == [Hedged("r1", "g", 0.3)]


async def test_successful_attempts_feed_the_tracker() -> None:
    async def takes_a_while(req: Request) -> Response:
        clock.advance(0.01)
        return ok_response()

    g = Group(
        {"a": [takes_a_while], "b": [takes_a_while]},
        hedge=HedgeConfig(enabled=True, after="p95", min_after=0.05),
    )
    clock = g.clock
    for _ in range(20):
        await g.handler(Request("chat", "m", {}))
    assert g.hedge.tracker.p95 == pytest.approx(0.01)


# ----------------------------------------------------------------------------- with retry


async def test_retry_over_hedge_flattens_failures() -> None:
    e_a = Overloaded("busy", deployment="a", upstream_status=503)
    e_b = ServerError("boom", deployment="b", upstream_status=500)
    slow = Slow(e_a)
    # backoff_base=0: the retry is not delayed whichever deployment it goes to
    cfg = RetryConfig(max_attempts=2, backoff_base=0.0)
    g = Group({"a": [slow], "b": [e_b]}, with_retry=True, retry=cfg)
    task = asyncio.create_task(g.handler(Request("chat", "m", {})))
    await settle()
    g.clock.advance(0.5)  # hedge to b, which fails at once
    await settle()
    slow.gate.set()  # a fails too: the hedge raises AttemptsExhausted([e_b, e_a])
    with pytest.raises(AttemptsExhausted) as info:
        await task
    failures = info.value.failures
    assert all(not isinstance(f, AttemptsExhausted) for f in failures)
    assert len(failures) == 3
    assert failures[:2] == [e_b, e_a]
    third = failures[2]
    assert f"[3] {third.deployment}: {third.error_class}" in info.value.message
    assert g.calls("a") + g.calls("b") == 3


async def test_retry_over_hedge_excludes_every_deployment_that_failed() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    def script(dep: str) -> Any:
        async def answer(req: Request) -> Response | UpstreamFailure:
            order.append(dep)
            if len(order) == 1:  # the primary: slow, then overloaded
                await gate.wait()
                return Overloaded("busy", deployment=dep, upstream_status=503)
            if len(order) == 2:  # the hedge fails at once, though its deployment looks fastest
                next(s for s in g.states if s.id == dep).latency = 0.0
                return ServerError("boom", deployment=dep, upstream_status=500)
            return ok_response(f"from {dep}")

        return answer

    g = Group({d: [script(d)] for d in ("a", "b", "c")}, with_retry=True)
    req = Request("chat", "m", {})
    task = asyncio.create_task(g.handler(req))
    await settle()
    g.clock.advance(0.5)  # hedge, which fails at once
    await settle()
    assert len(order) == 2 and not task.done()
    gate.set()  # the primary fails too: the retry must go to the third deployment
    res = await task
    primary, hedged, third = order
    assert len({primary, hedged, third}) == 3
    assert body_of(res) == f"from {third}"
    assert req.state.exclude == {primary, hedged}


async def test_retry_over_hedge_does_not_retry_non_retryable_failures() -> None:
    e_a = ContextWindowExceeded("too long", deployment="a", upstream_status=400)
    e_b = ContextWindowExceeded("too long", deployment="b", upstream_status=400)
    slow = Slow(e_a)
    g = Group({"a": [slow], "b": [e_b]}, with_retry=True, retry=RetryConfig(max_attempts=3))
    task = asyncio.create_task(g.handler(Request("chat", "m", {})))
    await settle()
    g.clock.advance(0.5)  # hedge to b, which fails at once
    await settle()
    slow.gate.set()
    with pytest.raises(AttemptsExhausted) as info:
        await task
    assert info.value.failures == [e_b, e_a]
    assert (g.calls("a"), g.calls("b")) == (1, 1)
    assert not [e for e in g.events if isinstance(e, Retried)]
