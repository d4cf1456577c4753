"""The outermost policy: time the request and, when it ends, emit its record.

Nothing here waits on telemetry: it notes the start (monotonic and wall clock),
lets the request run, and when the answer is complete — at once for JSON, when the
stream is closed for a stream — builds one :class:`~brace.telemetry.record.RequestRecord`
from what the layers below left in ``request.state`` and emits it as
:class:`~brace.telemetry.record.RequestEnded`.  With no subscriber, no record is built.

Fields of :class:`~brace.stack.RequestState` read here: ``attempts`` (attempt
policy), ``deployment``, ``fallback``, ``hedged``, ``queue_wait``, ``priority``,
``tenant``, ``usage`` and ``finish_reasons`` (providers, for streams),
``traceparent`` (gateway), ``client_disconnected`` and ``stream_error`` (whoever
renders the stream).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._w3c import new_trace_id, parse_traceparent
from ..clock import Clock
from ..errors import BraceError
from ..events import EventBus
from ..stack import Handler, Request, Response, StreamResponse, answering_group
from .cost import Pricing
from .record import AttemptRecord, RequestEnded, RequestRecord

__all__ = ["ObservePolicy", "parse_traceparent"]


class ObservePolicy:
    def __init__(
        self,
        *,
        clock: Clock,
        events: EventBus,
        pricing: Pricing,
        providers: Mapping[str, str],
        capture_content: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._events = events
        self._pricing = pricing
        self._providers = providers
        self._capture = capture_content
        self._wall = wall
        # W3C ids must be random, not secret: a PRNG seeded from the OS (no syscall per id)
        self._rand = random.Random(os.urandom(16))

    def wrap(self, inner: Handler) -> Handler:
        clock = self._clock
        events = self._events

        async def observe(req: Request) -> Response | StreamResponse:
            if not events.active:
                return await inner(req)
            start = clock.now()
            started_at = self._wall()
            try:
                result = await inner(req)
            except BraceError as exc:
                self._emit(req, start, started_at, None, exc)
                raise
            if isinstance(result, Response):
                self._emit(req, start, started_at, result, None)
                return result
            first_chunk = clock.now() - start

            async def finish() -> None:
                try:
                    await result.aclose()
                finally:
                    self._emit(req, start, started_at, None, None, ttft=first_chunk)

            return StreamResponse(
                result.chunks, headers=result.headers, close=finish, upstream=result.upstream
            )

        return observe

    def _emit(
        self,
        req: Request,
        start: float,
        started_at: float,
        result: Response | None,
        exc: BraceError | None,
        *,
        ttft: float | None = None,
    ) -> None:
        try:
            record = self._record(req, start, started_at, result, exc, ttft)
        except Exception:  # a record that cannot be built must never fail the request
            self._events.errors += 1
            return
        self._events.emit(RequestEnded(record))

    def _record(
        self,
        req: Request,
        start: float,
        started_at: float,
        result: Response | None,
        exc: BraceError | None,
        ttft: float | None,
    ) -> RequestRecord:
        state = req.state
        duration = self._clock.now() - start
        run = state.run
        rand = self._rand.getrandbits
        trace = parse_traceparent(state.traceparent)
        if run is not None and run.trace_id:  # a span of its run's trace
            trace_id, parent = run.trace_id, run.span_id
        elif trace:
            trace_id, parent = trace
        else:
            trace_id, parent = new_trace_id(started_at, self._rand), None
        providers = self._providers
        attempts = [  # positional: the fields of AttemptRecord, in order (cheaper)
            AttemptRecord(
                a.deployment,
                a.group,
                providers.get(a.deployment, ""),
                max(0.0, a.started - start),
                a.duration,
                a.error_class,
                a.status,
                a.hedge,
                a.error,
                a.retry_delay,
            )
            for a in state.attempts or ()
        ]
        fallback = state.fallback
        deployment = state.deployment
        record = RequestRecord(
            request_id=req.request_id,
            trace_id=trace_id,
            span_id=f"{rand(64) or 1:016x}",
            parent_span_id=parent,
            operation=req.operation,
            model=req.model,
            started_at=started_at,
            duration=duration,
            status=200,
            stream=req.stream,
            group=answering_group(req),
            deployment=deployment,
            provider=self._providers.get(deployment) if deployment else None,
            ttft=ttft,
            queue_wait=state.queue_wait,
            attempts=attempts,
            fallback=list(fallback) if fallback else None,
            hedged=state.hedged,
            priority=state.priority,
            tenant=state.tenant,
            client_disconnected=state.client_disconnected,
            run_id=run.id if run is not None else None,
        )
        failure = exc if exc is not None else state.stream_error
        if failure is not None:
            record.error_class = failure.error_class
            record.error = failure.message
            if exc is not None:
                record.status = exc.http_status
        usage: Any = None
        if result is not None:
            body = result.json()
            usage = body.get("usage")
            record.response_model = body.get("model")
            rid = body.get("id")
            record.response_id = rid if isinstance(rid, str) else None
            choices = body.get("choices")
            if isinstance(choices, list):
                record.finish_reasons = [
                    c["finish_reason"]
                    for c in choices
                    if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
                ] or None
            if self._capture:
                record.content = {"request": req.body.get("messages"), "response": choices}
        else:
            usage = state.usage
            record.response_model = state.response_model
            record.response_id = state.response_id
            reasons = state.finish_reasons
            record.finish_reasons = list(reasons) if reasons else None
            if self._capture:
                record.content = {"request": req.body.get("messages")}
        if isinstance(usage, dict):
            record.input_tokens = _int(usage.get("prompt_tokens"))
            record.output_tokens = _int(usage.get("completion_tokens"))
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict):
                record.cached_tokens = _int(details.get("cached_tokens"))
            details = usage.get("completion_tokens_details")
            if isinstance(details, dict):
                record.reasoning_tokens = _int(details.get("reasoning_tokens"))
            if deployment:
                record.cost_usd = self._pricing.cost(
                    deployment,
                    record.response_model,
                    record.input_tokens,
                    record.output_tokens,
                    record.cached_tokens,
                    group=record.group,
                )
        return record


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
