"""State shared by the endpoints and the admission path every inference request takes.

Admission order (each step draws from the injected rng in request order, so a seed replays
the same faults): rate limits (429) → fault draw (or ``x-mock-fault``) → latency draw (or
``x-mock-latency-ms``) → sleep → error / reset / hang, or the fault to apply to the body.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping

from brace.mock._config import MockConfig
from brace.mock._dialects import Dialect
from brace.mock._kinds import ERROR_STATUSES, FAULT_KINDS
from brace.mock._ratelimit import RateLimiter
from brace.mock._settings import LiveConfig, Settings
from brace.mock._stats import Stats
from brace.mock._wire import Abort, Hang, Reply, Streamer

__all__ = ["Admitted", "Core", "MockRequest", "Outcome"]

Outcome = Reply | Streamer

_FAULT_SET = frozenset(FAULT_KINDS)


class MockRequest:
    """A transport-neutral request. ``headers`` is case-insensitive or lower-cased."""

    __slots__ = ("body", "headers", "method", "path", "query")

    def __init__(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body


class Admitted:
    """A request that passed admission: the body fault to apply and headers to add."""

    __slots__ = ("fault", "headers", "settings")

    def __init__(self, settings: Settings, fault: str | None, headers: dict[str, str]) -> None:
        self.settings = settings
        self.fault = fault
        self.headers = headers


class Core:
    """Live config, limiter, counters, randomness and clocks of one mock app."""

    def __init__(self, config: MockConfig, clock: Callable[[], float], rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self.live = LiveConfig(config, clock)
        self.stats = Stats()
        self.limiter = RateLimiter(
            config.rpm, config.tpm, clock, burst_seconds=config.burst_seconds
        )
        self.stopping = False
        self._epoch = time.time() - clock()
        self._next_id = 0

    def wall(self) -> float:
        """Unix time derived from the injected clock (for ``created`` and reset stamps)."""
        return self._epoch + self.clock()

    def is_stopping(self) -> bool:
        return self.stopping

    def new_id(self) -> str:
        """A unique, deterministic hex suffix for response ids."""
        self._next_id += 1
        return f"mock{self._next_id:020x}"

    def reset(self) -> None:
        """Zero the counters, refill the buckets, restart the scenario clock."""
        self.stats = Stats()
        self.limiter.reset()
        self.live.restart()

    def stream_completed(self) -> None:
        self.stats.streams_completed += 1

    def _limiter_for(self, settings: Settings) -> RateLimiter:
        limiter = self.limiter
        if (
            limiter.rpm != settings.rpm
            or limiter.tpm != settings.tpm
            or limiter.burst_seconds != settings.burst_seconds
        ):
            limiter = self.limiter = RateLimiter(
                settings.rpm, settings.tpm, self.clock, burst_seconds=settings.burst_seconds
            )
        return limiter

    async def admit(
        self, request: MockRequest, settings: Settings, cost: int, dialect: Dialect
    ) -> Outcome | Admitted:
        """Rate limits, fault choice and latency for one inference request."""
        stats = self.stats
        headers: dict[str, str] = {}
        limiter = self._limiter_for(settings)
        if limiter.active:
            decision = limiter.acquire(cost)
            headers = dialect.limit_headers(decision)
            if decision.denied is not None:
                stats.rate_limited += 1
                return dialect.rate_limited(decision, headers)
        forced = request.headers.get("x-mock-fault")
        if forced is not None:
            forced = forced.strip().lower()
            if forced not in _FAULT_SET:
                return dialect.bad_request(
                    f"x-mock-fault must be one of {', '.join(FAULT_KINDS)}, got {forced!r}",
                    "x-mock-fault",
                )
            fault: str | None = forced
        else:
            fault = settings.draw_fault(self.rng)
        if fault is not None:
            stats.fault(fault)
            if fault == "reset":
                return Abort()
            if fault == "hang":
                return Hang(settings.hang_seconds, self.is_stopping)
        forced_ms = request.headers.get("x-mock-latency-ms")
        if forced_ms is not None:
            try:
                delay = max(0.0, float(forced_ms))
            except ValueError:
                return dialect.bad_request(
                    "x-mock-latency-ms must be a number", "x-mock-latency-ms"
                )
        elif settings.latency.is_zero:
            delay = 0.0
        else:
            delay = settings.latency.sample(self.rng)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        if fault is not None:
            if fault == "429":
                stats.rate_limited += 1
                return dialect.injected_429(settings.retry_after, headers)
            status = ERROR_STATUSES.get(fault)
            if status is not None:
                return dialect.server_error(status, settings.retry_after, headers)
        return Admitted(settings, fault, headers)

    def chunk_delays(self, settings: Settings, count: int) -> list[float] | None:
        """Inter-chunk delays in seconds, drawn up front so a seed replays them."""
        dist = settings.chunk_delay
        if dist is None:
            return None
        rng = self.rng
        return [dist.sample(rng) / 1000.0 for _ in range(count)]
