"""What Brace knows of an agent run: the run, its steps, and the events that carry them.

A **run** is every model call an agent makes for one task, and the tool calls between
them.  It is keyed by ``(tenant, run_id)``: run ids are scoped to the tenant (the
virtual key's id, ``master``, or ``local`` when no key is needed), so another key can
neither read nor join a run.

A **step** is one model call (``kind="model"``: one request through the stack, with its
attempts, waits, tokens and cost) or one tool call the model asked for
(``kind="tool"``: opened when the answer carrying the call leaves Brace, closed when a
later request of the run carries its result).  Steps are numbered in the order they
started (``seq`` from 1).

The tracker (:mod:`brace.runs._tracker`) emits :class:`RunUpdated` and
:class:`StepUpdated` on the engine's event bus whenever a run or a step changes (the
store's writer upserts them by key), and :class:`RunStatusChanged` when a run's status
moves (metrics count those).  Every time is wall-clock epoch seconds, except
durations (seconds).  Records carry no secret and no content unless
``telemetry.capture_content`` is on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..stack import LinkedBy, RunRef

__all__ = [
    "LinkedBy",
    "RunRecord",
    "RunRef",
    "RunStatus",
    "RunStatusChanged",
    "RunUpdated",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "StepUpdated",
]

RunStatus = Literal["running", "completed", "failed", "abandoned"]
"""``running`` until a final answer without tool calls (``completed``), a failed model
step that no later request retried (``failed``), or no request for
``runs.idle_timeout`` (``abandoned``).  A request arriving after ``failed`` or
``abandoned`` puts the run back to ``running``."""

StepKind = Literal["model", "tool"]

StepStatus = Literal["running", "ok", "error", "failed", "unfinished"]
"""A model step: ``running`` then ``ok`` or ``failed`` (the request failed).  A tool
step: ``running`` (the call left Brace, no result yet), then ``ok`` or ``error`` (the
result came back, marked as an error by the agent), or ``unfinished`` (the run ended
without its result)."""


@dataclass(slots=True)
class StepRecord:
    tenant: str
    run_id: str
    seq: int
    kind: StepKind
    name: str
    """The model group (a model step) or the tool's name (a tool step)."""
    started_at: float
    duration: float | None = None
    """``None`` while running."""
    status: StepStatus = "running"
    error_class: str | None = None
    error: str | None = None
    # model steps
    request_id: str | None = None
    deployment: str | None = None
    label: str | None = None
    attempts: int = 0
    retries: int = 0
    """Failed attempts before the answer (retries, fallbacks, hedges that lost)."""
    retry_wait: float = 0.0
    """Seconds waited before retries (backoff or ``retry-after``)."""
    queue_wait: float | None = None
    """Seconds waited for capacity (admission queue + pacing) before the first attempt."""
    fallback: list[str] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    tool_calls: int = 0
    """Tool calls the answer asked for (each becomes a tool step)."""
    # tool steps
    tool_call_id: str | None = None
    tool_type: str | None = None
    """``function`` (OpenAI) or ``tool_use`` (Anthropic)."""
    opened_by: str | None = None
    """The request id of the answer that asked for this tool call."""
    closed_by: str | None = None
    """The request id of the request that carried its result."""
    result_bytes: int | None = None
    content: dict[str, Any] | None = None
    """Tool arguments and result, or the model step's messages: only with
    ``telemetry.capture_content``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RunRecord:
    tenant: str
    run_id: str
    started_at: float
    last_activity: float
    agent: str | None = None
    status: RunStatus = "running"
    ended_at: float | None = None
    linked_by: LinkedBy = "header"
    trace_id: str | None = None
    span_id: str | None = None
    steps: int = 0
    model_steps: int = 0
    tool_steps: int = 0
    failed_steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    """Failed attempts absorbed over every model step."""
    wait_s: float = 0.0
    """Seconds waited for capacity and before retries, over every model step."""
    failure_step: int | None = None
    """The ``seq`` of the step that failed the run (``failed``)."""
    failure_class: str | None = None
    failure_deployment: str | None = None
    failure_error: str | None = None
    request_ids: list[str] = field(default_factory=list)
    """The request ids of its model steps, in order (bounded: the first 1,000)."""

    @property
    def duration(self) -> float:
        return (self.ended_at or self.last_activity) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration"] = self.duration
        return out


@dataclass(frozen=True, slots=True)
class RunUpdated:
    """A run's row changed (a copy: subscribers may keep it)."""

    run: RunRecord


@dataclass(frozen=True, slots=True)
class StepUpdated:
    """A step's row changed (a copy)."""

    step: StepRecord


@dataclass(frozen=True, slots=True)
class RunStatusChanged:
    tenant: str
    run_id: str
    agent: str | None
    old: RunStatus | None
    """``None`` when the run starts."""
    new: RunStatus
    cause: str | None = None
    """For ``failed``: the failing step's error class; for ``abandoned``: ``idle``."""
    duration: float = 0.0
    steps: int = 0
