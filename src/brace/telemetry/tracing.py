"""OpenTelemetry spans for finished requests, built after the fact, off the request path.

The :class:`Tracer` subscribes (through :class:`~brace.telemetry.hub.Telemetry`) to
:class:`~brace.telemetry.record.RequestRecord`\\ s.  :meth:`Tracer.submit` only appends
the record to a bounded queue (overflow is dropped and counted in ``dropped``); a
background task takes records in batches and, in a worker thread, turns each into
spans with explicit start/end times and explicit ids, which a ``BatchSpanProcessor``
exports over OTLP/HTTP.  Without ``telemetry.otlp_endpoint`` (and with no exporter or
recent-span ring asked for) the tracer is inactive: ``submit`` returns at once and no
span is ever built.

Span model, one trace per request (continuing the caller's ``traceparent``)::

    <caller's span, remote>                         (from traceparent, if any)
    └── chat {model}           CLIENT  id = record.span_id, trace = record.trace_id
        ├── brace.admission    INTERNAL  the queue wait (only when queue_wait > 0)
        ├── brace.attempt {deployment}  CLIENT  one per upstream attempt
        └── ...                          (ERROR status when the attempt failed)

``embeddings {model}`` replaces ``chat {model}`` for embeddings.  Because each request is
one self-contained subtree under whatever parent the caller propagates, an agent's
``invoke_agent`` span with ``execute_tool`` and many ``chat`` children in one trace
needs nothing more from Brace.

Fixed ids: spans go through the SDK's own ``Tracer`` (so the sampler, span limits,
resource, instrumentation scope and processors all behave as usual); the only thing
steered is the id generator, which hands out the ids we feed it just before each
``start_span`` (:class:`_FedIds`).  The SDK documents that ``ReadableSpan`` objects are
not meant to be built by users, which rules out the other route.

The tracer owns its ``TracerProvider``; it never reads or sets the global provider, so
an in-process user's own tracing setup is left alone.  Attribute names follow the
OpenTelemetry GenAI semantic conventions (see ``docs/tracing.md``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags

from .._tasks import stop_task
from .record import RequestRecord

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from ..config import TelemetryConfig

__all__ = ["Tracer"]

log = logging.getLogger("brace.telemetry.tracing")

_SCOPE = "brace"
_NS = 1_000_000_000

# Brace preset names whose GenAI ``gen_ai.provider.name`` well-known value differs.
# Presets not listed here (openai, anthropic, groq, deepseek, vllm, ollama...) are
# reported as they are: the conventions allow custom values.
_PROVIDER_NAMES = {
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "anthropic-mock": "anthropic",
    "mock": "openai",
}


class _FedIds(IdGenerator):
    """Hands the SDK the ids Brace already chose; random ones when none was fed.

    The feed is thread-local, so two threads building spans never see each other's ids.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._random = RandomIdGenerator()

    def feed(self, *, trace_id: int | None = None, span_id: int | None = None) -> None:
        self._local.trace_id = trace_id
        self._local.span_id = span_id

    def generate_trace_id(self) -> int:
        value: int | None = getattr(self._local, "trace_id", None)
        if value is None:
            return self._random.generate_trace_id()
        self._local.trace_id = None
        return value

    def generate_span_id(self) -> int:
        value: int | None = getattr(self._local, "span_id", None)
        if value is None:
            return self._random.generate_span_id()
        self._local.span_id = None
        return value


class _RecentSpans(SpanProcessor):
    """Keeps the last ``size`` finished spans in memory (for tests and the dashboard)."""

    def __init__(self, size: int) -> None:
        self._spans: deque[ReadableSpan] = deque(maxlen=size)
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self._spans.append(span)

    def spans(self, trace_id: int | None) -> list[ReadableSpan]:
        with self._lock:
            spans = list(self._spans)
        if trace_id is None:
            return spans
        return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


class Tracer:
    """Turns request records into OpenTelemetry spans and exports them.

    ``exporter`` adds a span exporter (tests pass an ``InMemorySpanExporter``);
    ``recent`` keeps the last *n* finished spans for :meth:`recent`; ``servers`` maps a
    deployment id to its base URL, for ``server.address``/``server.port`` on attempts.
    ``queue_size`` defaults to ``telemetry.writer_queue``.
    """

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        exporter: SpanExporter | None = None,
        recent: int = 0,
        servers: Mapping[str, str] | None = None,
        queue_size: int | None = None,
        batch_size: int = 256,
        close_timeout: float = 5.0,
    ) -> None:
        self.config = config
        self._exporter = exporter
        self._recent_size = recent
        self._servers = {k: _server(v) for k, v in (servers or {}).items()}
        self._queue: deque[RequestRecord] = deque()
        self._queue_size = queue_size if queue_size is not None else config.writer_queue
        self._batch_size = batch_size
        self._close_timeout = close_timeout
        self.active = bool(config.otlp_endpoint) or exporter is not None or recent > 0
        """Whether spans are built at all (an endpoint, an exporter or a ring to fill)."""
        ratio = config.trace_sample_ratio
        self._sample_below = 1 << 64 if ratio >= 1.0 else int(ratio * (1 << 64))
        """A record whose trace id's low 64 bits are below this is traced (the rule of
        OpenTelemetry's ``TraceIdRatioBased``); records with a failure always are."""
        self.sampled_out = 0
        """Records not traced because of ``telemetry.trace_sample_ratio``."""
        self.dropped = 0
        """Records dropped because the queue was full (or the tracer closed)."""
        self.traced = 0
        """Records turned into spans."""
        self.errors = 0
        """Records that could not be turned into spans (bad ids...)."""
        self._provider: TracerProvider | None = None
        self._otel: trace_api.Tracer | None = None
        self._ids = _FedIds()
        self._ring: _RecentSpans | None = None
        self._wake = asyncio.Event()
        self._convert_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        if not self.active or self._provider is not None:
            return
        cfg = self.config
        no_metrics = NoOpMeterProvider()
        # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES (deployment.environment...),
        # as every OpenTelemetry SDK does; service.name from the config wins.
        provider = TracerProvider(
            resource=Resource.create({"service.name": cfg.service_name}),
            # every submitted record is exported: the record does not carry the caller's
            # sampled flag, and an OTEL_TRACES_SAMPLER meant for something else must not
            # silently drop Brace's spans.
            sampler=ALWAYS_ON,
            id_generator=self._ids,
            # aclose() shuts the provider down; an atexit hook would also keep every
            # provider (one per gateway or test) alive until the process ends.
            shutdown_on_exit=False,
            # the SDK's own self-metrics would otherwise go to the global meter provider
            meter_provider=no_metrics,
        )
        if cfg.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            otlp = OTLPSpanExporter(
                endpoint=cfg.otlp_endpoint,
                headers=dict(cfg.otlp_headers) or None,
                timeout=self._close_timeout,
                meter_provider=no_metrics,
            )
            provider.add_span_processor(BatchSpanProcessor(otlp, meter_provider=no_metrics))
        if self._exporter is not None:
            provider.add_span_processor(
                BatchSpanProcessor(self._exporter, meter_provider=no_metrics)
            )
        if self._recent_size > 0:
            self._ring = _RecentSpans(self._recent_size)
            provider.add_span_processor(self._ring)
        self._provider = provider
        self._otel = provider.get_tracer(_SCOPE)
        self._task = asyncio.create_task(self._run(), name="brace-tracer")

    def submit(self, record: RequestRecord) -> None:
        """Queue a record for tracing; never blocks, drops (and counts) when full."""
        if not self.active:
            return
        if self._sample_below <= _MAX_ID64 and not _keep(record, self._sample_below):
            self.sampled_out += 1
            return
        if self._closed or len(self._queue) >= self._queue_size:
            self.dropped += 1
            return
        self._queue.append(record)
        self._wake.set()

    async def flush(self) -> None:
        """Turn every queued record into spans and push them through the exporters."""
        await self._drain()
        if self._provider is not None:
            timeout_ms = int(self._close_timeout * 1000)
            await asyncio.to_thread(self._provider.force_flush, timeout_ms)

    def recent(self, trace_id: str | None = None) -> list[ReadableSpan]:
        """The last finished spans kept in memory (``recent=`` > 0), of one trace or all."""
        if self._ring is None:
            return []
        return self._ring.spans(int(trace_id, 16) if trace_id is not None else None)

    async def aclose(self) -> None:
        """Drain the queue, flush the exporters and shut the provider down (bounded)."""
        if self._closed:
            return
        self._closed = True
        deadline = asyncio.get_running_loop().time() + self._close_timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._drain()
        except TimeoutError:
            log.warning("tracer: queue not drained in %.1fs; dropped the rest", self._close_timeout)
        # left over: a drain cut short, or records submitted to a tracer never started
        self.dropped += len(self._queue)
        self._queue.clear()
        task, self._task = self._task, None
        await stop_task(task)
        provider, self._provider = self._provider, None
        if provider is None:
            return
        remaining = max(0.05, deadline - asyncio.get_running_loop().time())
        # shutdown() flushes the batch processors and closes the exporters; it runs in a
        # thread (exports are blocking HTTP) and is waited on for a bounded time only.
        flushing = asyncio.ensure_future(asyncio.to_thread(_shutdown, provider, remaining))
        done, _ = await asyncio.wait({flushing}, timeout=remaining + 1.0)
        if not done:
            log.warning("tracer: exporter did not shut down in %.1fs", self._close_timeout)

    # -- background -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> None:
        async with self._convert_lock:
            while self._queue and self._otel is not None:
                n = min(self._batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                await asyncio.to_thread(self._convert, batch)

    def _convert(self, batch: Sequence[RequestRecord]) -> None:
        for record in batch:
            try:
                self._spans(record)
            except Exception:  # one bad record must never stop the tracer
                self.errors += 1
                if self.errors == 1:
                    log.exception("tracer: could not build spans for %s", record.request_id)
            else:
                self.traced += 1

    def _spans(self, record: RequestRecord) -> None:
        otel = self._otel
        assert otel is not None  # _drain only converts while started
        trace_id = int(record.trace_id, 16)
        start = _ns(record.started_at)
        end = start + _ns(record.duration)

        if record.parent_span_id:
            parent = trace_api.SpanContext(
                trace_id=trace_id,
                span_id=int(record.parent_span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            parent_ctx = trace_api.set_span_in_context(
                trace_api.NonRecordingSpan(parent), Context()
            )
            self._ids.feed(span_id=int(record.span_id, 16))
        else:
            # a new trace: an explicit empty context, never the current one (the worker
            # copied whatever span was current where start() was awaited)
            parent_ctx = Context()
            self._ids.feed(trace_id=trace_id, span_id=int(record.span_id, 16))

        span = otel.start_span(
            f"{record.operation} {record.model}",
            context=parent_ctx,
            kind=SpanKind.CLIENT,
            attributes=self._request_attributes(record),
            start_time=start,
        )
        self._ids.feed()  # children get random ids even if the SDK consumed fewer
        ctx = trace_api.set_span_in_context(span, Context())

        if record.queue_wait and record.queue_wait > 0:
            admission = otel.start_span(
                "brace.admission",
                context=ctx,
                kind=SpanKind.INTERNAL,
                attributes=_clean(
                    {
                        "brace.group": record.model,
                        "brace.priority": record.priority,
                        "brace.queue_wait_s": record.queue_wait,
                    }
                ),
                start_time=start,
            )
            admission.end(end_time=start + _ns(record.queue_wait))

        retries: dict[str, int] = {}
        groups: list[str] = []
        for index, attempt in enumerate(record.attempts):
            if attempt.group not in groups:
                groups.append(attempt.group)
            retry = retries.get(attempt.group, 0)
            retries[attempt.group] = retry + 1
            attrs: dict[str, AttributeValue | None] = {
                "brace.deployment": attempt.deployment,
                "brace.group": attempt.group,
                "gen_ai.provider.name": _provider_name(attempt.provider),
                "brace.attempt.index": index,
                "brace.attempt.retry": retry,
                "brace.attempt.fallback": groups.index(attempt.group),
                "brace.hedge": attempt.hedge,
                "http.response.status_code": attempt.status,
                "error.type": attempt.error_class,
            }
            server = self._servers.get(attempt.deployment)
            if server is not None:
                attrs["server.address"], attrs["server.port"] = server
            a_start = start + _ns(attempt.offset)
            child = otel.start_span(
                f"brace.attempt {attempt.deployment}",
                context=ctx,
                kind=SpanKind.CLIENT,
                attributes=_clean(attrs),
                start_time=a_start,
            )
            if attempt.error_class is not None:
                child.set_status(Status(StatusCode.ERROR, attempt.error or attempt.error_class))
            child.end(end_time=a_start + _ns(attempt.duration))

        if record.ttft is not None:
            span.add_event(
                "gen_ai.first_token",
                {"brace.ttft_s": record.ttft},
                timestamp=start + _ns(record.ttft),
            )
        if record.error_class is not None:
            span.set_status(Status(StatusCode.ERROR, record.error or record.error_class))
        span.end(end_time=end)

    def _request_attributes(self, record: RequestRecord) -> dict[str, AttributeValue]:
        provider = record.provider
        if provider is None and record.attempts:
            provider = record.attempts[-1].provider
        attrs: dict[str, AttributeValue | None] = {
            "gen_ai.operation.name": record.operation,
            "gen_ai.provider.name": _provider_name(provider),
            "gen_ai.request.model": record.model,
            "gen_ai.request.stream": record.stream,
            "gen_ai.response.model": record.response_model,
            # not on RequestRecord yet: picked up as soon as it is added there
            "gen_ai.response.id": record.response_id,
            "gen_ai.response.finish_reasons": record.finish_reasons or None,
            "gen_ai.usage.input_tokens": record.input_tokens,
            "gen_ai.usage.output_tokens": record.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": record.cached_tokens,
            "gen_ai.usage.reasoning.output_tokens": record.reasoning_tokens,
            "error.type": record.error_class,
            "brace.request_id": record.request_id,
            "brace.group": record.group,
            "brace.deployment": record.deployment,
            "brace.status_code": record.status,
            "brace.attempts": len(record.attempts),
            "brace.absorbed_failures": record.absorbed,
            "brace.fallback": ">".join(record.fallback) if record.fallback else None,
            "brace.hedged": record.hedged,
            "brace.priority": record.priority,
            "brace.queue_wait_s": record.queue_wait,
            "brace.cost_usd": record.cost_usd,
            "brace.client_disconnected": record.client_disconnected,
        }
        if record.stream and record.ttft is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = record.ttft
            attrs["brace.ttft_s"] = record.ttft
        if record.deployment is not None and record.deployment in self._servers:
            attrs["server.address"], attrs["server.port"] = self._servers[record.deployment]
        return _clean(attrs)


_MAX_ID64 = (1 << 64) - 1


def _keep(record: RequestRecord, below: int) -> bool:
    """Is this record traced at a sample ratio of ``below / 2**64``?  Failures always are."""
    if record.error_class is not None or any(a.error_class for a in record.attempts):
        return True
    try:
        return int(record.trace_id[16:], 16) < below
    except ValueError:  # not hex: let the span builder count it as an error
        return True


def _ns(seconds: float) -> int:
    return round(seconds * _NS)


def _clean(attrs: Mapping[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {k: v for k, v in attrs.items() if v is not None}


def _provider_name(preset: str | None) -> str | None:
    if not preset:
        return None
    return _PROVIDER_NAMES.get(preset, preset)


def _server(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def _shutdown(provider: TracerProvider, timeout: float) -> None:
    provider.force_flush(int(timeout * 1000))
    provider.shutdown()
