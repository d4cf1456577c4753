"""The run tracker: runs and their steps, derived from the traffic.

The ``runs`` slot of the stack (:mod:`brace.runs.policy`) calls :meth:`RunTracker.begin`
when a request of a run arrives and :meth:`RunTracker.end` when its answer is complete.
Everything else is derived here:

- ``begin`` finds or creates the run, closes the tool steps whose results the request
  carries (``role: tool`` messages after the last assistant message, matched by
  ``tool_call_id``: their duration, result size and whether the agent marked the result
  as an error), and opens the request's model step;
- ``end`` closes the model step (attempts, retries and their waits, queue wait,
  fallback hops, tokens, cost, status) and opens one tool step per tool call in the
  answer (parallel calls are parallel steps); a final answer without tool calls
  completes the run, a failure fails it (which step, error class, deployment);
- :meth:`RunTracker.sweep` abandons runs idle for ``runs.idle_timeout`` (their open tool
  steps become ``unfinished``) and lets finished runs go from memory.

Each change is emitted on the event bus as a copy (:class:`RunUpdated`,
:class:`StepUpdated`; :class:`RunStatusChanged` when the status moves): the store's
writer, metrics and the tracer subscribe.  Memory is bounded: ``runs.max_active`` runs,
each holding only its counters and its open tool steps.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._w3c import new_trace_id, parse_traceparent
from ..config import RunsConfig
from ..errors import BraceError
from ..events import EventBus
from ..stack import Request, RunRef
from ._link import LinkIndex, answer_key, continuation_key
from ._model import (
    RunRecord,
    RunStatus,
    RunStatusChanged,
    RunUpdated,
    StepRecord,
    StepUpdated,
)

__all__ = ["ModelStep", "RunTracker", "ToolCall"]

_MAX_REQUEST_IDS = 1000


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call an answer asked for."""

    id: str
    name: str
    type: str = "function"
    arguments: str | None = None
    """Only kept with ``capture_content``."""


@dataclass(slots=True)
class _Run:
    record: RunRecord
    open_tools: dict[str, StepRecord] = field(default_factory=dict)
    seq: int = 0


@dataclass(slots=True)
class ModelStep:
    """A model step in progress: what :meth:`RunTracker.end` closes."""

    run: _Run
    step: StepRecord


class RunTracker:
    def __init__(
        self,
        config: RunsConfig,
        *,
        events: EventBus,
        capture_content: bool = False,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._events = events
        self._capture = capture_content
        self._wall = wall
        self._rng = rng if rng is not None else random.Random()
        self._runs: OrderedDict[tuple[str, str], _Run] = OrderedDict()
        self._links = LinkIndex(config.link_index_size)
        self.started = 0
        self.evicted = 0

    # ------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self._runs)

    def active(self, tenant: str, run_id: str) -> RunRecord | None:
        """A copy of a run still in memory (``None``: unknown, or let go)."""
        run = self._runs.get((tenant, run_id))
        return None if run is None else dataclasses.replace(run.record)

    def link(self, req: Request) -> RunRef | None:
        """The run whose answer this request's conversation continues, if any."""
        if not self.config.link_conversations:
            return None
        tenant = req.state.owner or "local"
        key = continuation_key(tenant, req.body.get("messages"))
        if key is None:
            return None
        found = self._links.get(key)
        if found is None:
            return None
        run = self._runs.get(found)
        agent = run.record.agent if run is not None else None
        return RunRef(found[1], found[0], "conversation", agent=agent)

    # ------------------------------------------------------------------ begin / end

    def now(self) -> float:
        return self._wall()

    def begin(self, req: Request, ref: RunRef, *, started_at: float | None = None) -> ModelStep:
        """The request of ``ref`` starts (or started, at ``started_at``): its run (created
        if new) and its model step."""
        now = self._wall() if started_at is None else started_at
        key = (ref.tenant, ref.id)
        run = self._runs.get(key)
        if run is None:
            run = self._create(ref, req, now)
        else:
            self._runs.move_to_end(key)
        record = run.record
        if ref.agent and record.agent != ref.agent:
            record.agent = ref.agent
        ref.trace_id, ref.span_id = record.trace_id, record.span_id
        if ref.agent is None:
            ref.agent = record.agent
        record.last_activity = now
        if record.status != "running":
            self._status(record, "running", None)
            record.ended_at = None
        self._close_tools(run, req, now)
        run.seq += 1
        step = StepRecord(
            ref.tenant,
            ref.id,
            run.seq,
            "model",
            req.model,
            now,
            request_id=req.request_id,
            label=ref.label,
        )
        if self._capture:
            step.content = {"messages": req.body.get("messages")}
        record.steps += 1
        record.model_steps += 1
        if len(record.request_ids) < _MAX_REQUEST_IDS:
            record.request_ids.append(req.request_id)
        self._emit_step(step)
        self._emit_run(record)
        return ModelStep(run, step)

    def end(
        self,
        active: ModelStep,
        req: Request,
        *,
        error: BraceError | None,
        tool_calls: list[ToolCall] | None,
        answer: dict[str, Any] | None,
        cost: float | None,
        usage: Any = None,
        error_class: str | None = None,
    ) -> None:
        """The request's answer is complete (or failed): close its model step; open its
        tool steps; complete or fail the run."""
        now = self._wall()
        run, step = active.run, active.step
        record = run.record
        state = req.state
        step.duration = max(0.0, now - step.started_at)
        step.deployment = state.deployment
        attempts = state.attempts or ()
        step.attempts = len(attempts)
        step.retries = sum(1 for a in attempts if a.error_class is not None)
        step.retry_wait = sum(a.retry_delay or 0.0 for a in attempts)
        step.queue_wait = state.queue_wait
        step.fallback = list(state.fallback) if state.fallback else None
        if usage is None:
            usage = state.usage  # a stream's, as its provider left it
        if isinstance(usage, dict):
            step.input_tokens = _int(usage.get("prompt_tokens"))
            step.output_tokens = _int(usage.get("completion_tokens"))
        step.cost_usd = cost
        record.last_activity = now
        record.retries += step.retries
        record.wait_s += step.retry_wait + (step.queue_wait or 0.0)
        record.input_tokens += step.input_tokens or 0
        record.output_tokens += step.output_tokens or 0
        record.cost_usd += cost or 0.0
        failed = error is not None or error_class is not None
        if failed:
            step.status = "failed"
            step.error_class = error.error_class if error is not None else error_class
            step.error = error.message if error is not None else None
            record.failed_steps += 1
            if error is not None:  # a caller that went away does not fail the run
                record.failure_step = step.seq
                record.failure_class = step.error_class
                record.failure_deployment = getattr(error, "deployment", None) or state.deployment
                record.failure_error = step.error
                record.ended_at = now
                self._status(record, "failed", step.error_class)
        else:
            step.status = "ok"
            calls = tool_calls or []
            step.tool_calls = len(calls)
            if self._capture and answer is not None:
                step.content = {**(step.content or {}), "answer": answer}
            for call in calls[: self.config.max_tool_calls]:
                self._open_tool(run, call, req.request_id, now)
            if not calls:
                record.ended_at = now
                self._status(record, "completed", None)
            elif answer is not None and self.config.link_conversations:
                key = answer_key(record.tenant, req.body.get("messages"), answer)
                if key is not None:
                    self._links.add(key, (record.tenant, record.run_id))
        self._emit_step(step)
        self._emit_run(record)

    # ------------------------------------------------------------------ housekeeping

    def sweep(self) -> None:
        """Abandon runs idle for ``idle_timeout``; let finished runs go from memory."""
        now = self._wall()
        idle = self.config.idle_timeout
        for key in list(self._runs):
            run = self._runs[key]
            if now - run.record.last_activity < idle:
                break  # ordered by activity: the rest are newer
            self._let_go(key, run, now)

    def _let_go(self, key: tuple[str, str], run: _Run, now: float) -> None:
        del self._runs[key]
        record = run.record
        for step in run.open_tools.values():
            step.status = "unfinished"
            self._emit_step(step)
        run.open_tools.clear()
        if record.status == "running":
            record.ended_at = now
            self._status(record, "abandoned", "idle")
            self._emit_run(record)

    # ------------------------------------------------------------------ internals

    def _create(self, ref: RunRef, req: Request, now: float) -> _Run:
        if len(self._runs) >= self.config.max_active:
            old_key, old = next(iter(self._runs.items()))
            self.evicted += 1
            self._let_go(old_key, old, now)
        caller = parse_traceparent(req.state.traceparent)  # the caller's trace is kept
        trace_id = caller[0] if caller else new_trace_id(now, self._rng)
        record = RunRecord(
            ref.tenant,
            ref.id,
            now,
            now,
            agent=ref.agent,
            linked_by=ref.linked_by,
            trace_id=trace_id,
            span_id=f"{self._rng.getrandbits(64) or 1:016x}",
        )
        run = _Run(record)
        self._runs[(ref.tenant, ref.id)] = run
        self.started += 1
        self._status(record, "running", None, new_run=True)
        return run

    def _close_tools(self, run: _Run, req: Request, now: float) -> None:
        if not run.open_tools:
            return
        messages = req.body.get("messages")
        if not isinstance(messages, list):
            return
        # the results after the last assistant message (older ones were seen before)
        for m in reversed(messages):
            if not isinstance(m, dict):
                continue
            role = m.get("role")
            if role == "assistant":
                break
            if role != "tool":
                continue
            step = run.open_tools.pop(str(m.get("tool_call_id")), None)
            if step is None:
                continue
            content = m.get("content")
            size = len(content.encode()) if isinstance(content, str) else len(_dumps(content))
            step.duration = max(0.0, now - step.started_at)
            step.result_bytes = size
            step.closed_by = req.request_id
            step.status = "error" if _is_error(m) else "ok"
            if self._capture:
                step.content = {**(step.content or {}), "result": content}
            self._emit_step(step)

    def _open_tool(self, run: _Run, call: ToolCall, request_id: str, now: float) -> None:
        record = run.record
        run.seq += 1
        step = StepRecord(
            record.tenant,
            record.run_id,
            run.seq,
            "tool",
            call.name,
            now,
            tool_call_id=call.id,
            tool_type=call.type,
            opened_by=request_id,
        )
        if self._capture and call.arguments is not None:
            step.content = {"arguments": call.arguments}
        record.steps += 1
        record.tool_steps += 1
        if len(run.open_tools) < self.config.max_tool_calls:
            run.open_tools[call.id] = step
        self._emit_step(step)

    def _status(
        self,
        record: RunRecord,
        new: RunStatus,
        cause: str | None,
        *,
        new_run: bool = False,
    ) -> None:
        before = None if new_run else record.status
        record.status = new
        if self._events.wants(RunStatusChanged):
            self._events.emit(
                RunStatusChanged(
                    record.tenant,
                    record.run_id,
                    record.agent,
                    before,
                    new,
                    cause,
                    record.duration,
                    record.steps,
                )
            )

    def _emit_run(self, record: RunRecord) -> None:
        if self._events.wants(RunUpdated):
            copy = dataclasses.replace(record, request_ids=list(record.request_ids))
            self._events.emit(RunUpdated(copy))

    def _emit_step(self, step: StepRecord) -> None:
        if self._events.wants(StepUpdated):
            self._events.emit(StepUpdated(dataclasses.replace(step)))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dumps(value: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(value)
    except TypeError:
        return str(value).encode()


def _is_error(message: dict[str, Any]) -> bool:
    """A tool result the agent marked as failed (``is_error``, as Anthropic's
    ``tool_result`` blocks and several frameworks do)."""
    if message.get("is_error") is True:
        return True
    content = message.get("content")
    if isinstance(content, list):
        return any(isinstance(p, dict) and p.get("is_error") is True for p in content)
    return False
