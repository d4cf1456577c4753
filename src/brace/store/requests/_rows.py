"""The request log's rows: columns, a record as rows, a row as the admin API shows it.

The store takes any object shaped like :class:`~brace.telemetry.record.LoggedRequest`
(:class:`LoggedRequest`, a protocol): ``brace.store`` sits below telemetry and never
imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import orjson

__all__ = [
    "ATTEMPT_COLUMNS",
    "REQUEST_COLUMNS",
    "LoggedAttempt",
    "LoggedRequest",
    "attempt_rows",
    "request_row",
    "row_to_attempt",
    "row_to_request",
    "unique_records",
]


class LoggedAttempt(Protocol):
    """What the request log reads of one attempt (an ``AttemptRecord``)."""

    @property
    def deployment(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def offset(self) -> float: ...
    @property
    def duration(self) -> float: ...
    @property
    def error_class(self) -> str | None: ...
    @property
    def status(self) -> int | None: ...
    @property
    def hedge(self) -> bool: ...
    @property
    def error(self) -> str | None: ...
    @property
    def retry_delay(self) -> float | None: ...


class LoggedRequest(Protocol):
    """What the request log reads of one request (a ``LoggedRequest``)."""

    @property
    def request_id(self) -> str: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str | None: ...
    @property
    def operation(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def duration(self) -> float: ...
    @property
    def status(self) -> int: ...
    @property
    def stream(self) -> bool: ...
    @property
    def group(self) -> str | None: ...
    @property
    def deployment(self) -> str | None: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def response_model(self) -> str | None: ...
    @property
    def error_class(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def ttft(self) -> float | None: ...
    @property
    def queue_wait(self) -> float | None: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cached_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...
    @property
    def cost_usd(self) -> float | None: ...
    @property
    def finish_reasons(self) -> Sequence[str] | None: ...
    @property
    def attempts(self) -> Sequence[LoggedAttempt]: ...
    @property
    def fallback(self) -> Sequence[str] | None: ...
    @property
    def hedged(self) -> bool: ...
    @property
    def priority(self) -> str | None: ...
    @property
    def tenant(self) -> str | None: ...
    @property
    def client_disconnected(self) -> bool: ...
    @property
    def content(self) -> dict[str, Any] | None: ...
    @property
    def absorbed(self) -> int: ...


R = TypeVar("R", bound=LoggedRequest)


REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "started_at",
    "duration",
    "status",
    "operation",
    "model",
    "grp",
    "deployment",
    "provider",
    "response_model",
    "error_class",
    "error",
    "stream",
    "ttft",
    "queue_wait",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "finish_reasons",
    "fallback",
    "hedged",
    "priority",
    "tenant",
    "client_disconnected",
    "attempts_count",
    "absorbed",
    "content",
    "run_id",
)

ATTEMPT_COLUMNS: tuple[str, ...] = (
    "request_id",
    "seq",
    "deployment",
    "grp",
    "provider",
    '"offset"',
    "duration",
    "error_class",
    "status",
    "hedge",
    "error",
    "retry_delay",
)

_BOOLS = ("stream", "hedged", "client_disconnected")
_JSON = ("finish_reasons", "fallback", "content")


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def request_row(r: LoggedRequest, *, capture_content: bool) -> tuple[Any, ...]:
    """The ``requests`` row of a record (in :data:`REQUEST_COLUMNS` order).  The
    content is kept only with ``capture_content``."""
    return (
        r.request_id,
        r.trace_id,
        r.span_id,
        r.parent_span_id,
        float(r.started_at),
        float(r.duration),
        int(r.status),
        r.operation,
        r.model,
        r.group,
        r.deployment,
        r.provider,
        r.response_model,
        r.error_class,
        r.error,
        int(r.stream),
        _float(r.ttft),
        _float(r.queue_wait),
        r.input_tokens,
        r.output_tokens,
        r.cached_tokens,
        r.reasoning_tokens,
        _float(r.cost_usd),
        _json(r.finish_reasons),
        _json(r.fallback),
        int(r.hedged),
        r.priority,
        r.tenant,
        int(r.client_disconnected),
        len(r.attempts),
        r.absorbed,
        _json(r.content) if capture_content and r.content is not None else None,
        # the agent run the request was a step of; read loosely until every record
        # (and LoggedRequest) carries the attribute
        getattr(r, "run_id", None),
    )


def attempt_rows(r: LoggedRequest) -> list[tuple[Any, ...]]:
    """The ``attempts`` rows of a record (in :data:`ATTEMPT_COLUMNS` order)."""
    return [
        (
            r.request_id,
            seq,
            a.deployment,
            a.group,
            a.provider,
            float(a.offset),
            float(a.duration),
            a.error_class,
            a.status,
            int(a.hedge),
            a.error,
            _float(a.retry_delay),
        )
        for seq, a in enumerate(r.attempts)
    ]


def row_to_request(row: dict[str, Any]) -> dict[str, Any]:
    """A ``requests`` row as the admin API shows it (``grp`` → ``group``, booleans and
    JSON decoded)."""
    out = dict(row)
    if "grp" in out:
        out["group"] = out.pop("grp")
    for key in _BOOLS:
        if key in out:
            out[key] = bool(out[key])
    for key in _JSON:
        if out.get(key) is not None:
            out[key] = orjson.loads(out[key])
    return out


def row_to_attempt(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["group"] = out.pop("grp")
    out["hedge"] = bool(out["hedge"])
    return out


def unique_records(records: Sequence[R]) -> list[R]:
    """The first record of each request id (a caller may reuse ``x-request-id``: the
    first record stored under an id wins)."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r.request_id not in seen:
            seen.add(r.request_id)
            out.append(r)
    return out
