"""Token buckets for requests-per-minute and tokens-per-minute limits.

A bucket holds at most ``limit × burst_seconds / 60`` units (by default the full
per-minute quota, like OpenAI) and refills continuously at ``limit / 60`` units per
second.
Buckets start full. A denied request takes nothing from either bucket. Time comes from the
injected clock, so these classes are pure and tested with a fake clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["LimitDecision", "RateLimiter", "TokenBucket", "format_reset_duration"]


class TokenBucket:
    """A continuously refilled bucket of ``capacity`` units, full after one minute."""

    __slots__ = ("_clock", "_last", "_level", "capacity", "rate")

    def __init__(
        self, capacity: int, clock: Callable[[], float], *, burst_seconds: float = 60.0
    ) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be > 0")
        self.rate = capacity / 60.0  # units per second
        self.capacity = max(1.0, self.rate * burst_seconds)
        self._clock = clock
        self._level = self.capacity
        self._last = clock()

    def _refill(self) -> float:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._level = min(self.capacity, self._level + elapsed * self.rate)
        self._last = now
        return self._level

    def level(self) -> float:
        """Units available now."""
        return self._refill()

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` units are available (0 if they are now).

        An amount above the capacity can never be granted; the time until the bucket is
        full is returned.
        """
        level = self._refill()
        if amount <= level:
            return 0.0
        return (min(amount, self.capacity) - level) / self.rate

    def take(self, amount: float) -> None:
        """Remove ``amount`` units (the caller checked :meth:`wait_time` first)."""
        self._refill()
        self._level -= amount

    def time_to_full(self) -> float:
        """Seconds until the bucket is full again: the ``x-ratelimit-reset-*`` value."""
        return (self.capacity - self._refill()) / self.rate

    def reset(self) -> None:
        """Refill completely."""
        self._level = self.capacity
        self._last = self._clock()


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The outcome of one :meth:`RateLimiter.acquire`, with everything the headers need."""

    denied: Literal["requests", "tokens"] | None
    retry_after: float  # seconds; 0 when admitted
    requested_tokens: int
    requests_limit: int | None
    requests_remaining: int
    requests_reset: float
    tokens_limit: int | None
    tokens_remaining: int
    tokens_reset: float


class RateLimiter:
    """Requests-per-minute and tokens-per-minute buckets checked together."""

    __slots__ = ("_clock", "_requests", "_tokens", "burst_seconds", "rpm", "tpm")

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        clock: Callable[[], float],
        *,
        burst_seconds: float = 60.0,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.burst_seconds = burst_seconds
        self._clock = clock
        self._requests = TokenBucket(rpm, clock, burst_seconds=burst_seconds) if rpm else None
        self._tokens = TokenBucket(tpm, clock, burst_seconds=burst_seconds) if tpm else None

    @property
    def active(self) -> bool:
        """False when both limits are unlimited (no checks and no headers)."""
        return self._requests is not None or self._tokens is not None

    def reset(self) -> None:
        """Refill both buckets."""
        for bucket in (self._requests, self._tokens):
            if bucket is not None:
                bucket.reset()

    def acquire(self, tokens: int) -> LimitDecision:
        """Admit one request costing ``tokens`` tokens, or say which limit denies it."""
        requests, token_bucket = self._requests, self._tokens
        denied: Literal["requests", "tokens"] | None = None
        retry = 0.0
        if requests is not None:
            retry = requests.wait_time(1)
            if retry > 0:
                denied = "requests"
        if denied is None and token_bucket is not None:
            retry = token_bucket.wait_time(tokens)
            if retry > 0 or tokens > token_bucket.capacity:
                denied = "tokens"
                retry = max(retry, 0.001)
        if denied is None:
            if requests is not None:
                requests.take(1)
            if token_bucket is not None:
                token_bucket.take(tokens)
        return LimitDecision(
            denied=denied,
            retry_after=retry,
            requested_tokens=tokens,
            requests_limit=self.rpm,
            requests_remaining=_remaining(requests),
            requests_reset=requests.time_to_full() if requests is not None else 0.0,
            tokens_limit=self.tpm,
            tokens_remaining=_remaining(token_bucket),
            tokens_reset=token_bucket.time_to_full() if token_bucket is not None else 0.0,
        )


def _remaining(bucket: TokenBucket | None) -> int:
    return 0 if bucket is None else max(0, math.floor(bucket.level()))


def format_reset_duration(seconds: float) -> str:
    """Format a duration the way OpenAI's ``x-ratelimit-reset-*`` headers do.

    Go-style: ``"120ms"`` below one second, then ``"1s"``, ``"1.5s"``, ``"6m0s"``, ``"1h2m3s"``.
    """
    if seconds <= 0:
        return "0s"
    millis = math.ceil(seconds * 1000 - 1e-6)
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
