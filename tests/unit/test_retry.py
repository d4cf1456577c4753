import asyncio
import random
from typing import Any

import pytest

from brace.config import RetryConfig, Timeouts
from brace.errors import (
    AttemptsExhausted,
    ContentFiltered,
    ContextWindowExceeded,
    Overloaded,
    RateLimited,
    ServerError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamFailure,
)
from brace.events import Event, EventBus, Retried
from brace.policies.attempt import AttemptPolicy
from brace.policies.balance import Balancer, DeploymentState
from brace.policies.retry import RetryBudget, RetryPolicy, backoff_delay
from brace.stack import Handler, Request, Response, build_stack
from brace.testing import FakeClock, ScriptedProvider, ok_response

from .conftest import body_of, settle


class Group:
    """retry → balancer → per deployment: attempt → scripted provider (as in the engine)."""

    def __init__(
        self,
        scripts: dict[str, list[Any]],
        *,
        config: RetryConfig | None = None,
        autoadvance: bool = True,
        first: str | None = None,
    ) -> None:
        self.config = config or RetryConfig(max_attempts=3)
        self.clock = FakeClock(autoadvance=autoadvance)
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
        if first is not None:  # make the others look slower so that `first` is picked first
            for s in self.states:
                s.samples = 1  # a latency counts only once a success has been observed
                s.latency = 0.0 if s.id == first else 1.0
        self.budget = RetryBudget(self.config, clock=self.clock)
        self.balancer = Balancer(
            self.states, clock=self.clock, rng=random.Random(0), budget=self.budget
        )
        self.rng_seed = 1
        self.policy = RetryPolicy(
            "g",
            self.config,
            has_alternative=self.balancer.has_alternative,
            budget_exhausted=self.balancer.budget_exhausted,
            clock=self.clock,
            events=bus,
            rng=random.Random(self.rng_seed),
        )
        self.handler: Handler = build_stack(self.balancer, [self.policy])

    def calls(self, d: str) -> int:
        return len(self.providers[d].calls)

    def retried(self) -> list[Retried]:
        return [e for e in self.events if isinstance(e, Retried)]


# ----------------------------------------------------------------------------- where and when


async def test_503_is_retried_at_once_on_another_deployment() -> None:
    g = Group(
        {
            "a": [Overloaded("busy", deployment="a", upstream_status=503)],
            "b": [ok_response("from b")],
        },
        first="a",
    )
    req = Request("chat", "m", {}, request_id="r1")
    res = await g.handler(req)
    assert body_of(res) == "from b"
    assert g.clock.slept == []
    assert (g.calls("a"), g.calls("b")) == (1, 1)
    assert req.state.exclude == {"a"}
    assert req.state.deployment == "b"
    assert [a[:4] for a in req.state.attempts] == [
        ("a", "overloaded", 503, 0.0),
        ("b", None, 200, 0.0),
    ]
    assert g.retried() == [Retried("r1", "g", "a", "overloaded", 0.0, 2)]
    # the retry went at once: waited 0 s; the first attempt was no retry
    assert [a.retry_delay for a in req.state.attempts] == [None, 0.0]


async def test_failed_deployments_are_excluded_from_later_attempts() -> None:
    order: list[str] = []

    def two_failures_then_ok(dep: str) -> Any:
        def answer(req: Request) -> Response | UpstreamFailure:
            order.append(dep)
            if len(order) <= 2:
                return ServerError("boom", deployment=dep, upstream_status=500)
            return ok_response(f"from {dep}")

        return answer

    g = Group({d: [two_failures_then_ok(d)] for d in ("a", "b", "c")})
    req = Request("chat", "m", {})
    res = await g.handler(req)
    assert sorted(order) == ["a", "b", "c"]  # three different deployments
    assert body_of(res) == f"from {order[2]}"
    assert req.state.exclude == set(order[:2])
    assert g.clock.slept == []


@pytest.mark.parametrize(
    "error",
    [
        UpstreamBadRequest("bad", deployment="a", upstream_status=400),
        ContextWindowExceeded("too long", deployment="a", upstream_status=400),
        ContentFiltered("nope", deployment="a", upstream_status=400),
        UpstreamAuthError("bad key", deployment="a", upstream_status=401),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_non_retryable_classes_are_never_retried(error: UpstreamFailure) -> None:
    g = Group({"a": [error], "b": [error]}, first="a")
    req = Request("chat", "m", {})
    with pytest.raises(type(error)) as info:
        await g.handler(req)
    assert info.value is error
    assert (g.calls("a"), g.calls("b")) == (1, 0)
    assert g.retried() == []
    assert g.clock.slept == []


async def test_single_deployment_honours_retry_after_on_the_clock() -> None:
    g = Group(
        {"a": [RateLimited("slow down", deployment="a", retry_after=2.0), ok_response("later")]},
        autoadvance=False,
    )
    req = Request("chat", "m", {}, request_id="r1")
    task = asyncio.create_task(g.handler(req))
    await settle()
    assert g.clock.slept == [2.0]
    assert g.calls("a") == 1
    g.clock.advance(1.999)
    await settle()
    assert not task.done() and g.calls("a") == 1
    g.clock.advance(0.001)
    assert body_of(await task) == "later"
    assert g.calls("a") == 2
    assert g.retried() == [Retried("r1", "g", "a", "rate_limited", 2.0, 2)]
    assert [a.retry_delay for a in req.state.attempts] == [None, 2.0]
    assert req.state.retry_delay is None  # taken by the attempt it belongs to


async def test_retry_after_past_the_deadline_fails_at_once() -> None:
    err = RateLimited("slow down", deployment="a", retry_after=2.0)
    g = Group({"a": [err, ok_response()]})
    start = g.clock.now()
    req = Request("chat", "m", {}, deadline=start + 1.5)
    with pytest.raises(RateLimited) as info:
        await g.handler(req)
    assert info.value is err
    assert info.value.retry_after == 2.0
    assert g.clock.slept == []
    assert g.clock.now() == start
    assert g.calls("a") == 1
    assert g.retried() == []


async def test_backoff_without_retry_after_uses_the_policy_rng() -> None:
    cfg = RetryConfig(max_attempts=3, backoff_base=0.5, backoff_max=10.0)
    g = Group(
        {
            "a": [
                Overloaded("busy", deployment="a"),
                Overloaded("busy", deployment="a"),
                ok_response("third"),
            ]
        },
        config=cfg,
    )
    req = Request("chat", "m", {}, request_id="r1")
    assert body_of(await g.handler(req)) == "third"
    twin = random.Random(g.rng_seed)
    expected = [twin.uniform(0.0, 0.5), twin.uniform(0.0, 1.0)]
    assert g.clock.slept == expected
    assert [e.delay for e in g.retried()] == expected
    assert [e.attempt for e in g.retried()] == [2, 3]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 8])
def test_backoff_delay_is_full_jitter_under_the_cap(n: int) -> None:
    cfg = RetryConfig(backoff_base=0.1, backoff_max=2.0)
    cap = min(2.0, 0.1 * 2 ** (n - 1))
    rng = random.Random(1234 + n)
    samples = [backoff_delay(cfg, n, rng) for _ in range(500)]
    assert all(0.0 <= s <= cap for s in samples)
    assert max(samples) > 0.9 * cap  # the whole range is used...
    assert min(samples) < 0.1 * cap  # ...down to (almost) zero
    # exactly one uniform draw on [0, cap] per call
    assert backoff_delay(cfg, n, random.Random(7)) == random.Random(7).uniform(0.0, cap)


def test_backoff_cap_values() -> None:
    cfg = RetryConfig(backoff_base=0.1, backoff_max=0.5)

    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    caps = [backoff_delay(cfg, n, Top()) for n in range(1, 7)]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])


# ----------------------------------------------------------------------------- how many


async def test_max_attempts_bounds_the_calls() -> None:
    cfg = RetryConfig(max_attempts=4, backoff_base=0.1)
    g = Group({"a": [ServerError("boom", deployment="a", upstream_status=500)]}, config=cfg)
    with pytest.raises(AttemptsExhausted) as info:
        await g.handler(Request("chat", "m", {}))
    assert g.calls("a") == 4
    assert len(info.value.failures) == 4
    assert len(g.clock.slept) == 3
    assert len(g.retried()) == 3


async def test_max_attempts_one_means_no_retry() -> None:
    err = ServerError("boom", deployment="a")
    g = Group({"a": [err], "b": [ok_response()]}, config=RetryConfig(max_attempts=1), first="a")
    with pytest.raises(ServerError) as info:
        await g.handler(Request("chat", "m", {}))
    assert info.value is err
    assert (g.calls("a"), g.calls("b")) == (1, 0)


async def test_attempts_exhausted_carries_every_failure_in_order() -> None:
    e1 = ServerError("first failed", deployment="a", upstream_status=500)
    e2 = RateLimited("second failed", deployment="b", upstream_status=429, retry_after=3.0)
    g = Group({"a": [e1], "b": [e2]}, config=RetryConfig(max_attempts=2), first="a")
    with pytest.raises(AttemptsExhausted) as info:
        await g.handler(Request("chat", "m", {}))
    exc = info.value
    assert exc.failures == [e1, e2]
    assert "[1] a: server_error (HTTP 500)" in exc.message
    assert "[2] b: rate_limited (HTTP 429)" in exc.message
    assert exc.message.startswith("all 2 attempts failed")
    assert exc.http_status == 429
    assert exc.error_class == "rate_limited"
    assert exc.retry_after == 3.0
    assert exc.headers()["retry-after"] == "3"
    assert list(exc.group.exceptions) == [e1, e2]


async def test_attempts_exhausted_status_is_last_failure() -> None:
    e1 = RateLimited("limited", deployment="a", upstream_status=429)
    e2 = Overloaded("busy", deployment="b", upstream_status=503)
    e3 = UpstreamBadRequest("bad", deployment="a", upstream_status=400)
    g = Group({"a": [e1, e3], "b": [e2]}, config=RetryConfig(max_attempts=5), first="a")
    with pytest.raises(AttemptsExhausted) as info:
        await g.handler(Request("chat", "m", {}))
    # the 400 is not retryable: it ends the request and its status is reported
    assert info.value.failures == [e1, e2, e3]
    assert info.value.http_status == 400
    assert (g.calls("a"), g.calls("b")) == (2, 1)


# ----------------------------------------------------------------------------- budget


def test_budget_allows_ratio_of_requests_in_the_window() -> None:
    clock = FakeClock()
    cfg = RetryConfig(budget_ratio=0.2, budget_min_retries_per_second=0, budget_window=10.0)
    budget = RetryBudget(cfg, clock=clock)
    for _ in range(10):
        budget.deposit("a")
    assert [budget.try_withdraw("a") for _ in range(3)] == [True, True, False]
    assert budget.snapshot("a") == {"requests": 10, "retries": 2, "allowed": 2.0}
    # another deployment has its own budget
    assert budget.try_withdraw("b") is False
    # still inside the window
    clock.advance(9.0)
    assert budget.try_withdraw("a") is False
    # the window slides: the old requests and retries age out
    clock.advance(1.0)
    assert budget.snapshot("a") == {"requests": 0, "retries": 0, "allowed": 0.0}
    for _ in range(10):
        budget.deposit("a")
    assert [budget.try_withdraw("a") for _ in range(3)] == [True, True, False]


def test_budget_min_retries_lets_a_quiet_deployment_retry() -> None:
    budget = RetryBudget(
        RetryConfig(budget_ratio=0.0, budget_min_retries_per_second=0.2), clock=FakeClock()
    )
    assert [budget.try_withdraw("a") for _ in range(3)] == [True, True, False]


def test_budget_window_slides_bucket_by_bucket() -> None:
    clock = FakeClock()
    cfg = RetryConfig(budget_ratio=1.0, budget_min_retries_per_second=0, budget_window=10.0)
    budget = RetryBudget(cfg, clock=clock)
    budget.deposit("a")  # t=0
    clock.advance(5.0)
    budget.deposit("a")  # t=5
    assert budget.snapshot("a")["requests"] == 2
    clock.advance(5.0)  # t=10: the first deposit left the window
    assert budget.snapshot("a")["requests"] == 1
    clock.advance(5.0)
    assert budget.snapshot("a")["requests"] == 0


async def test_budget_caps_retries_through_the_stack() -> None:
    cfg = RetryConfig(
        max_attempts=3, budget_ratio=0.2, budget_min_retries_per_second=0, budget_window=10.0
    )

    def first_attempt_fails(req: Request) -> Response | UpstreamFailure:
        if req.state.retry:
            return ok_response()
        return Overloaded("busy", deployment="a")

    g = Group({"a": [first_attempt_fails]}, config=cfg)

    async def succeeded() -> bool:
        try:
            await g.handler(Request("chat", "m", {}))
        except Overloaded:
            return False
        return True

    outcomes = [await succeeded() for _ in range(10)]
    # retries ≤ 0.2 × requests: the 1st and the 6th request may retry
    assert outcomes == [True, False, False, False, False, True, False, False, False, False]
    assert g.calls("a") == 12
    assert g.budget.snapshot("a") == {"requests": 10, "retries": 2, "allowed": 2.0}
    # the window slides: old requests and retries age out, new ones may retry again
    g.clock.advance(cfg.budget_window)
    assert g.budget.snapshot("a") == {"requests": 0, "retries": 0, "allowed": 0.0}
    assert await succeeded() is True


async def test_budget_exhausted_stops_retrying_on_another_deployment() -> None:
    cfg = RetryConfig(max_attempts=3, budget_ratio=0.0, budget_min_retries_per_second=0)
    err = Overloaded("busy", deployment="a")
    g = Group({"a": [err], "b": [ok_response()]}, config=cfg, first="a")
    with pytest.raises(Overloaded) as info:
        await g.handler(Request("chat", "m", {}))
    assert info.value is err
    assert (g.calls("a"), g.calls("b")) == (1, 0)


async def test_retry_is_charged_to_the_deployment_that_takes_it() -> None:
    g = Group(
        {"a": [Overloaded("busy", deployment="a")], "b": [ok_response()]},
        config=RetryConfig(max_attempts=2, budget_ratio=0.0, budget_min_retries_per_second=0.1),
        first="a",
    )
    await g.handler(Request("chat", "m", {}))
    assert g.budget.snapshot("a") == {"requests": 1, "retries": 0, "allowed": 1.0}
    assert g.budget.snapshot("b") == {"requests": 0, "retries": 1, "allowed": 1.0}


async def test_no_budget_fails_at_once_without_sleeping() -> None:
    cfg = RetryConfig(max_attempts=3, budget_ratio=0.0, budget_min_retries_per_second=0)
    err = RateLimited("slow down", deployment="a", retry_after=2.0)
    g = Group({"a": [err, ok_response()]}, config=cfg)
    with pytest.raises(RateLimited) as info:
        await g.handler(Request("chat", "m", {}))
    assert info.value is err
    assert g.calls("a") == 1
    assert g.clock.slept == []
    assert g.retried() == []


async def test_alternative_without_budget_does_not_skip_retry_after() -> None:
    cfg = RetryConfig(max_attempts=2, budget_ratio=1.0, budget_min_retries_per_second=0)
    g = Group(
        {
            "a": [RateLimited("slow down", deployment="a", retry_after=2.0), ok_response("a")],
            "b": [ok_response("b")],  # never had a first attempt: no retry budget
        },
        config=cfg,
        first="a",
    )
    res = await g.handler(Request("chat", "m", {}))
    assert body_of(res) == "a"
    assert (g.calls("a"), g.calls("b")) == (2, 0)
    assert g.clock.slept == [2.0]


async def test_success_on_first_attempt_deposits_to_the_budget() -> None:
    g = Group({"a": [ok_response()]})
    for _ in range(3):
        await g.handler(Request("chat", "m", {}))
    assert g.budget.snapshot("a")["requests"] == 3
    assert g.budget.snapshot("a")["retries"] == 0
