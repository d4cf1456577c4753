"""What Brace remembers of a request: one :class:`RequestRecord`, built once at its end.

The :class:`~brace.telemetry.observe.ObservePolicy` builds it from what the layers
left in ``request.state`` (attempts, deployment, fallback hops, usage, queue wait) and
emits it as a :class:`RequestEnded` event; metrics, the store and the tracer subscribe.
Records carry no secret: never a key or an Authorization header; message content only
when ``telemetry.capture_content`` is on.

Time: ``started_at`` is wall-clock epoch seconds; every other time is a duration or an
offset in seconds from the request's start, so spans can be drawn without a clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["AttemptRecord", "RequestEnded", "RequestRecord"]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    deployment: str
    group: str
    provider: str
    offset: float
    """Seconds from the request's start to the attempt's start."""
    duration: float
    """Seconds to the answer (JSON) or to the first chunk (stream)."""
    error_class: str | None
    status: int | None
    hedge: bool = False
    error: str | None = None
    retry_delay: float | None = None
    """Seconds the retry policy waited (backoff or ``retry-after``) before this attempt."""


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    trace_id: str
    """32 hex digits (W3C): the caller's trace when it sent ``traceparent``."""
    span_id: str
    """16 hex digits: this request's span."""
    parent_span_id: str | None
    operation: str
    """``chat`` or ``embeddings``."""
    model: str
    """The model group the caller asked for."""
    started_at: float
    duration: float
    status: int
    """HTTP status given to the caller (200 for a stream that ended in an error event)."""
    stream: bool = False
    group: str | None = None
    """The group that answered (differs from ``model`` after a fallback)."""
    deployment: str | None = None
    provider: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    """The upstream's id for the answer (``chatcmpl-...``, ``msg_...``)."""
    error_class: str | None = None
    error: str | None = None
    ttft: float | None = None
    queue_wait: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    finish_reasons: list[str] | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    fallback: list[str] | None = None
    hedged: bool = False
    priority: str | None = None
    tenant: str | None = None
    client_disconnected: bool = False
    run_id: str | None = None
    """The agent run the request belonged to (``runs``); its spans are in the run's trace."""
    content: dict[str, Any] | None = None
    """Request messages and answer, only with ``telemetry.capture_content``."""

    @property
    def absorbed(self) -> int:
        """Failed attempts the caller never saw (the request still succeeded)."""
        if self.error_class is not None:
            return 0
        return sum(1 for a in self.attempts if a.error_class is not None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RequestEnded:
    """Emitted once per request, when its answer (or its stream) has ended."""

    record: RequestRecord
