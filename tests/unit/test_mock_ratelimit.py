"""Token buckets, 429 decisions, retry-after and OpenAI reset durations, on a fake clock."""

from __future__ import annotations

import pytest

from brace.mock._dialects import OpenAIDialect, retry_headers
from brace.mock._ratelimit import RateLimiter, TokenBucket, format_reset_duration


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_starts_full_and_refills_continuously() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock)  # one unit per second
    assert bucket.level() == 60
    bucket.take(60)
    assert bucket.level() == 0
    assert bucket.wait_time(1) == pytest.approx(1.0)
    clock.advance(0.5)
    assert bucket.level() == pytest.approx(0.5)
    assert bucket.wait_time(1) == pytest.approx(0.5)
    clock.advance(1000)
    assert bucket.level() == 60  # capped at capacity
    assert bucket.time_to_full() == 0


def test_bucket_time_to_full_and_reset() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock)  # 10 units per second
    bucket.take(300)
    assert bucket.time_to_full() == pytest.approx(30.0)
    bucket.reset()
    assert bucket.level() == 600


def test_requests_limit_denies_then_admits_after_refill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=2, tpm=None, clock=clock)
    assert limiter.acquire(10).denied is None
    second = limiter.acquire(10)
    assert second.denied is None
    assert second.requests_remaining == 0
    third = limiter.acquire(10)
    assert third.denied == "requests"
    assert third.retry_after == pytest.approx(30.0)  # 2/min → one every 30 s
    clock.advance(29.9)
    assert limiter.acquire(10).denied == "requests"
    clock.advance(0.1)
    assert limiter.acquire(10).denied is None


def test_denied_request_takes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=100, tpm=1000, clock=clock)
    assert limiter.acquire(900).denied is None
    denied = limiter.acquire(200)
    assert denied.denied == "tokens"
    assert denied.retry_after == pytest.approx(100 / (1000 / 60))
    assert denied.requests_remaining == 99  # the denied request was not charged
    assert limiter.acquire(100).denied is None
    assert limiter.acquire(1).denied == "tokens"


def test_request_larger_than_capacity_is_always_denied() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=None, tpm=100, clock=clock)
    decision = limiter.acquire(500)
    assert decision.denied == "tokens"
    clock.advance(3600)
    assert limiter.acquire(500).denied == "tokens"


def test_unlimited_limiter_is_inactive() -> None:
    limiter = RateLimiter(None, None, FakeClock())
    assert not limiter.active
    assert limiter.acquire(10**9).denied is None


def test_limit_headers_report_remaining_and_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, tpm=6000, clock=clock)
    decision = limiter.acquire(100)
    headers = OpenAIDialect().limit_headers(decision)
    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5900",
        "x-ratelimit-reset-tokens": "1s",
    }


def test_429_reply_has_retry_after_and_openai_body() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=1, tpm=None, clock=clock)
    limiter.acquire(1)
    clock.advance(12.3)
    decision = limiter.acquire(1)
    reply = OpenAIDialect().rate_limited(decision, {})
    assert reply.status == 429
    assert reply.headers["retry-after"] == "48"  # ceil(47.7)
    assert reply.headers["retry-after-ms"] == "47700"
    assert b'"code":"rate_limit_exceeded"' in reply.body
    assert b'"type":"requests"' in reply.body
    assert b"Rate limit reached for requests" in reply.body


@pytest.mark.parametrize(
    ("seconds", "header", "header_ms"),
    [(0.0001, "1", "1"), (0.5, "1", "500"), (1.0, "1", "1000"), (1.2, "2", "1200")],
)
def test_retry_headers_round_up(seconds: float, header: str, header_ms: str) -> None:
    assert retry_headers(seconds) == {"retry-after": header, "retry-after-ms": header_ms}


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (0.12, "120ms"),
        (0.0171, "18ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (17.115, "17.115s"),
        (59.9999, "1m0s"),
        (360, "6m0s"),
        (90.5, "1m30.5s"),
        (3723, "1h2m3s"),
    ],
)
def test_format_reset_duration_matches_openai(seconds: float, expected: str) -> None:
    assert format_reset_duration(seconds) == expected


def test_burst_seconds_caps_the_bucket_but_not_the_rate() -> None:
    from brace.mock._ratelimit import TokenBucket

    now = [0.0]
    bucket = TokenBucket(600, lambda: now[0], burst_seconds=1)
    assert bucket.capacity == 10 and bucket.rate == 10
    for _ in range(10):
        assert bucket.wait_time(1) == 0
        bucket.take(1)
    assert bucket.wait_time(1) == pytest.approx(0.1)
    now[0] += 5.0  # refills to the capacity, never above
    assert bucket.level() == 10
