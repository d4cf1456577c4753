"""Request records → OTLP spans, decoded from the wire with the official protobuf classes.

The tracer's ``sink`` receives each encoded ``ExportTraceServiceRequest``; the tests parse
it with ``opentelemetry-proto`` and check that every byte was understood (no unknown
fields) before asserting on a plain view of each span.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from brace._version import __version__
from brace.config import TelemetryConfig
from brace.telemetry._otlp import KIND_CLIENT, SpanData, encode_request
from brace.telemetry.record import AttemptRecord, RequestRecord
from brace.telemetry.tracing import Tracer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SPAN = "a1b2c3d4e5f60718"
T0 = 1_700_000_000.25
NS = 1_000_000_000

HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


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


# ------------------------------------------------------------------ decoding the wire


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    assert kind is not None, "an attribute without a value"
    return getattr(v, kind)


def _attrs(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        assert kv.key not in out, f"duplicate attribute {kv.key}"
        out[kv.key] = _value(kv.value)
    return out


def _kinds(kvs: Iterable[KeyValue]) -> dict[str, str | None]:
    """Which ``AnyValue`` field carries each attribute (``int_value``, ``bool_value``...)."""
    return {kv.key: kv.value.WhichOneof("value") for kv in kvs}


@dataclasses.dataclass(frozen=True)
class Event:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class View:
    """A decoded ``Span`` with what its ``ResourceSpans``/``ScopeSpans`` said."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    kinds: dict[str, str | None]
    events: list[Event]
    status_code: int
    status_message: str
    flags: int
    resource: dict[str, Any]
    scope: tuple[str, str]

    @property
    def parent_remote(self) -> bool:
        assert self.flags & HAS_IS_REMOTE, "the span does not say whether its parent is remote"
        return bool(self.flags & IS_REMOTE)


def view(span: Span, resource: dict[str, Any], scope: tuple[str, str]) -> View:
    return View(
        name=span.name,
        kind=span.kind,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        attributes=_attrs(span.attributes),
        kinds=_kinds(span.attributes),
        events=[Event(e.name, e.time_unix_nano, _attrs(e.attributes)) for e in span.events],
        status_code=span.status.code,
        status_message=span.status.message,
        flags=span.flags,
        resource=resource,
        scope=scope,
    )


def decode(body: bytes) -> ExportTraceServiceRequest:
    """Parse an export request; every byte must be a field the official schema knows,
    encoded as protobuf itself would encode it."""
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    strict = ExportTraceServiceRequest()
    strict.CopyFrom(req)
    strict.DiscardUnknownFields()
    assert strict.SerializeToString(deterministic=True) == body, "unknown or odd bytes"
    return req


def views(req: ExportTraceServiceRequest) -> list[View]:
    out: list[View] = []
    for rs in req.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = (ss.scope.name, ss.scope.version)
            out.extend(view(s, resource, scope) for s in ss.spans)
    return out


class Sink:
    """The tracer's ``sink``: keeps every export request, decoded."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []

    async def __call__(self, body: bytes) -> None:
        self.requests.append(decode(body))

    def spans(self) -> list[View]:
        return [v for req in self.requests for v in views(req)]

    def clear(self) -> None:
        self.requests.clear()


@pytest.fixture
async def traced() -> Any:
    sink = Sink()
    tracer = Tracer(TelemetryConfig(service_name="brace-test"), sink=sink, recent=100)
    await tracer.start()

    async def spans(*records: RequestRecord) -> dict[str, View]:
        for r in records:
            tracer.submit(r)
        await tracer.flush()
        return {s.name: s for s in sink.spans()}

    spans.tracer = tracer  # type: ignore[attr-defined]
    spans.sink = sink  # type: ignore[attr-defined]
    yield spans
    await tracer.aclose()


def request_ids(sink: Sink) -> set[str]:
    return {
        s.attributes["brace.request_id"] for s in sink.spans() if "brace.request_id" in s.attributes
    }


# ---------------------------------------------------------------------------- tests


async def test_request_span_ids_kind_times_and_resource(traced: Any) -> None:
    spans = await traced(record())
    req = spans["chat smart"]
    assert req.kind == Span.SPAN_KIND_CLIENT
    assert (req.trace_id, req.span_id) == (TRACE, SPAN)
    assert req.parent_span_id is None
    assert req.start_ns == round(T0 * NS)
    assert req.end_ns == round(T0 * NS) + 2 * NS
    assert req.resource["service.name"] == "brace-test"
    assert req.resource["telemetry.sdk.language"] == "python"
    assert req.scope == ("brace", __version__)
    assert req.status_code == Status.STATUS_CODE_UNSET
    assert req.status_message == ""
    assert req.flags & 0xFF == 0x01  # W3C trace flags: sampled
    assert len(traced.sink.requests) == 1
    (rs,) = traced.sink.requests[0].resource_spans
    (ss,) = rs.scope_spans
    assert [s.name for s in ss.spans] == ["chat smart", "brace.attempt openai/gpt-4o"]


async def test_remote_parent_continues_the_callers_trace(traced: Any) -> None:
    spans = await traced(record(parent_span_id=PARENT))
    req = spans["chat smart"]
    assert (req.trace_id, req.span_id) == (TRACE, SPAN)
    assert req.parent_span_id == PARENT
    assert req.flags & HAS_IS_REMOTE
    assert req.flags & IS_REMOTE
    assert req.parent_remote


async def test_a_root_span_says_its_parent_is_not_remote(traced: Any) -> None:
    req = (await traced(record(parent_span_id=None)))["chat smart"]
    assert req.parent_span_id is None
    assert req.flags & HAS_IS_REMOTE
    assert not req.flags & IS_REMOTE


async def test_genai_and_brace_attributes(traced: Any) -> None:
    rec = record(
        fallback=["smart", "cheap"],
        group="cheap",
        hedged=True,
        priority="high",
        queue_wait=0.05,
        attempts=[failed_attempt(), *record().attempts],
    )
    req = (await traced(rec))["chat smart"]
    attrs = req.attributes
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
    assert "gen_ai.response.id" not in attrs  # not on the record
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
    # the OTLP value types, not just equal Python values (True == 1, 2 == 2.0)
    assert {k: req.kinds[k] for k in attrs if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "string_value",
        "gen_ai.provider.name": "string_value",
        "gen_ai.request.model": "string_value",
        "gen_ai.request.stream": "bool_value",
        "gen_ai.response.model": "string_value",
        "gen_ai.response.finish_reasons": "array_value",
        "gen_ai.usage.input_tokens": "int_value",
        "gen_ai.usage.output_tokens": "int_value",
        "gen_ai.usage.cache_read.input_tokens": "int_value",
        "gen_ai.usage.reasoning.output_tokens": "int_value",
    }
    assert req.kinds["brace.attempts"] == "int_value"
    assert req.kinds["brace.status_code"] == "int_value"
    assert req.kinds["brace.hedged"] == "bool_value"
    assert req.kinds["brace.client_disconnected"] == "bool_value"
    assert req.kinds["brace.cost_usd"] == "double_value"
    assert req.kinds["brace.queue_wait_s"] == "double_value"
    assert req.kinds["brace.fallback"] == "string_value"


async def test_response_id_when_the_record_has_one(traced: Any) -> None:
    req = (await traced(record(response_id="chatcmpl-123")))["chat smart"]
    assert req.attributes["gen_ai.response.id"] == "chatcmpl-123"


async def test_missing_values_are_left_out(traced: Any) -> None:
    rec = record(
        cached_tokens=None,
        reasoning_tokens=None,
        cost_usd=None,
        finish_reasons=None,
        priority=None,
        response_model=None,
    )
    attrs = (await traced(rec))["chat smart"].attributes
    assert attrs["brace.request_id"] == "req-1"  # the span is there, with attributes
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


async def test_a_negative_int_attribute_round_trips(traced: Any) -> None:
    req = (await traced(record(input_tokens=-3, status=-1)))["chat smart"]
    assert req.attributes["gen_ai.usage.input_tokens"] == -3
    assert req.attributes["brace.status_code"] == -1
    assert req.kinds["gen_ai.usage.input_tokens"] == "int_value"


def test_encoded_values_at_the_edges() -> None:
    """The encoder alone: int64 limits, zero, floats, empty strings, arrays, unicode."""
    attrs: dict[str, Any] = {
        "min": -(2**63),
        "max": 2**63 - 1,
        "zero": 0,
        "minus_one": -1,
        "false": False,
        "float_zero": 0.0,
        "negative_float": -1.5,
        "empty": "",
        "unicode": "héllo ✓",
        "array": ["a", "b"],
    }
    span = SpanData("s", KIND_CLIENT, TRACE, SPAN, None, 1, 2, attrs, events=[("e", 3, {"k": -7})])
    body = encode_request([span], resource={"service.name": "x"}, scope=("brace", "9"))
    (got,) = views(decode(body))
    assert got.attributes == {**attrs, "array": ("a", "b")}
    assert got.kinds["false"] == "bool_value"
    assert got.kinds["zero"] == "int_value"
    assert got.kinds["float_zero"] == "double_value"
    assert got.events == [Event("e", 3, {"k": -7})]
    assert got.resource == {"service.name": "x"}
    assert got.scope == ("brace", "9")
    assert (got.start_ns, got.end_ns) == (1, 2)


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
                retry_delay=0.25,
            ),
        ]
    )
    spans = await traced(rec)
    req = spans["chat smart"]
    failed, ok = spans["brace.attempt azure/gpt-4o"], spans["brace.attempt openai/gpt-4o"]
    for child in (failed, ok):
        assert child.kind == Span.SPAN_KIND_CLIENT
        assert child.parent_span_id == req.span_id == SPAN
        assert not child.parent_remote
        assert child.trace_id == TRACE
        assert child.span_id != SPAN
        assert len(child.span_id) == 16 and child.span_id != "0" * 16
        assert child.resource == req.resource and child.scope == req.scope
    assert failed.span_id != ok.span_id
    assert failed.status_code == Status.STATUS_CODE_ERROR
    assert failed.status_message == "too many requests"
    fa = failed.attributes
    assert fa["error.type"] == "rate_limited"
    assert fa["http.response.status_code"] == 429
    assert fa["gen_ai.provider.name"] == "azure.ai.openai"
    assert fa["brace.deployment"] == "azure/gpt-4o"
    assert fa["brace.group"] == "smart"
    assert fa["brace.attempt.index"] == 0
    assert fa["brace.attempt.retry"] == 0
    assert fa["brace.attempt.fallback"] == 0
    assert fa["brace.hedge"] is False
    assert "brace.attempt.retry_delay_s" not in fa  # a first attempt waited for nothing
    assert failed.kinds["http.response.status_code"] == "int_value"
    assert failed.start_ns == round(T0 * NS)
    assert failed.end_ns == round(T0 * NS) + round(0.3 * NS)

    assert ok.status_code == Status.STATUS_CODE_UNSET
    oa = ok.attributes
    assert "error.type" not in oa
    assert oa["brace.attempt.index"] == 1
    assert oa["brace.attempt.retry"] == 1
    assert oa["brace.hedge"] is True
    assert oa["brace.attempt.retry_delay_s"] == 0.25
    assert ok.kinds["brace.attempt.retry_delay_s"] == "double_value"
    assert ok.start_ns == round(T0 * NS) + NS // 2
    assert ok.end_ns == round(T0 * NS) + round(1.75 * NS)


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
    last = spans["brace.attempt mistral/small"].attributes
    assert last["brace.attempt.fallback"] == 1
    assert last["brace.attempt.retry"] == 0
    assert last["gen_ai.provider.name"] == "mistral_ai"
    second = spans["brace.attempt azure/gpt-4o-b"].attributes
    assert second["brace.attempt.retry"] == 1
    assert second["brace.attempt.fallback"] == 0


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
    assert req.status_code == Status.STATUS_CODE_ERROR
    assert req.status_message == "all deployments are rate limited"
    attrs = req.attributes
    assert attrs["error.type"] == "rate_limited"
    assert attrs["brace.status_code"] == 429
    assert attrs["brace.absorbed_failures"] == 0
    assert "brace.deployment" not in attrs
    # no answering deployment: the provider of the last attempt
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"


async def test_stream_error_after_200_is_an_error(traced: Any) -> None:
    rec = record(stream=True, ttft=0.2, error_class="server_error", error="upstream died")
    req = (await traced(rec))["chat smart"]
    assert req.status_code == Status.STATUS_CODE_ERROR
    assert req.status_message == "upstream died"
    assert req.attributes["error.type"] == "server_error"


async def test_first_token_event_on_streams(traced: Any) -> None:
    req = (await traced(record(stream=True, ttft=0.75)))["chat smart"]
    (event,) = req.events
    assert event.name == "gen_ai.first_token"
    assert event.time_ns == round(T0 * NS) + round(0.75 * NS)
    assert event.attributes == {"brace.ttft_s": 0.75}
    attrs = req.attributes
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.time_to_first_chunk"] == 0.75
    assert attrs["brace.ttft_s"] == 0.75


async def test_no_first_token_event_without_ttft(traced: Any) -> None:
    req = (await traced(record()))["chat smart"]
    assert req.events == []
    assert "brace.ttft_s" not in req.attributes


async def test_admission_span_only_with_a_queue_wait(traced: Any) -> None:
    spans = await traced(record(queue_wait=0.4, priority="low"))
    adm = spans["brace.admission"]
    req = spans["chat smart"]
    assert adm.kind == Span.SPAN_KIND_INTERNAL
    assert adm.parent_span_id == req.span_id
    assert not adm.parent_remote
    assert adm.trace_id == TRACE
    assert adm.start_ns == round(T0 * NS)
    assert adm.end_ns == round(T0 * NS) + round(0.4 * NS)
    assert adm.attributes["brace.priority"] == "low"
    assert adm.attributes["brace.group"] == "smart"
    assert adm.attributes["brace.queue_wait_s"] == 0.4

    traced.sink.clear()
    spans = await traced(record(queue_wait=0.0, span_id="1111111111111111"))
    assert "chat smart" in spans
    assert "brace.admission" not in spans


async def test_embeddings_span_name(traced: Any) -> None:
    spans = await traced(record(operation="embeddings", model="embed", finish_reasons=None))
    assert "chat embed" not in spans
    attrs = spans["embeddings embed"].attributes
    assert attrs["gen_ai.operation.name"] == "embeddings"


async def test_many_requests_in_one_trace_are_siblings(traced: Any) -> None:
    """An agent's run: several chat calls under the same caller span (one trace)."""
    a = record(parent_span_id=PARENT, span_id="0000000000000001", request_id="a")
    b = record(parent_span_id=PARENT, span_id="0000000000000002", request_id="b")
    await traced(a, b)
    spans = [s for s in traced.sink.spans() if s.name == "chat smart"]
    assert len(spans) == 2
    assert {s.trace_id for s in spans} == {TRACE}
    assert {s.span_id for s in spans} == {"0000000000000001", "0000000000000002"}
    assert {s.parent_span_id for s in spans} == {PARENT}
    assert all(s.parent_remote for s in spans)


async def test_recent_ring_by_trace(traced: Any) -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    await traced(record(), record(trace_id=other, span_id="2222222222222222"))
    tracer: Tracer = traced.tracer
    mine = tracer.recent(TRACE)
    assert all(isinstance(s, SpanData) for s in mine)
    assert {s.name for s in mine} == {"chat smart", "brace.attempt openai/gpt-4o"}
    assert {s.trace_id for s in mine} == {TRACE}
    assert {s.trace_id for s in tracer.recent(other)} == {other}
    assert len(tracer.recent(other)) == 2
    assert len(tracer.recent()) == 4
    assert tracer.recent("f" * 32) == []


async def test_recent_ring_is_bounded() -> None:
    tracer = Tracer(TelemetryConfig(), recent=3)
    await tracer.start()
    for i in range(3):
        tracer.submit(record(request_id=str(i), span_id=f"{i + 1:016x}"))
    await tracer.flush()
    await tracer.aclose()
    kept = tracer.recent()
    assert len(kept) == 3
    # the last three spans built: request 1's attempt, request 2 and its attempt
    assert [s.name for s in kept] == [
        "brace.attempt openai/gpt-4o",
        "chat smart",
        "brace.attempt openai/gpt-4o",
    ]
    assert kept[1].span_id == f"{3:016x}"


async def test_global_tracer_provider_is_untouched() -> None:
    before = trace_api.get_tracer_provider()
    sink = Sink()
    tracer = Tracer(TelemetryConfig(), sink=sink)
    await tracer.start()
    tracer.submit(record())
    await tracer.aclose()
    assert trace_api.get_tracer_provider() is before
    assert len(sink.spans()) == 2


async def test_an_active_caller_span_does_not_become_the_parent() -> None:
    """An in-process user's current span must not leak into records without a parent."""
    from opentelemetry.sdk.trace import TracerProvider

    user = TracerProvider(shutdown_on_exit=False).get_tracer("user")
    sink = Sink()
    tracer = Tracer(TelemetryConfig(), sink=sink)
    with user.start_as_current_span("user work") as current:
        await tracer.start()
        tracer.submit(record())
        await tracer.flush()
    await tracer.aclose()
    req = next(s for s in sink.spans() if s.name == "chat smart")
    assert req.parent_span_id is None
    assert not req.parent_remote
    assert (req.trace_id, req.span_id) == (TRACE, SPAN)
    user_trace = f"{current.get_span_context().trace_id:032x}"
    assert all(s.trace_id != user_trace for s in sink.spans())


async def test_queue_overflow_is_dropped_and_counted() -> None:
    sink = Sink()
    tracer = Tracer(TelemetryConfig(), sink=sink, queue_size=3)
    # not started: nothing drains the queue yet
    for i in range(5):
        tracer.submit(record(request_id=str(i), span_id=f"{i + 1:016x}"))
    assert tracer.dropped == 2
    await tracer.start()
    await tracer.flush()
    assert tracer.traced == 3
    await tracer.aclose()
    requests = [s for s in sink.spans() if s.name == "chat smart"]
    assert len(requests) == 3
    assert request_ids(sink) == {"0", "1", "2"}
    tracer.submit(record())  # after close
    assert tracer.dropped == 3
    assert tracer.traced == 3


async def test_background_worker_exports_without_flush() -> None:
    sink = Sink()
    tracer = Tracer(TelemetryConfig(), recent=10, sink=sink, flush_interval=0.01)
    await tracer.start()
    tracer.submit(record())
    for _ in range(200):
        if sink.requests:
            break
        await asyncio.sleep(0.005)
    assert len(sink.requests) == 1
    assert {s.name for s in sink.spans()} == {"chat smart", "brace.attempt openai/gpt-4o"}
    assert len(tracer.recent(TRACE)) == 2
    await tracer.aclose()
    assert len(sink.requests) == 1  # sent once: nothing left for aclose
    assert len(sink.spans()) == 2


async def test_a_large_batch_arrives_complete_in_batch_sized_requests() -> None:
    sink = Sink()
    tracer = Tracer(TelemetryConfig(), sink=sink, batch_size=128)
    await tracer.start()
    for i in range(300):
        tracer.submit(record(request_id=f"r{i}", span_id=f"{i + 1:016x}"))
    await tracer.flush()
    assert tracer.traced == 300
    assert tracer.dropped == 0
    # 128 + 128 + 44 records, two spans each
    assert [len(views(req)) for req in sink.requests] == [256, 256, 88]
    assert request_ids(sink) == {f"r{i}" for i in range(300)}
    await tracer.aclose()
    assert len(sink.requests) == 3


async def test_inactive_without_endpoint_builds_nothing() -> None:
    tracer = Tracer(TelemetryConfig())
    assert not tracer.active
    await tracer.start()
    tracer.submit(record())
    await tracer.flush()
    assert tracer.traced == 0 and tracer.dropped == 0
    assert tracer.recent() == []
    await tracer.aclose()
    # any one of an endpoint, a sink or a ring makes it active
    assert Tracer(TelemetryConfig(otlp_endpoint="http://127.0.0.1:1/v1/traces")).active
    assert Tracer(TelemetryConfig(), sink=Sink()).active
    assert Tracer(TelemetryConfig(), recent=1).active


async def test_a_bad_record_is_counted_not_fatal(traced: Any) -> None:
    spans = await traced(record(trace_id="not-hex"), record(request_id="good"))
    assert traced.tracer.errors == 1
    assert traced.tracer.traced == 1
    assert "chat smart" in spans
    assert request_ids(traced.sink) == {"good"}


async def test_stats_keys_and_counts() -> None:
    sink = Sink()
    tracer = Tracer(TelemetryConfig(), sink=sink, queue_size=3)
    for r in (
        record(request_id="a", span_id="0000000000000001"),
        record(request_id="bad", span_id="short"),
        record(request_id="b", span_id="0000000000000002"),
        record(request_id="over", span_id="0000000000000003"),  # queue full
    ):
        tracer.submit(r)
    assert tracer.stats() == {"queued": 3, "written": 0, "dropped": 1, "errors": 0}
    await tracer.start()
    await tracer.flush()
    assert tracer.stats() == {"queued": 0, "written": 2, "dropped": 1, "errors": 1}
    assert tracer.export_failures == 0
    await tracer.aclose()
    assert request_ids(sink) == {"a", "b"}


async def test_resource_merges_otel_resource_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "from.os=1")
    env = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=a%20b,service.name=x"}
    sink = Sink()
    tracer = Tracer(TelemetryConfig(service_name="brace-test"), sink=sink, env=env)
    expected = {
        "deployment.environment": "prod",
        "team": "a b",
        "service.name": "brace-test",  # the config wins over the environment
        "telemetry.sdk.name": "brace",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
    }
    assert tracer.resource == expected  # and os.environ was not read
    await tracer.start()
    tracer.submit(record())
    await tracer.aclose()
    spans = sink.spans()
    assert len(spans) == 2
    for span in spans:
        assert span.resource == expected
    (rs,) = sink.requests[0].resource_spans
    assert _kinds(rs.resource.attributes)["team"] == "string_value"

    # without env=, os.environ is read
    assert Tracer(TelemetryConfig(), sink=sink).resource["from.os"] == "1"


async def test_record_fields_are_all_considered() -> None:
    """A new RequestRecord field should be a conscious choice for tracing."""
    handled = {
        "request_id", "trace_id", "span_id", "parent_span_id", "operation", "model",
        "started_at", "duration", "status", "stream", "group", "deployment", "provider",
        "response_model", "response_id", "error_class", "error", "ttft", "queue_wait", "input_tokens",
        "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd", "finish_reasons",
        "attempts", "fallback", "hedged", "priority", "client_disconnected", "run_id",
        # deliberately not exported: tenant (an identity), content (opt-in, not wired yet)
        "tenant", "content",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(RequestRecord)} <= handled


async def test_sample_ratio_keeps_a_share_by_trace_id_and_every_failure() -> None:
    sink = Sink()
    tracer = Tracer(TelemetryConfig(trace_sample_ratio=0.25), sink=sink)
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
    assert tracer.traced == 3
    assert request_ids(sink) == {"kept", "failed", "absorbed"}


async def test_sample_ratio_zero_traces_failures_only() -> None:
    sink = Sink()
    tracer = Tracer(TelemetryConfig(trace_sample_ratio=0.0), sink=sink)
    await tracer.start()
    tracer.submit(record(request_id="ok", trace_id="0" * 31 + "1"))
    tracer.submit(record(request_id="bad", error_class="server_error"))
    await tracer.aclose()
    assert tracer.sampled_out == 1
    assert request_ids(sink) == {"bad"}
