"""Agent runs' rows: what the store reads of a run and a step, their columns, a record
as a row, a row as the API shows it.

The store takes any object shaped like :class:`~brace.runs.RunRecord` /
:class:`~brace.runs.StepRecord` (:class:`LoggedRun`, :class:`LoggedStep`: protocols):
``brace.store`` sits below ``brace.runs`` and never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

__all__ = [
    "RUN_COLUMNS",
    "RUN_KEY",
    "RUN_STATUSES",
    "STEP_COLUMNS",
    "STEP_KEY",
    "LoggedRun",
    "LoggedStep",
    "row_to_run",
    "row_to_step",
    "run_row",
    "step_row",
]

RUN_STATUSES: tuple[str, ...] = ("running", "completed", "failed", "abandoned")
"""A run's statuses (``brace.runs.RunStatus``), for the ``status`` filter."""


class LoggedRun(Protocol):
    """What the store reads of one run (a ``RunRecord``)."""

    @property
    def tenant(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def last_activity(self) -> float: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def linked_by(self) -> str: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def span_id(self) -> str | None: ...
    @property
    def steps(self) -> int: ...
    @property
    def model_steps(self) -> int: ...
    @property
    def tool_steps(self) -> int: ...
    @property
    def failed_steps(self) -> int: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def wait_s(self) -> float: ...
    @property
    def failure_step(self) -> int | None: ...
    @property
    def failure_class(self) -> str | None: ...
    @property
    def failure_deployment(self) -> str | None: ...
    @property
    def failure_error(self) -> str | None: ...
    @property
    def request_ids(self) -> Sequence[str]: ...


class LoggedStep(Protocol):
    """What the store reads of one step (a ``StepRecord``)."""

    @property
    def tenant(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def duration(self) -> float | None: ...
    @property
    def status(self) -> str: ...
    @property
    def error_class(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def deployment(self) -> str | None: ...
    @property
    def label(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def retry_wait(self) -> float: ...
    @property
    def queue_wait(self) -> float | None: ...
    @property
    def fallback(self) -> Sequence[str] | None: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cost_usd(self) -> float | None: ...
    @property
    def tool_calls(self) -> int: ...
    @property
    def tool_call_id(self) -> str | None: ...
    @property
    def tool_type(self) -> str | None: ...
    @property
    def opened_by(self) -> str | None: ...
    @property
    def closed_by(self) -> str | None: ...
    @property
    def result_bytes(self) -> int | None: ...
    @property
    def content(self) -> dict[str, Any] | None: ...


RUN_KEY: tuple[str, ...] = ("tenant", "run_id")
RUN_COLUMNS: tuple[str, ...] = (
    "tenant",
    "run_id",
    "agent",
    "status",
    "started_at",
    "last_activity",
    "ended_at",
    "linked_by",
    "trace_id",
    "span_id",
    "steps",
    "model_steps",
    "tool_steps",
    "failed_steps",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "retries",
    "wait_s",
    "failure_step",
    "failure_class",
    "failure_deployment",
    "failure_error",
    "request_ids",
)

STEP_KEY: tuple[str, ...] = ("tenant", "run_id", "seq")
STEP_COLUMNS: tuple[str, ...] = (
    "tenant",
    "run_id",
    "seq",
    "kind",
    "name",
    "started_at",
    "duration",
    "status",
    "error_class",
    "error",
    "request_id",
    "deployment",
    "label",
    "attempts",
    "retries",
    "retry_wait",
    "queue_wait",
    "fallback",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "tool_calls",
    "tool_call_id",
    "tool_type",
    "opened_by",
    "closed_by",
    "result_bytes",
    "content",
)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def run_row(r: LoggedRun) -> tuple[Any, ...]:
    """The ``runs`` row of a run (in :data:`RUN_COLUMNS` order)."""
    return (
        r.tenant,
        r.run_id,
        r.agent,
        r.status,
        float(r.started_at),
        float(r.last_activity),
        _float(r.ended_at),
        r.linked_by,
        r.trace_id,
        r.span_id,
        r.steps,
        r.model_steps,
        r.tool_steps,
        r.failed_steps,
        r.input_tokens,
        r.output_tokens,
        float(r.cost_usd),
        r.retries,
        float(r.wait_s),
        r.failure_step,
        r.failure_class,
        r.failure_deployment,
        r.failure_error,
        _json(list(r.request_ids)),
    )


def step_row(s: LoggedStep, *, capture_content: bool) -> tuple[Any, ...]:
    """The ``run_steps`` row of a step (in :data:`STEP_COLUMNS` order).  The content
    is kept only with ``capture_content``."""
    return (
        s.tenant,
        s.run_id,
        s.seq,
        s.kind,
        s.name,
        float(s.started_at),
        _float(s.duration),
        s.status,
        s.error_class,
        s.error,
        s.request_id,
        s.deployment,
        s.label,
        s.attempts,
        s.retries,
        float(s.retry_wait),
        _float(s.queue_wait),
        _json(None if s.fallback is None else list(s.fallback)),
        s.input_tokens,
        s.output_tokens,
        _float(s.cost_usd),
        s.tool_calls,
        s.tool_call_id,
        s.tool_type,
        s.opened_by,
        s.closed_by,
        s.result_bytes,
        _json(s.content) if capture_content and s.content is not None else None,
    )


def row_to_run(row: dict[str, Any]) -> dict[str, Any]:
    """A ``runs`` row as the API shows it: ``request_ids`` decoded, ``duration`` added
    (to the end, or to the last activity while the run is open)."""
    out = dict(row)
    raw = out.get("request_ids")
    out["request_ids"] = [] if raw is None else orjson.loads(raw)
    end = out["ended_at"] if out.get("ended_at") is not None else out["last_activity"]
    out["duration"] = float(end) - float(out["started_at"])
    return out


def row_to_step(row: dict[str, Any]) -> dict[str, Any]:
    """A ``run_steps`` row as the API shows it (its run's key left out, JSON decoded)."""
    out = dict(row)
    out.pop("tenant", None)
    out.pop("run_id", None)
    for key in ("fallback", "content"):
        if out.get(key) is not None:
            out[key] = orjson.loads(out[key])
    return out
