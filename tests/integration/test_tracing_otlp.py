"""Spans reach a (fake) OTLP/HTTP collector on loopback, protobuf-encoded."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from brace.config import TelemetryConfig
from brace.telemetry.observe import parse_traceparent
from brace.telemetry.record import AttemptRecord, RequestRecord
from brace.telemetry.tracing import Tracer

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Collector:
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = ExportTraceServiceRequest()
        body.ParseFromString(await request.read())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend((resource, span) for span in ss.spans)
        return out


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


async def serve_collector(c: Collector) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_post("/v1/traces", c.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    c = Collector()
    runner, port = await serve_collector(c)
    yield c, f"http://127.0.0.1:{port}/v1/traces"
    await runner.cleanup()


def _record(trace_id: str, parent: str | None) -> RequestRecord:
    return RequestRecord(
        request_id="req-otlp",
        trace_id=trace_id,
        span_id="1234567890abcdef",
        parent_span_id=parent,
        operation="chat",
        model="smart",
        started_at=1_700_000_000.0,
        duration=1.0,
        status=200,
        stream=True,
        group="smart",
        deployment="openai/gpt-4o",
        provider="openai",
        response_model="gpt-4o",
        ttft=0.3,
        queue_wait=0.1,
        input_tokens=10,
        output_tokens=5,
        cached_tokens=4,
        reasoning_tokens=2,
        finish_reasons=["stop"],
        attempts=[
            AttemptRecord("azure/gpt-4o", "smart", "azure", 0.1, 0.2, "server_error", 500),
            AttemptRecord("openai/gpt-4o", "smart", "openai", 0.3, 0.2, None, 200),
        ],
    )


async def test_spans_reach_the_collector_continuing_the_traceparent(
    collector: tuple[Collector, str],
) -> None:
    c, endpoint = collector
    parsed = parse_traceparent(TRACEPARENT)
    assert parsed is not None
    trace_id, parent = parsed
    cfg = TelemetryConfig(
        otlp_endpoint=endpoint, otlp_headers={"x-api-key": "k1"}, service_name="brace-it"
    )
    tracer = Tracer(cfg, servers={"openai/gpt-4o": "https://api.openai.com/v1"})
    assert tracer.active
    await tracer.start()
    tracer.submit(_record(trace_id, parent))
    await tracer.aclose()

    assert c.headers and c.headers[0]["x-api-key"] == "k1"
    assert c.headers[0]["Content-Type"] == "application/x-protobuf"
    spans = {s.name: (res, s) for res, s in c.spans()}
    assert set(spans) == {
        "chat smart",
        "brace.admission",
        "brace.attempt azure/gpt-4o",
        "brace.attempt openai/gpt-4o",
    }
    resource, req = spans["chat smart"]
    assert resource["service.name"] == "brace-it"
    assert req.trace_id.hex() == trace_id
    assert req.span_id.hex() == "1234567890abcdef"
    assert req.parent_span_id.hex() == parent
    assert req.kind == Span.SPAN_KIND_CLIENT
    assert req.start_time_unix_nano == 1_700_000_000 * 10**9
    assert req.end_time_unix_nano - req.start_time_unix_nano == 10**9
    attrs = {a.key: _value(a.value) for a in req.attributes}
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "smart"
    assert attrs["gen_ai.response.model"] == "gpt-4o"
    assert attrs["gen_ai.usage.input_tokens"] == 10
    assert attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 4
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 2
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["server.address"] == "api.openai.com"
    assert attrs["server.port"] == 443
    assert attrs["brace.absorbed_failures"] == 1
    assert [e.name for e in req.events] == ["gen_ai.first_token"]

    for name in ("brace.admission", "brace.attempt azure/gpt-4o", "brace.attempt openai/gpt-4o"):
        _, child = spans[name]
        assert child.trace_id.hex() == trace_id
        assert child.parent_span_id == req.span_id
    _, failed = spans["brace.attempt azure/gpt-4o"]
    assert failed.status.code == Status.STATUS_CODE_ERROR
    failed_attrs = {a.key: _value(a.value) for a in failed.attributes}
    assert failed_attrs["error.type"] == "server_error"
    assert failed_attrs["http.response.status_code"] == 500


async def test_flush_delivers_before_close(collector: tuple[Collector, str]) -> None:
    c, endpoint = collector
    tracer = Tracer(TelemetryConfig(otlp_endpoint=endpoint))
    await tracer.start()
    tracer.submit(_record("0af7651916cd43dd8448eb211c80319d", None))
    await tracer.flush()
    roots = [s for _, s in c.spans() if s.name == "chat smart"]
    assert len(roots) == 1
    assert roots[0].parent_span_id == b""
    assert roots[0].trace_id.hex() == "0af7651916cd43dd8448eb211c80319d"
    await tracer.aclose()


async def test_close_is_bounded_when_the_collector_hangs() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/traces", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        cfg = TelemetryConfig(otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces")
        tracer = Tracer(cfg, close_timeout=1.0)
        await tracer.start()
        tracer.submit(_record("0af7651916cd43dd8448eb211c80319e", None))
        t = time.monotonic()
        await tracer.aclose()
        assert time.monotonic() - t < 3.0
    finally:
        await runner.cleanup()


class FlakyCollector(Collector):
    """Answers ``statuses`` in turn (then 200), with ``Retry-After: 0`` on errors."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__()
        self.statuses = statuses
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.statuses:
            status = self.statuses.pop(0)
            await request.read()
            return web.Response(status=status, headers={"Retry-After": "0"})
        return await super().handle(request)


async def test_retryable_answers_are_retried_until_delivered() -> None:
    c = FlakyCollector([503, 429])
    runner, port = await serve_collector(c)
    try:
        tracer = Tracer(TelemetryConfig(otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces"))
        await tracer.start()
        tracer.submit(_record("0af7651916cd43dd8448eb211c80319d", None))
        await tracer.flush()
        assert c.calls == 3
        assert [s.name for _, s in c.spans()].count("chat smart") == 1
        assert tracer.export_failures == 0 and tracer.stats()["errors"] == 0
        await tracer.aclose()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("header", "calls", "error"),
    [
        ("x-api-key", 1, "HTTP 400"),  # 400 is not retryable
        # credentials in the URL and an Authorization header: aiohttp refuses to send;
        # the tracer counts it and lives on
        ("authorization", 0, "ValueError"),
    ],
)
async def test_a_rejected_batch_is_dropped_counted_and_logged_without_secrets(
    caplog: pytest.LogCaptureFixture, header: str, calls: int, error: str
) -> None:
    c = FlakyCollector([400, 400])
    runner, port = await serve_collector(c)
    try:
        cfg = TelemetryConfig(
            otlp_endpoint=f"http://user:pa55word@127.0.0.1:{port}/v1/traces?token=t0ken",
            otlp_headers={header: "Bearer s3cret"},
        )
        tracer = Tracer(cfg)
        await tracer.start()
        for n in range(2):
            tracer.submit(_record(f"0af7651916cd43dd8448eb211c8031{n:02x}", None))
            await tracer.flush()
        assert c.calls == 2 * calls
        assert tracer.export_failures == 2 and tracer.stats()["errors"] == 2
        assert tracer.traced == 2  # the tracer itself lives on
        await tracer.aclose()
    finally:
        await runner.cleanup()
    logged = caplog.text
    assert error in logged and f"127.0.0.1:{port}/v1/traces" in logged
    for secret in ("pa55word", "t0ken", "s3cret", "user:"):
        assert secret not in logged


async def test_an_unreachable_collector_costs_bounded_retries_then_counts() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracer = Tracer(
        TelemetryConfig(otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces"), close_timeout=0.4
    )
    await tracer.start()
    tracer.submit(_record("0af7651916cd43dd8448eb211c80319d", None))
    t = time.monotonic()
    await tracer.aclose()  # the retries (0.5 s, 1 s) would pass the close deadline: dropped
    assert time.monotonic() - t < 2.0
    assert tracer.export_failures == 1
