import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import pytest

from brace.config import RetryConfig
from brace.errors import (
    CircuitOpen,
    RateLimited,
    RetryBudgetExhausted,
    ServerError,
    UpstreamFailure,
)
from brace.policies.balance import Balancer, DeploymentState
from brace.policies.retry import RetryBudget
from brace.stack import Request, RequestState, Response, StreamResponse
from brace.testing import FakeClock, ScriptedProvider, ok_response, ok_stream


class StubBreaker:
    def __init__(self, available: bool = True, retry_after: float | None = None) -> None:
        self.is_available = available
        self.wait = retry_after

    def available(self) -> bool:
        return self.is_available

    def retry_after(self) -> float | None:
        return self.wait

    def snapshot(self) -> dict[str, Any]:
        return {"state": "closed" if self.is_available else "open"}


def state(
    id: str,
    script: list[Any] | None = None,
    *,
    weight: float = 1.0,
    latency: float | None = None,
    breaker: StubBreaker | None = None,
) -> tuple[DeploymentState, ScriptedProvider]:
    """``latency``: as if learnt from one success; ``None``: no success observed yet."""
    provider = ScriptedProvider(script or [ok_response(f"from {id}")], id=id)
    s = DeploymentState(id, provider, weight=weight, breaker=breaker)  # type: ignore[arg-type]
    if latency is not None:
        s.latency = latency
        s.samples = 1
    return s, provider


def shares(balancer: Balancer, n: int, exclude: frozenset[str] = frozenset()) -> dict[str, float]:
    picks: Counter[str] = Counter()
    for _ in range(n):
        picked = balancer.pick(exclude)
        assert picked is not None
        picks[picked.id] += 1
    return {k: v / n for k, v in picks.items()}


def req(*, stream: bool = False, **fields: Any) -> Request:
    return Request("chat", "m", {}, stream, state=RequestState(**fields))


# ----------------------------------------------------------------------------- the pick


def test_needs_at_least_one_deployment() -> None:
    with pytest.raises(ValueError):
        Balancer([], clock=FakeClock())


class FlatCost(DeploymentState):
    __slots__ = ()

    def cost(self, *args: Any) -> float:
        return 1.0


def test_weighted_draw_decides_between_equal_costs() -> None:
    a = FlatCost("a", ScriptedProvider([ok_response()]), weight=3.0)
    b = FlatCost("b", ScriptedProvider([ok_response()]), weight=1.0)
    got = shares(Balancer([a, b], clock=FakeClock(), rng=random.Random(42)), 4000)
    assert got["a"] == pytest.approx(0.75, abs=0.05)


def test_weights_give_traffic_shares_at_equal_load_and_latency() -> None:
    a, _ = state("a", weight=3.0, latency=0.2)
    b, _ = state("b", weight=1.0, latency=0.2)
    got = shares(Balancer([a, b], clock=FakeClock(), rng=random.Random(42)), 4000)
    assert got.get("a", 0.0) == pytest.approx(0.75, abs=0.05)


def test_equal_weights_equal_costs_spread_evenly() -> None:
    states = [state(d)[0] for d in ("a", "b", "c")]
    got = shares(Balancer(states, clock=FakeClock(), rng=random.Random(7)), 3000)
    for d in ("a", "b", "c"):
        assert got[d] == pytest.approx(1 / 3, abs=0.05)


def test_lower_latency_wins_the_pair() -> None:
    a, _ = state("a", latency=0.1)
    b, _ = state("b", latency=0.2)
    assert shares(Balancer([a, b], clock=FakeClock(), rng=random.Random(1)), 200) == {"a": 1.0}


def test_outstanding_raises_the_cost() -> None:
    a, _ = state("a", latency=0.1)
    b, _ = state("b", latency=0.1)
    a.outstanding = 1
    assert a.cost() == pytest.approx(2 * b.cost())
    assert shares(Balancer([a, b], clock=FakeClock(), rng=random.Random(1)), 200) == {"b": 1.0}


def test_exclusion_respected_when_an_alternative_exists() -> None:
    states = [state(d)[0] for d in ("a", "b", "c")]
    got = shares(Balancer(states, clock=FakeClock(), rng=random.Random(3)), 300, frozenset({"a"}))
    assert set(got) == {"b", "c"}


def test_exclusion_ignored_when_nothing_else_is_available() -> None:
    a, _ = state("a")
    b, _ = state("b", breaker=StubBreaker(available=False))
    balancer = Balancer([a, b], clock=FakeClock(), rng=random.Random(3))
    assert shares(balancer, 50, frozenset({"a"})) == {"a": 1.0}
    # every deployment excluded: all available ones are candidates again
    c, _ = state("c")
    balancer = Balancer([a, b, c], clock=FakeClock(), rng=random.Random(3))
    assert set(shares(balancer, 200, frozenset({"a", "b", "c"}))) == {"a", "c"}


def test_single_deployment_ignores_exclusion() -> None:
    a, _ = state("a")
    balancer = Balancer([a], clock=FakeClock())
    assert balancer.pick(frozenset({"a"})) is a


def test_unavailable_breaker_is_skipped() -> None:
    # much slower, but the only one available
    a, _ = state("a", breaker=StubBreaker(available=True), latency=5.0)
    b, _ = state("b", breaker=StubBreaker(available=False), latency=0.0)
    balancer = Balancer([a, b], clock=FakeClock(), rng=random.Random(3))
    assert shares(balancer, 50) == {"a": 1.0}
    assert balancer.has_alternative(set()) is True
    assert balancer.has_alternative({"a"}) is False


async def test_all_unavailable_raises_circuit_open_with_soonest_retry_after() -> None:
    a, pa = state("a", breaker=StubBreaker(available=False, retry_after=3.0))
    b, pb = state("b", breaker=StubBreaker(available=False, retry_after=1.5))
    c, pc = state("c", breaker=StubBreaker(available=False, retry_after=None))
    balancer = Balancer([a, b, c], clock=FakeClock())
    with pytest.raises(CircuitOpen) as info:
        await balancer(req())
    assert info.value.retry_after == 1.5
    assert info.value.deployment is None
    assert info.value.http_status == 503
    assert (pa.calls, pb.calls, pc.calls) == ([], [], [])


async def test_single_unavailable_deployment_names_itself() -> None:
    a, pa = state("a", breaker=StubBreaker(available=False, retry_after=2.0))
    balancer = Balancer([a], clock=FakeClock())
    assert balancer.pick() is None
    with pytest.raises(CircuitOpen) as info:
        await balancer(req())
    assert info.value.deployment == "a"
    assert info.value.retry_after == 2.0
    assert pa.calls == []


# ----------------------------------------------------------------------------- calling


async def test_calls_the_picked_deployment_and_records_it() -> None:
    a, pa = state("a", latency=0.1)
    b, pb = state("b", latency=0.2)
    balancer = Balancer([a, b], clock=FakeClock())
    r = req()
    res = await balancer(r)
    assert isinstance(res, Response) and res.json()["choices"][0]["message"]["content"] == "from a"
    assert r.state.deployment == "a"
    assert pa.calls == [r] and pb.calls == []


async def test_outstanding_while_a_json_call_is_in_flight() -> None:
    gate = asyncio.Event()

    async def slow(r: Request) -> Response:
        await gate.wait()
        return ok_response()

    a, _ = state("a", [slow])
    balancer = Balancer([a], clock=FakeClock())
    task = asyncio.create_task(balancer(req()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert a.outstanding == 1
    gate.set()
    await task
    assert a.outstanding == 0


async def test_outstanding_released_on_failure_and_cancellation() -> None:
    a, _ = state("a", [ServerError("boom", deployment="a")])
    balancer = Balancer([a], clock=FakeClock())
    with pytest.raises(ServerError):
        await balancer(req())
    assert a.outstanding == 0

    async def hang(r: Request) -> Response:
        await asyncio.Event().wait()
        raise AssertionError

    b, _ = state("b", [hang])
    balancer = Balancer([b], clock=FakeClock())
    task = asyncio.create_task(balancer(req()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert b.outstanding == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.outstanding == 0


async def test_stream_counts_as_outstanding_until_closed() -> None:
    closed: list[bool] = []
    upstream = ok_stream(["x", "y"])

    async def close() -> None:
        closed.append(True)

    upstream._close = close
    a, _ = state("a", [upstream])
    balancer = Balancer([a], clock=FakeClock())
    res = await balancer(req(stream=True))
    assert isinstance(res, StreamResponse)
    assert a.outstanding == 1
    assert len([c async for c in res]) == 2
    assert a.outstanding == 1  # read to the end, but not closed yet
    await res.aclose()
    assert a.outstanding == 0
    assert closed == [True]  # the upstream was released
    await res.aclose()  # idempotent: no double decrement
    assert a.outstanding == 0


# ----------------------------------------------------------------------------- learning


async def test_latency_ewma_learns_from_successes() -> None:
    clock = FakeClock()

    def takes(seconds: float) -> Any:
        def answer(r: Request) -> Response:
            clock.advance(seconds)
            return ok_response()

        return answer

    a, _ = state("a", [takes(1.0), takes(1.0), takes(0.0)])
    balancer = Balancer([a], clock=clock)
    latencies = []
    for _ in range(3):
        await balancer(req())
        latencies.append(a.latency)
    # the first success sets the latency, the next ones move it by alpha = 0.2
    assert latencies == pytest.approx([1.0, 1.0, 0.8])
    assert a.samples == 3
    assert a.errors == 0.0


async def test_failures_do_not_change_latency_but_count_as_errors() -> None:
    clock = FakeClock()

    def slow_failure(r: Request) -> UpstreamFailure:
        clock.advance(5.0)
        return ServerError("boom", deployment="a")

    a, _ = state("a", [slow_failure], latency=1.0)
    balancer = Balancer([a], clock=clock)
    for _ in range(2):
        with pytest.raises(ServerError):
            await balancer(req())
    assert a.latency == 1.0
    assert a.samples == 1
    assert a.errors == pytest.approx(0.36)
    assert a.snapshot()["ewma_error_rate"] == 0.36


async def test_rate_limits_and_circuit_open_are_not_errors() -> None:
    a, _ = state(
        "a",
        [RateLimited("slow down", deployment="a"), CircuitOpen("open", deployment="a")],
        latency=1.0,
    )
    balancer = Balancer([a], clock=FakeClock())
    with pytest.raises(RateLimited):
        await balancer(req())
    with pytest.raises(CircuitOpen):
        await balancer(req())
    assert a.errors == 0.0


async def test_rate_limit_does_not_make_a_deployment_look_fast() -> None:
    a, _ = state("a", [RateLimited("slow down", deployment="a")], latency=1.0)
    balancer = Balancer([a], clock=FakeClock())
    with pytest.raises(RateLimited):
        await balancer(req())
    assert a.latency == 1.0
    assert a.samples == 1


async def test_errors_do_not_starve_a_deployment_before_its_breaker_decides() -> None:
    a, _ = state("a", [ServerError("boom", deployment="a")], latency=1.0)
    b, _ = state("b", latency=1.0)
    balancer = Balancer([a, b], clock=FakeClock(), rng=random.Random(5))
    for _ in range(5):
        with pytest.raises(ServerError):
            await balancer(req(exclude={"b"}))
    assert a.errors > 0.6
    assert a.cost() == b.cost()
    assert shares(balancer, 2000)["a"] == pytest.approx(0.5, abs=0.05)


async def test_a_deployment_that_only_fails_fast_does_not_look_fast() -> None:
    clock = FakeClock()

    def ok_after(seconds: float) -> Any:
        def answer(r: Request) -> Response:
            clock.advance(seconds)
            return ok_response()

        return answer

    a, pa = state("a", [ServerError("boom", deployment="a")])
    b, _ = state("b", [ok_after(0.5)])
    balancer = Balancer([a, b], clock=clock, rng=random.Random(5))
    for _ in range(40):
        with contextlib.suppress(ServerError):
            await balancer(req())
    assert len(pa.calls) <= 24  # at most ~its fair share


# ----------------------------------------------------------------------------- retry budget


def budget(clock: FakeClock, **kw: Any) -> RetryBudget:
    cfg = RetryConfig(**{"budget_ratio": 0.0, "budget_min_retries_per_second": 0.0, **kw})
    return RetryBudget(cfg, clock=clock)


async def test_first_attempt_is_deposited_to_the_picked_deployment() -> None:
    clock = FakeClock()
    bud = budget(clock, budget_ratio=0.5)
    a, _ = state("a")
    balancer = Balancer([a], clock=clock, budget=bud)
    await balancer(req())
    await balancer(req(retry=False))
    assert bud.snapshot("a") == {"requests": 2, "retries": 0, "allowed": 1.0}


@pytest.mark.parametrize("flag", ["retry", "hedge"])
async def test_retry_or_hedge_goes_where_budget_remains_and_is_charged(flag: str) -> None:
    clock = FakeClock()
    bud = budget(clock, budget_ratio=1.0)
    a, pa = state("a", latency=0.1)  # cheaper, but without budget
    b, pb = state("b", latency=0.9)
    bud.deposit("b")
    balancer = Balancer([a, b], clock=clock, rng=random.Random(0), budget=bud)
    r = req(**{flag: True})
    await balancer(r)
    assert r.state.deployment == "b"
    assert (len(pa.calls), len(pb.calls)) == (0, 1)
    assert bud.snapshot("b")["retries"] == 1
    assert bud.snapshot("a")["retries"] == 0


async def test_no_budget_anywhere_refuses_the_retry() -> None:
    clock = FakeClock()
    a, pa = state("a")
    b, pb = state("b")
    balancer = Balancer([a, b], clock=clock, budget=budget(clock))
    with pytest.raises(RetryBudgetExhausted) as info:
        await balancer(req(retry=True))
    assert info.value.http_status == 503
    assert info.value.retryable is False
    assert (pa.calls, pb.calls) == ([], [])
    await balancer(req(retry=False))  # a first attempt needs no budget
    assert len(pa.calls) + len(pb.calls) == 1


async def test_open_breakers_win_over_budget_refusal() -> None:
    clock = FakeClock()
    a, _ = state("a", breaker=StubBreaker(available=False, retry_after=4.0))
    balancer = Balancer([a], clock=clock, budget=budget(clock))
    with pytest.raises(CircuitOpen) as info:
        await balancer(req(retry=True))
    assert info.value.retry_after == 4.0
