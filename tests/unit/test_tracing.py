"""Request records → OpenTelemetry spans (through an in-memory exporter)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from brace.config import TelemetryConfig
from brace.telemetry.record import AttemptRecord, RequestRecord
from brace.telemetry.tracing import Tracer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SPAN = "a1b2c3d4e5f60718"
T0 = 1_700_000_000.25
NS = 1_000_000_000


def record(**kw: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "request_id": "req-1",
        "trace_id": TRACE,
        "span_id": SPAN,
        "parent_span_id": None,
        "operation": "chat",
        "model": "smart",
        "started_at": T0,
        "duration": 2.0,
        "status": 200,
        "group": "smart",
        "deployment": "openai/gpt-4o",
        "provider": "openai",
        "response_model": "gpt-4o-2024-08-06",
        "input_tokens": 100,
        "output_tokens": 40,
        "cached_tokens": 64,
        "reasoning_tokens": 12,
        "cost_usd": 0.0042,
        "finish_reasons": ["stop"],
        "attempts": [
            AttemptRecord(
                deployment="openai/gpt-4o",
                group="smart",
                provider="openai",
                offset=0.1,
                duration=1.5,
                error_class=None,
                status=200,
            )
        ],
    }
    base.update(kw)
    return RequestRecord(**base)


def failed_attempt(**kw: Any) -> AttemptRecord:
    base: dict[str, Any] = {
        "deployment": "azure/gpt-4o",
        "group": "smart",
        "provider": "azure",
        "offset": 0.0,
        "duration": 0.3,
        "error_class": "rate_limited",
        "status": 429,
        "error": "too many requests",
    }
    base.update(kw)
    return AttemptRecord(**base)


@pytest.fixture
async def traced() -> Any:
    exporter = InMemorySpanExporter()
    tracer = Tracer(TelemetryConfig(service_name="brace-test"), exporter=exporter, recent=100)
    await tracer.start()

    async def spans(*records: RequestRecord) -> dict[str, ReadableSpan]:
        for r in records:
            tracer.submit(r)
        await tracer.flush()
        return {s.name: s for s in exporter.get_finished_spans()}

    spans.tracer = tracer  # type: ignore[attr-defined]
    spans.exporter = exporter  # type: ignore[attr-defined]
    yield spans
    await tracer.aclose()


def ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


async def test_request_span_ids_kind_times_and_resource(traced: Any) -> None:
    spans = await traced(record())
    req = spans["chat smart"]
    assert req.kind is SpanKind.CLIENT
    assert ids(req) == (TRACE, SPAN)
    assert req.parent is None
    assert req.start_time == round(T0 * NS)
    assert req.end_time == round(T0 * NS) + 2 * NS
    assert req.resource.attributes["service.name"] == "brace-test"
    assert req.instrumentation_scope is not None
    assert req.instrumentation_scope.name == "brace"
    assert req.status.status_code is StatusCode.UNSET


async def test_remote_parent_continues_the_callers_trace(traced: Any) -> None:
    spans = await traced(record(parent_span_id=PARENT))
    req = spans["chat smart"]
    assert ids(req) == (TRACE, SPAN)
    assert req.parent is not None
    assert req.parent.is_remote
    assert f"{req.parent.trace_id:032x}" == TRACE
    assert f"{req.parent.span_id:016x}" == PARENT


async def test_genai_and_brace_attributes(traced: Any) -> None:
    rec = record(
        fallback=["smart", "cheap"],
        group="cheap",
        hedged=True,
        priority="high",
        queue_wait=0.05,
        attempts=[failed_attempt(), *record().attempts],
    )
    attrs = (await traced(rec))["chat smart"].attributes or {}
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "smart"
    assert attrs["gen_ai.request.stream"] is False
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] == 100
    assert attrs["gen_ai.usage.output_tokens"] == 40
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 64
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 12
    assert "error.type" not in attrs
    assert "gen_ai.response.id" not in attrs  # not on the record (yet)
    assert attrs["brace.request_id"] == "req-1"
    assert attrs["brace.group"] == "cheap"
    assert attrs["brace.deployment"] == "openai/gpt-4o"
    assert attrs["brace.attempts"] == 2
    assert attrs["brace.absorbed_failures"] == 1
    assert attrs["brace.fallback"] == "smart>cheap"
    assert attrs["brace.hedged"] is True
    assert attrs["brace.priority"] == "high"
    assert attrs["brace.queue_wait_s"] == 0.05
    assert attrs["brace.cost_usd"] == 0.0042
    assert attrs["brace.client_disconnected"] is False
    assert attrs["brace.status_code"] == 200


async def test_missing_values_are_left_out(traced: Any) -> None:
    rec = record(
        cached_tokens=None,
        reasoning_tokens=None,
        cost_usd=None,
        finish_reasons=None,
        priority=None,
        response_model=None,
    )
    attrs = (await traced(rec))["chat smart"].attributes or {}
    for key in (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.response.model",
        "brace.cost_usd",
        "brace.priority",
        "brace.fallback",
        "brace.queue_wait_s",
    ):
        assert key not in attrs, key


async def test_attempt_spans_are_children_with_times_and_error_status(traced: Any) -> None:
    rec = record(
        attempts=[
            failed_attempt(),
            AttemptRecord(
                deployment="openai/gpt-4o",
                group="smart",
                provider="openai",
                offset=0.5,
                duration=1.25,
                error_class=None,
                status=200,
                hedge=True,
            ),
        ]
    )
    spans = await traced(rec)
    req = spans["chat smart"]
    failed, ok = spans["brace.attempt azure/gpt-4o"], spans["brace.attempt openai/gpt-4o"]
    assert req.context is not None
    for child in (failed, ok):
        assert child.kind is SpanKind.CLIENT
        assert child.parent is not None and not child.parent.is_remote
        assert child.parent.span_id == req.context.span_id
        assert ids(child)[0] == TRACE
        assert ids(child)[1] != SPAN
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "too many requests"
    fa = failed.attributes or {}
    assert fa["error.type"] == "rate_limited"
    assert fa["http.response.status_code"] == 429
    assert fa["gen_ai.provider.name"] == "azure.ai.openai"
    assert fa["brace.deployment"] == "azure/gpt-4o"
    assert fa["brace.group"] == "smart"
    assert fa["brace.attempt.index"] == 0
    assert fa["brace.attempt.retry"] == 0
    assert fa["brace.attempt.fallback"] == 0
    assert fa["brace.hedge"] is False
    assert failed.start_time == round(T0 * NS)
    assert failed.end_time == round(T0 * NS) + round(0.3 * NS)

    assert ok.status.status_code is StatusCode.UNSET
    oa = ok.attributes or {}
    assert "error.type" not in oa
    assert oa["brace.attempt.index"] == 1
    assert oa["brace.attempt.retry"] == 1
    assert oa["brace.hedge"] is True
    assert ok.start_time == round(T0 * NS) + NS // 2
    assert ok.end_time == round(T0 * NS) + round(1.75 * NS)


async def test_fallback_index_counts_groups(traced: Any) -> None:
    rec = record(
        group="cheap",
        fallback=["smart", "cheap"],
        attempts=[
            failed_attempt(error_class="server_error", status=500),
            failed_attempt(deployment="azure/gpt-4o-b", error_class="server_error", status=500),
            AttemptRecord("mistral/small", "cheap", "mistral", 1.0, 0.5, None, 200),
        ],
    )
    spans = await traced(rec)
    last = spans["brace.attempt mistral/small"].attributes or {}
    assert last["brace.attempt.fallback"] == 1
    assert last["brace.attempt.retry"] == 0
    assert last["gen_ai.provider.name"] == "mistral_ai"
    second = spans["brace.attempt azure/gpt-4o-b"].attributes or {}
    assert second["brace.attempt.retry"] == 1


async def test_failed_request_has_error_status_and_type(traced: Any) -> None:
    rec = record(
        status=429,
        error_class="rate_limited",
        error="all deployments are rate limited",
        deployment=None,
        provider=None,
        response_model=None,
        attempts=[failed_attempt()],
    )
    req = (await traced(rec))["chat smart"]
    assert req.status.status_code is StatusCode.ERROR
    assert req.status.description == "all deployments are rate limited"
    attrs = req.attributes or {}
    assert attrs["error.type"] == "rate_limited"
    assert attrs["brace.status_code"] == 429
    assert attrs["brace.absorbed_failures"] == 0
    # no answering deployment: the provider of the last attempt
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"


async def test_stream_error_after_200_is_an_error(traced: Any) -> None:
    rec = record(stream=True, ttft=0.2, error_class="server_error", error="upstream died")
    req = (await traced(rec))["chat smart"]
    assert req.status.status_code is StatusCode.ERROR
    assert (req.attributes or {})["error.type"] == "server_error"


async def test_first_token_event_on_streams(traced: Any) -> None:
    req = (await traced(record(stream=True, ttft=0.75)))["chat smart"]
    (event,) = req.events
    assert event.name == "gen_ai.first_token"
    assert event.timestamp == round(T0 * NS) + round(0.75 * NS)
    attrs = req.attributes or {}
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.time_to_first_chunk"] == 0.75
    assert attrs["brace.ttft_s"] == 0.75


async def test_no_first_token_event_without_ttft(traced: Any) -> None:
    req = (await traced(record()))["chat smart"]
    assert not req.events


async def test_admission_span_only_with_a_queue_wait(traced: Any) -> None:
    spans = await traced(record(queue_wait=0.4, priority="low"))
    adm = spans["brace.admission"]
    req = spans["chat smart"]
    assert adm.kind is SpanKind.INTERNAL
    assert adm.parent is not None and req.context is not None
    assert adm.parent.span_id == req.context.span_id
    assert adm.start_time == round(T0 * NS)
    assert adm.end_time == round(T0 * NS) + round(0.4 * NS)
    assert (adm.attributes or {})["brace.priority"] == "low"

    traced.exporter.clear()
    spans = await traced(record(queue_wait=0.0, span_id="1111111111111111"))
    assert "brace.admission" not in spans


async def test_embeddings_span_name(traced: Any) -> None:
    spans = await traced(record(operation="embeddings", model="embed", finish_reasons=None))
    attrs = spans["embeddings embed"].attributes or {}
    assert attrs["gen_ai.operation.name"] == "embeddings"


async def test_many_requests_in_one_trace_are_siblings(traced: Any) -> None:
    """An agent's run: several chat calls under the same caller span (one trace)."""
    a = record(parent_span_id=PARENT, span_id="0000000000000001", request_id="a")
    b = record(parent_span_id=PARENT, span_id="0000000000000002", request_id="b")
    await traced(a, b)
    spans = [s for s in traced.exporter.get_finished_spans() if s.name == "chat smart"]
    assert len(spans) == 2
    assert {ids(s)[0] for s in spans} == {TRACE}
    assert {s.parent.span_id for s in spans if s.parent} == {int(PARENT, 16)}


async def test_recent_ring_by_trace(traced: Any) -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    await traced(record(), record(trace_id=other, span_id="2222222222222222"))
    tracer: Tracer = traced.tracer
    mine = tracer.recent(TRACE)
    assert {s.name for s in mine} == {"chat smart", "brace.attempt openai/gpt-4o"}
    assert {ids(s)[0] for s in tracer.recent(other)} == {other}
    assert len(tracer.recent()) == 4


async def test_global_tracer_provider_is_untouched() -> None:
    before = trace_api.get_tracer_provider()
    exporter = InMemorySpanExporter()
    tracer = Tracer(TelemetryConfig(), exporter=exporter)
    await tracer.start()
    tracer.submit(record())
    await tracer.aclose()
    assert trace_api.get_tracer_provider() is before
    assert len(exporter.get_finished_spans()) == 2


async def test_an_active_caller_span_does_not_become_the_parent() -> None:
    """An in-process user's current span must not leak into records without a parent."""
    from opentelemetry.sdk.trace import TracerProvider

    user = TracerProvider(shutdown_on_exit=False).get_tracer("user")
    exporter = InMemorySpanExporter()
    tracer = Tracer(TelemetryConfig(), exporter=exporter)
    with user.start_as_current_span("user work"):
        await tracer.start()
        tracer.submit(record())
        await tracer.flush()
    await tracer.aclose()
    req = next(s for s in exporter.get_finished_spans() if s.name == "chat smart")
    assert req.parent is None
    assert ids(req) == (TRACE, SPAN)


async def test_queue_overflow_is_dropped_and_counted() -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracer(TelemetryConfig(), exporter=exporter, queue_size=3)
    # not started: nothing drains the queue yet
    for i in range(5):
        tracer.submit(record(request_id=str(i), span_id=f"{i + 1:016x}"))
    assert tracer.dropped == 2
    await tracer.start()
    await tracer.flush()
    assert tracer.traced == 3
    await tracer.aclose()
    requests = [s for s in exporter.get_finished_spans() if s.name == "chat smart"]
    assert len(requests) == 3
    tracer.submit(record())  # after close
    assert tracer.dropped == 3


async def test_background_worker_exports_without_flush() -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracer(TelemetryConfig(), recent=10, exporter=exporter)
    await tracer.start()
    tracer.submit(record())
    for _ in range(200):
        if len(tracer.recent(TRACE)) == 2:
            break
        await asyncio.sleep(0.005)
    assert len(tracer.recent(TRACE)) == 2
    await tracer.aclose()
    assert len(exporter.get_finished_spans()) == 2  # aclose flushed the batch processor


async def test_inactive_without_endpoint_builds_nothing() -> None:
    tracer = Tracer(TelemetryConfig())
    assert not tracer.active
    await tracer.start()
    tracer.submit(record())
    await tracer.flush()
    assert tracer.traced == 0 and tracer.dropped == 0
    assert tracer.recent() == []
    await tracer.aclose()


async def test_a_bad_record_is_counted_not_fatal(traced: Any) -> None:
    spans = await traced(record(trace_id="not-hex"), record(request_id="good"))
    assert traced.tracer.errors == 1
    assert traced.tracer.traced == 1
    assert "chat smart" in spans


async def test_record_fields_are_all_considered() -> None:
    """A new RequestRecord field should be a conscious choice for tracing."""
    handled = {
        "request_id", "trace_id", "span_id", "parent_span_id", "operation", "model",
        "started_at", "duration", "status", "stream", "group", "deployment", "provider",
        "response_model", "response_id", "error_class", "error", "ttft", "queue_wait", "input_tokens",
        "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd", "finish_reasons",
        "attempts", "fallback", "hedged", "priority", "client_disconnected",
        # deliberately not exported: tenant (an identity), content (opt-in, not wired yet)
        "tenant", "content",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(RequestRecord)} <= handled


async def test_sample_ratio_keeps_a_share_by_trace_id_and_every_failure() -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracer(TelemetryConfig(trace_sample_ratio=0.25), exporter=exporter)
    await tracer.start()
    # low 64 bits of the trace id below 0.25 * 2**64 are kept: 0x3fff... yes, 0x4000... no
    kept = record(request_id="kept", trace_id="ab" * 8 + "3fffffffffffffff")
    skipped = record(request_id="skipped", trace_id="ab" * 8 + "4000000000000000")
    failed = record(
        request_id="failed", trace_id="ab" * 8 + "ffffffffffffffff", error_class="overloaded"
    )
    absorbed = record(
        request_id="absorbed",
        trace_id="cd" * 8 + "ffffffffffffffff",
        attempts=[failed_attempt(), *record().attempts],
    )
    for r in (kept, skipped, failed, absorbed):
        tracer.submit(r)
    await tracer.flush()
    await tracer.aclose()
    assert tracer.sampled_out == 1
    traced = {
        s.attributes["brace.request_id"]
        for s in exporter.get_finished_spans()
        if s.attributes and "brace.request_id" in s.attributes
    }
    assert traced == {"kept", "failed", "absorbed"}


async def test_sample_ratio_zero_traces_failures_only() -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracer(TelemetryConfig(trace_sample_ratio=0.0), exporter=exporter)
    await tracer.start()
    tracer.submit(record(request_id="ok", trace_id="0" * 31 + "1"))
    tracer.submit(record(request_id="bad", error_class="server_error"))
    await tracer.aclose()
    assert tracer.sampled_out == 1
    names = {
        s.attributes["brace.request_id"]
        for s in exporter.get_finished_spans()
        if s.attributes and "brace.request_id" in s.attributes
    }
    assert names == {"bad"}
