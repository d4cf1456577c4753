"""Pacing on a fake clock: a real :class:`LocalLimiter` and a scripted provider.

The limits are small round numbers so that the waits are exact: ``rpm=600`` is one
request every 0.1 s with a burst of 10 (``burst_seconds`` 1), ``tpm=1200`` is one
token every 0.05 s with a burst of 20.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from brace.config import CapacityConfig, Deployment
from brace.errors import NoCapacity, Overloaded, RateLimited, ServerError, UpstreamTimeout
from brace.policies.pacing import Pacer, PacingPolicy, estimate_prompt_tokens, request_tokens
from brace.stack import Handler, Request, Response, StreamResponse
from brace.state import LocalLimiter
from brace.testing import FakeClock, ScriptedProvider, ok_response, ok_stream


def exact(**fields: Any) -> CapacityConfig:
    """No headroom: the limits below are the configured ones, so the waits are exact."""
    return CapacityConfig(headroom=0.0, **fields)


def deployment(**limits: Any) -> Deployment:
    return Deployment(provider="mock", name="d", model="m", base_url="http://up/v1", **limits)


class Paced:
    """One deployment's pacing policy around a scripted provider."""

    def __init__(
        self,
        script: list[Any] | None = None,
        *,
        capacity: CapacityConfig | None = None,
        **limits: Any,
    ) -> None:
        # autoadvance: a reservation granted within the limiter's few-ms slack sleeps
        # in place (float noise can make that 1e-13 s); the waits checked here are the
        # NoCapacity ones, which never sleep
        self.clock = FakeClock(autoadvance=True)
        self.limiter = LocalLimiter(self.clock)
        self.config = capacity or exact()
        self.releases = 0
        self.pacer = Pacer(
            deployment(**limits),
            self.config,
            self.limiter,
            clock=self.clock,
            on_release=self._released,
        )
        self.provider = ScriptedProvider(script or [ok_response()])
        self.handler: Handler = PacingPolicy(self.pacer, self.config).wrap(self.provider)

    def _released(self) -> None:
        self.releases += 1

    async def send(self, content: str = "hello", **body: Any) -> Response | StreamResponse:
        return await self.handler(request(content, **body))

    async def wait_for(self, content: str = "hello", **body: Any) -> float | None:
        """The NoCapacity wait a request gets now (it must get one)."""
        with pytest.raises(NoCapacity) as info:
            await self.send(content, **body)
        return info.value.wait


def request(content: str = "hello", **body: Any) -> Request:
    return Request(
        operation="chat",
        model="chat",
        body={"model": "chat", "messages": [{"role": "user", "content": content}], **body},
    )


def with_headers(headers: dict[str, str], usage: dict[str, int] | None = None) -> Response:
    res = ok_response(usage=usage)
    res.upstream = headers
    return res


def ratelimit_headers(limit: int, remaining: int, reset: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": reset,
    }


# --------------------------------------------------------------------------- reservations


async def test_a_burst_goes_at_once_then_no_capacity_carries_the_true_wait() -> None:
    p = Paced(rpm=600)
    for _ in range(10):
        await p.send()
    assert await p.wait_for() == pytest.approx(0.1)
    p.clock.advance(0.04)
    assert await p.wait_for() == pytest.approx(0.06)  # a refusal books nothing
    p.clock.advance(0.06)
    await p.send()
    assert await p.wait_for() == pytest.approx(0.1)
    assert len(p.provider.calls) == 11


async def test_a_wait_within_the_slack_is_slept_in_place_not_queued() -> None:
    p = Paced(rpm=600)
    for _ in range(10):
        await p.send()
    p.clock.advance(0.097)  # 3 ms to go: reserved, then slept
    before = p.clock.now()
    await p.send()
    assert p.clock.slept[-1] == pytest.approx(0.003)
    assert p.clock.now() == pytest.approx(before + 0.003)
    assert len(p.provider.calls) == 11


async def test_on_admit_is_called_once_the_reservation_is_granted() -> None:
    p = Paced(rpm=60, burst_seconds=1)
    admitted: list[str] = []
    req = request()
    req.state.on_admit = lambda: admitted.append("go")
    await p.handler(req)
    assert admitted == ["go"]
    refused = request()
    refused.state.on_admit = lambda: admitted.append("refused")
    with pytest.raises(NoCapacity):
        await p.handler(refused)
    assert admitted == ["go"]


async def test_by_default_two_percent_of_every_limit_is_left_unused() -> None:
    p = Paced(capacity=CapacityConfig(), rpm=600, tpm=1200)
    lim = p.pacer.limits()
    assert lim is not None
    assert (lim.rpm, lim.tpm) == (pytest.approx(588), pytest.approx(1176))
    q = Paced(capacity=CapacityConfig(), rpm=600)
    for _ in range(9):  # a burst of 9.8 requests: nine go at once
        await q.send()
    assert await q.wait_for() == pytest.approx(10 * 60 / 588 - 1.0)


async def test_unlimited_deployment_is_not_paced() -> None:
    p = Paced()
    for _ in range(100):
        await p.send()
    assert p.pacer.limits() is None
    assert await p.pacer.peek(1000) == 0.0


# --------------------------------------------------------------------------- tokens


def test_prompt_estimate_is_characters_over_four_plus_four_per_message() -> None:
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": "x" * 40}]}) == 14
    two = [
        {"role": "system", "content": "x" * 3},
        {"role": "user", "content": [{"type": "text", "text": "y" * 5}, {"type": "image_url"}]},
    ]
    assert estimate_prompt_tokens({"messages": two}) == 2 + 8
    assert estimate_prompt_tokens({"input": "z" * 9}) == 4
    assert estimate_prompt_tokens({"input": ["ab", "abcde", [1, 2, 3]]}) == 2 + 3 + 3
    assert estimate_prompt_tokens({}) == 1


def test_request_tokens_add_the_requested_completion_or_the_default() -> None:
    def tokens(default: int = 256, **body: Any) -> int:
        return request_tokens(request("x" * 40, **body), default)

    assert tokens(max_tokens=6) == 20
    assert tokens(max_tokens=6, max_completion_tokens=16) == 30  # the newer field wins
    assert tokens() == 14 + 256
    assert tokens(default=100) == 114
    assert tokens(max_tokens=0, default=7) == 21  # not a usable maximum
    assert tokens(max_tokens=True, default=7) == 21
    req = request("x" * 40)
    request_tokens(req, 1)
    assert req.state.prompt_tokens_est == 14  # estimated once, kept for later layers


EXACT = {"prompt_tokens": 14, "completion_tokens": 1, "total_tokens": 15}
"""The usage of a 40-character prompt when the estimate was right: nothing to settle."""


async def test_the_token_reservation_is_prompt_estimate_plus_max_tokens() -> None:
    # 20 tokens/s with a burst of 100: five requests of 14 + 6 tokens spend it
    p = Paced([ok_response(usage=EXACT)], tpm=1200, burst_seconds=5)
    for _ in range(5):
        await p.send("x" * 40, max_tokens=6)
    assert await p.wait_for("x" * 40, max_tokens=6) == pytest.approx(20 * 0.05)
    assert await p.wait_for("x" * 40, max_tokens=26) == pytest.approx(40 * 0.05)
    assert await p.wait_for("x" * 80, max_tokens=26) == pytest.approx(50 * 0.05)


async def test_the_default_max_tokens_is_reserved_when_the_request_sets_none() -> None:
    p = Paced([ok_response(usage=EXACT)], tpm=1200, capacity=exact(default_max_tokens=6))
    await p.send("x" * 40)
    assert await p.pacer.peek(20) == pytest.approx(1.0)


async def test_settling_refunds_the_prompt_over_estimate_but_not_max_tokens() -> None:
    # the estimate is 14 prompt tokens, the upstream counted 10: 4 tokens come back
    used = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    p = Paced([ok_response(usage=used)], tpm=1200)
    await p.send("x" * 40, max_tokens=6)
    assert await p.pacer.peek(20) == pytest.approx(16 * 0.05)


async def test_settling_charges_an_under_estimate() -> None:
    used = {"prompt_tokens": 24, "completion_tokens": 1, "total_tokens": 25}
    p = Paced([ok_response(usage=used)], tpm=1200)
    await p.send("x" * 40, max_tokens=6)
    assert await p.pacer.peek(20) == pytest.approx(30 * 0.05)


# --------------------------------------------------------------------------- upstream 429s


async def test_an_upstream_429_shrinks_the_factor_and_blocks_for_its_retry_after() -> None:
    p = Paced([RateLimited("slow down", deployment="d", retry_after=2.0)], rpm=600)
    with pytest.raises(RateLimited):
        await p.send()
    assert p.pacer.factor == pytest.approx(0.8)
    assert p.pacer.throttled == 1
    assert p.pacer.in_flight == 0 and p.releases == 1
    assert p.pacer.limits() is not None and p.pacer.limits().rpm == pytest.approx(480)  # type: ignore[union-attr]
    assert await p.wait_for() == pytest.approx(2.0)
    p.clock.advance(2.0)
    assert await p.pacer.peek(1) == 0.0


async def test_an_upstream_429_without_retry_after_blocks_one_second() -> None:
    p = Paced([RateLimited("slow down", deployment="d")], rpm=600)
    with pytest.raises(RateLimited):
        await p.send()
    assert await p.wait_for() == pytest.approx(1.0)


async def test_successes_grow_the_factor_back() -> None:
    p = Paced([RateLimited("slow down", retry_after=0.01), ok_response()], rpm=600)
    with pytest.raises(RateLimited):
        await p.send()
    p.clock.advance(1.0)
    for _ in range(5):
        await p.send()
        p.clock.advance(1.0)
    assert p.pacer.factor == pytest.approx(0.85)
    for _ in range(30):
        await p.send()
        p.clock.advance(1.0)
    assert p.pacer.factor == 1.0


async def test_the_429s_of_one_overshoot_cut_the_factor_once() -> None:
    p = Paced([RateLimited("slow down", retry_after=0.01)], rpm=600)
    for _ in range(5):
        with pytest.raises(RateLimited):
            await p.send()
        p.clock.advance(0.01)
    assert p.pacer.throttled == 5
    assert p.pacer.factor == pytest.approx(0.8)
    p.clock.advance(1.0)  # a second later: a new overshoot, a new cut
    with pytest.raises(RateLimited):
        await p.send()
    assert p.pacer.factor == pytest.approx(0.64)


# --------------------------------------------------------------------------- learned limits


async def test_rate_limit_headers_teach_the_limits() -> None:
    headers = {
        **ratelimit_headers(600, 599, "100ms"),
        "x-ratelimit-limit-tokens": "12000000",
        "x-ratelimit-remaining-tokens": "11999000",
        "x-ratelimit-reset-tokens": "500ms",
    }
    p = Paced([with_headers(headers)])
    assert p.pacer.limits() is None
    await p.send()
    snap = p.pacer.snapshot()
    assert (snap["learned_rpm"], snap["learned_tpm"]) == (600, 12_000_000)
    assert (snap["effective_rpm"], snap["effective_tpm"]) == (600.0, 12_000_000.0)
    for _ in range(10):  # the learned limit's burst, then paced
        await p.send()
    assert await p.wait_for() == pytest.approx(0.1)


async def test_anthropic_headers_teach_the_limits_too() -> None:
    headers = {
        "anthropic-ratelimit-requests-limit": "600",
        "anthropic-ratelimit-requests-remaining": "599",
        "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z",
        "anthropic-ratelimit-tokens-limit": "90000",
    }
    p = Paced([with_headers(headers)])
    await p.send()
    assert (p.pacer.learned_rpm, p.pacer.learned_tpm) == (600, 90000)


async def test_a_configured_limit_wins_over_a_learned_one() -> None:
    p = Paced([with_headers(ratelimit_headers(6000, 5999, "10ms"))], rpm=600)
    await p.send()
    assert p.pacer.learned_rpm == 6000
    assert p.pacer.limits().rpm == 600  # type: ignore[union-attr]


async def test_a_429_teaches_the_limit_from_its_headers() -> None:
    exc = RateLimited("slow down", deployment="d", retry_after=0.5)
    exc.upstream_headers = ratelimit_headers(600, 0, "1s")
    p = Paced([exc])
    with pytest.raises(RateLimited):
        await p.send()
    assert p.pacer.learned_rpm == 600
    assert await p.wait_for() == pytest.approx(0.5)


async def test_an_empty_upstream_bucket_blocks_the_deployment() -> None:
    p = Paced([with_headers(ratelimit_headers(600, 0, "300ms"))], rpm=600)
    await p.send()
    # without the headers the burst of 10 would let the next one go at once
    assert await p.wait_for() >= 0.1 - 1e-9


async def test_an_empty_upstream_bucket_blocks_only_until_one_request_refills() -> None:
    p = Paced([with_headers(ratelimit_headers(3000, 0, "1s"))], rpm=3000)
    await p.send()
    assert await p.pacer.peek(1) <= 60 / 3000 + 1e-9


async def test_learned_pacing_respects_the_remaining_requests() -> None:
    script = [
        with_headers(ratelimit_headers(600, 9, "100ms")),
        with_headers(ratelimit_headers(600, 2, "800ms")),  # others spent the burst
        ok_response(),
    ]
    p = Paced(script)
    await p.send()
    await p.send()
    sent = 0
    with pytest.raises(NoCapacity):
        for _ in range(10):
            await p.send()
            sent += 1
    assert sent <= 2


async def test_only_a_remainder_below_the_bucket_reaches_the_limiter() -> None:
    """Most answers say thousands are left: no limiter call for them (a Redis round
    trip each on a shared limiter); a remainder below the bucket's size is applied."""
    calls: list[tuple[int | None, int | None]] = []
    p = Paced(
        [
            with_headers(ratelimit_headers(600, 599, "100ms")),  # bucket: 10 requests
            with_headers(ratelimit_headers(600, 10, "1s")),
            with_headers(ratelimit_headers(600, 4, "6s")),
            ok_response(),
        ]
    )
    original = p.limiter.spent

    async def counted(key: str, limits: Any, requests: int | None, tokens: int | None) -> None:
        calls.append((requests, tokens))
        await original(key, limits, requests, tokens)

    p.limiter.spent = counted  # type: ignore[method-assign]
    for _ in range(3):
        await p.send()
    assert calls == [(4, None)]


# --------------------------------------------------------------------------- concurrency


class Gate:
    """A provider whose calls wait until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self, req: Request) -> Response:
        self.calls += 1
        await self.release.wait()
        return ok_response()


async def test_the_concurrency_limit_refuses_with_no_known_wait() -> None:
    p = Paced(max_concurrency=2)
    gate = Gate()
    handler = PacingPolicy(p.pacer, p.config).wrap(gate)
    first = [asyncio.ensure_future(handler(request())) for _ in range(2)]
    await asyncio.sleep(0)
    assert p.pacer.in_flight == 2 and p.pacer.full()
    with pytest.raises(NoCapacity) as info:
        await handler(request())
    assert info.value.wait is None
    assert await p.pacer.peek(1) is None
    gate.release.set()
    await asyncio.gather(*first)
    assert p.pacer.in_flight == 0 and p.releases == 2
    assert gate.calls == 2


async def test_adaptive_concurrency_is_aimd() -> None:
    p = Paced(max_concurrency=8)
    pacer = p.pacer
    assert pacer.concurrency_limit == 8
    pacer.failed("overloaded")
    assert pacer.concurrency_limit == 6
    pacer.failed("timeout")
    assert pacer.concurrency_limit == 4.5
    pacer.failed("rate_limited")
    assert pacer.concurrency_limit == pytest.approx(3.375)
    pacer.failed("server_error")  # not an overload signal
    assert pacer.concurrency_limit == pytest.approx(3.375)
    pacer.succeeded()
    assert pacer.concurrency_limit == pytest.approx(3.375 + 1 / 3.375)
    for _ in range(100):
        pacer.succeeded()
    assert pacer.concurrency_limit == 8  # never above max_concurrency
    for _ in range(20):
        pacer.failed("overloaded")
    assert pacer.concurrency_limit == 1  # never below one


async def test_overload_through_the_policy_shrinks_the_concurrency_limit() -> None:
    script = [Overloaded("busy"), UpstreamTimeout("slow"), ServerError("boom"), ok_response()]
    p = Paced(script)
    assert p.pacer.concurrency_limit == 64  # no max_concurrency: start at 64...
    assert p.pacer.max_concurrency == 1024  # ...grow up to 1024
    for _ in range(3):
        with pytest.raises((Overloaded, UpstreamTimeout, ServerError)):
            await p.send()
    assert p.pacer.concurrency_limit == 36
    assert p.pacer.in_flight == 0 and p.releases == 3


async def test_without_adaptive_concurrency_the_limit_stays() -> None:
    p = Paced([Overloaded("busy")], capacity=exact(adaptive_concurrency=False))
    with pytest.raises(Overloaded):
        await p.send()
    assert p.pacer.concurrency_limit == 64


async def test_a_stream_holds_its_slot_until_closed() -> None:
    p = Paced([lambda req: ok_stream(["a", "b"])], max_concurrency=1)
    stream = await p.send(stream=True)
    assert isinstance(stream, StreamResponse)
    assert p.pacer.in_flight == 1 and p.releases == 0
    with pytest.raises(NoCapacity):
        await p.send()
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == 2
    assert p.pacer.in_flight == 1  # read to the end, not yet closed
    await stream.aclose()
    assert p.pacer.in_flight == 0 and p.releases == 1
    await stream.aclose()  # closing twice releases once
    assert p.pacer.in_flight == 0 and p.releases == 1


async def test_a_stream_closed_early_releases_too() -> None:
    p = Paced([lambda req: ok_stream(["a", "b", "c"])])
    stream = await p.send(stream=True)
    assert isinstance(stream, StreamResponse)
    await anext(aiter(stream))
    await stream.aclose()
    assert p.pacer.in_flight == 0 and p.releases == 1
