"""One attempt at one deployment: its timeouts, its first chunk, its record.

The innermost policy, right above the provider.  It enforces, on the injected
clock:

- the attempt's limit: ``timeouts.first_token`` for a stream (until its first
  chunk), ``timeouts.total`` for a JSON answer — each capped by what is left of
  the request's deadline (then the failure is :class:`DeadlineExceeded`);
- for streams, ``timeouts.stall`` between two chunks after the first.

A stream is returned only once its first chunk has arrived, so that everything
above (retry, hedge, fallback) can still try elsewhere while nothing has reached
the client.  Each attempt is appended to ``request.state.attempts`` and emitted
as an :class:`~brace.events.AttemptEnded` event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..clock import Clock
from ..config import Timeouts
from ..errors import DeadlineExceeded, MalformedResponse, UpstreamFailure, UpstreamTimeout
from ..events import AttemptEnded, EventBus
from ..stack import Attempt, Handler, Request, Response, StreamResponse

__all__ = ["Attempt", "AttemptPolicy"]


class AttemptPolicy:
    __slots__ = ("_clock", "_events", "_group", "_id", "_timeouts")

    def __init__(
        self,
        deployment: str,
        group: str,
        timeouts: Timeouts,
        *,
        clock: Clock,
        events: EventBus,
    ) -> None:
        self._id = deployment
        self._group = group
        self._timeouts = timeouts
        self._clock = clock
        self._events = events

    def wrap(self, inner: Handler) -> Handler:
        clock = self._clock
        timeouts = self._timeouts
        dep = self._id

        async def attempt(req: Request) -> Response | StreamResponse:
            start = clock.now()
            limit = timeouts.first_token if req.stream else timeouts.total
            bound_by_deadline = False
            if req.deadline is not None:
                remaining = req.deadline - start
                if remaining <= 0:
                    raise DeadlineExceeded(
                        f"deployment {dep}: not attempted, the request's deadline has passed",
                        deployment=dep,
                    )
                if remaining < limit:
                    limit, bound_by_deadline = remaining, True
            result: Response | StreamResponse | None = None
            first: bytes | None = None
            try:
                async with clock.timeout(limit):
                    result = await inner(req)
                    if isinstance(result, StreamResponse):
                        first = await anext(result.chunks, None)
                        if first is None:
                            raise MalformedResponse(
                                f"deployment {dep}: the upstream stream ended before its first chunk",
                                deployment=dep,
                            )
            except TimeoutError:
                if isinstance(result, StreamResponse):
                    await result.aclose()
                exc: UpstreamFailure
                if bound_by_deadline:
                    exc = DeadlineExceeded(
                        f"deployment {dep}: the request's deadline passed after {limit:.3g}s "
                        "waiting for the upstream",
                        deployment=dep,
                    )
                elif req.stream:
                    exc = UpstreamTimeout(
                        f"deployment {dep}: no first token within {limit:g}s (timeouts.first_token)",
                        phase="first_token",
                        deployment=dep,
                    )
                else:
                    exc = UpstreamTimeout(
                        f"deployment {dep}: no answer within {limit:g}s (timeouts.total)",
                        phase="total",
                        deployment=dep,
                    )
                self._record(req, start, exc)
                raise exc from None
            except UpstreamFailure as exc:
                if isinstance(result, StreamResponse):
                    await result.aclose()
                self._record(req, start, exc)
                raise
            except BaseException:
                if isinstance(result, StreamResponse):
                    await result.aclose()
                raise
            self._record(req, start, None)
            if isinstance(result, StreamResponse):
                assert first is not None
                return StreamResponse(
                    self._rest(first, result), headers=result.headers, close=result.aclose
                )
            return result

        return attempt

    def _record(self, req: Request, start: float, exc: UpstreamFailure | None) -> None:
        duration = self._clock.now() - start
        error_class = exc.error_class if exc is not None else None
        status = exc.upstream_status if exc is not None else 200
        state = req.state
        attempts = state.attempts
        if attempts is None:
            attempts = state.attempts = []
        retry_delay, state.retry_delay = state.retry_delay, None
        attempts.append(
            Attempt(
                self._id,
                error_class,
                status,
                duration,
                start,
                state.hedge,
                self._group,
                exc.message if exc is not None else None,
                retry_delay,
            )
        )
        if not self._events.wants(AttemptEnded):
            return
        self._events.emit(
            AttemptEnded(
                req.request_id,
                self._group,
                self._id,
                error_class,
                status,
                duration,
                hedge=state.hedge,
            )
        )

    async def _rest(self, first: bytes, upstream: StreamResponse) -> AsyncIterator[bytes]:
        yield first
        chunks = upstream.chunks
        stall = self._timeouts.stall
        timeout = self._clock.timeout
        while True:
            try:
                async with timeout(stall):
                    chunk = await anext(chunks, None)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"deployment {self._id}: the stream stalled for {stall:g}s (timeouts.stall)",
                    phase="stall",
                    deployment=self._id,
                ) from None
            if chunk is None:
                return
            yield chunk
