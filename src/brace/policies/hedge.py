"""Hedging (opt-in per group): a second attempt when the first is slow.

After ``hedge.after`` seconds (fixed) or the group's observed p95 latency (``p95``,
bounded by ``min_after``/``max_after``), if the first attempt has not answered, a
second one starts on another deployment.  The first to answer wins (for a stream:
the first to deliver its first chunk) and the other is cancelled, which closes its
upstream connection.  A hedge is a retry for the retry budget, so hedges cannot become a storm; no
other deployment or no time left before the deadline → no hedge.  (The balancer charges the hedge to the
deployment that receives it; with no budget anywhere the hedge is dropped.)  If one attempt fails while the other
runs, the other's answer is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ..clock import Clock
from ..config import HedgeConfig
from ..errors import AttemptsExhausted, NoCapacity, RetryBudgetExhausted, UpstreamFailure
from ..events import EventBus, Hedged
from ..stack import Handler, Request, Response, StreamResponse

__all__ = ["HedgePolicy", "LatencyTracker"]


class LatencyTracker:
    """The p95 of the last ``size`` successful attempt latencies, recomputed every
    ``every`` samples (so a sample costs O(1) amortised)."""

    __slots__ = ("_count", "_every", "_p95", "_ring", "_size")

    def __init__(self, size: int = 256, every: int = 32) -> None:
        self._ring: list[float] = []
        self._size = size
        self._every = every
        self._count = 0
        self._p95: float | None = None

    def add(self, seconds: float) -> None:
        if len(self._ring) < self._size:
            self._ring.append(seconds)
        else:
            self._ring[self._count % self._size] = seconds
        self._count += 1
        if self._count % self._every == 0 or (self._p95 is None and self._count >= 20):
            ordered = sorted(self._ring)
            self._p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    @property
    def p95(self) -> float | None:
        return self._p95


class HedgePolicy:
    def __init__(
        self,
        group: str,
        config: HedgeConfig,
        *,
        has_alternative: Callable[[set[str]], bool],
        clock: Clock,
        events: EventBus,
        tracker: LatencyTracker | None = None,
    ) -> None:
        self._group = group
        self._config = config
        self._has_alternative = has_alternative
        self._clock = clock
        self._events = events
        self.tracker = tracker if tracker is not None else LatencyTracker()

    def delay(self) -> float | None:
        """Seconds before hedging; ``None`` while ``p95`` has too few samples (20)."""
        after = self._config.after
        if after != "p95":
            return float(after)
        p95 = self.tracker.p95
        if p95 is None:
            return None
        return min(self._config.max_after, max(self._config.min_after, p95))

    def wrap(self, inner: Handler) -> Handler:
        clock = self._clock

        async def timed(req: Request) -> Response | StreamResponse:
            start = clock.now()
            result = await inner(req)
            self.tracker.add(clock.now() - start)
            return result

        async def hedge(req: Request) -> Response | StreamResponse:
            delay = self.delay()
            if delay is None or (req.deadline is not None and clock.now() + delay >= req.deadline):
                return await timed(req)
            primary = asyncio.ensure_future(timed(req))
            timer = asyncio.ensure_future(clock.sleep(delay))
            try:
                await asyncio.wait((primary, timer), return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                primary.cancel()
                timer.cancel()
                raise
            if primary.done():
                timer.cancel()
                return primary.result()
            slow = req.state.deployment or ""
            exclude = set(req.state.exclude or ()) | {slow}
            if not self._has_alternative(exclude):
                return await primary
            forked = req.state.fork()
            forked.exclude = exclude
            forked.hedge = True
            second_req = Request(
                req.operation,
                req.model,
                req.body,
                req.stream,
                req.request_id,
                req.deadline,
                req.headers,
                forked,
            )
            self._events.emit(Hedged(req.request_id, self._group, delay))
            secondary = asyncio.ensure_future(timed(second_req))
            return await _first_success(req, primary, secondary, second_req)

        return hedge


async def _first_success(
    req: Request,
    primary: asyncio.Future[Response | StreamResponse],
    secondary: asyncio.Future[Response | StreamResponse],
    second_req: Request,
) -> Response | StreamResponse:
    pending = {primary, secondary}
    failures: list[UpstreamFailure] = []
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            winner: asyncio.Future[Response | StreamResponse] | None = None
            for fut in (primary, secondary):  # primary first when both finished together
                if fut not in done:
                    continue
                exc = fut.exception()
                if exc is None:
                    if winner is None:
                        winner = fut
                    else:  # a simultaneous second answer: release it
                        loser = fut.result()
                        if isinstance(loser, StreamResponse):
                            await loser.aclose()
                    continue
                if isinstance(exc, RetryBudgetExhausted | NoCapacity) and fut is secondary:
                    continue  # no budget or capacity for the hedge: the primary decides
                if not isinstance(exc, UpstreamFailure):
                    raise exc
                failures.append(exc)
            if winner is not None:
                if winner is secondary:
                    req.state.deployment = second_req.state.deployment
                    req.state.hedged = True
                return winner.result()
    finally:
        for fut in pending:
            fut.cancel()
        for fut in pending:
            with contextlib.suppress(BaseException):
                await fut
    if len(failures) == 1:
        raise failures[0]
    raise AttemptsExhausted(failures)
