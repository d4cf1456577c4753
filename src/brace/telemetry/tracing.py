"""OpenTelemetry spans for finished requests, built after the fact, off the request path.

The :class:`Tracer` subscribes (through :class:`~brace.telemetry.hub.Telemetry`) to
:class:`~brace.telemetry.record.RequestRecord`\\ s.  :meth:`Tracer.submit` only appends
the record to a bounded queue (overflow is dropped and counted in ``dropped``); a
background task takes records in batches (when ``batch_size`` are queued, or every
``flush_interval``), turns each into :class:`~brace.telemetry._otlp.SpanData` with
explicit ids and times, encodes the batch as one OTLP ``ExportTraceServiceRequest``
and sends it over OTLP/HTTP (protobuf) — see :mod:`brace.telemetry._otlp` for why this
is not the OpenTelemetry SDK.  Without ``telemetry.otlp_endpoint`` (and with no sink or
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

Nothing global is read or set: an in-process user's own OpenTelemetry setup (tracer
provider, current span) is left alone.  Attribute names follow the OpenTelemetry GenAI
semantic conventions (see ``docs/tracing.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .._tasks import stop_task
from .._version import __version__
from ..presets import PRESETS
from ._otlp import (
    KIND_CLIENT,
    KIND_INTERNAL,
    STATUS_ERROR,
    AttributeValue,
    OtlpHttpExporter,
    SpanData,
    _Keys,
    encode_request,
    env_resource_attributes,
)
from .record import RequestRecord

if TYPE_CHECKING:
    from ..config import TelemetryConfig

__all__ = ["SpanData", "SpanSink", "Tracer"]

log = logging.getLogger("brace.telemetry.tracing")

_SCOPE = ("brace", __version__)
_NS = 1_000_000_000

SpanSink = Callable[[bytes], Awaitable[object]]
"""Where encoded ``ExportTraceServiceRequest`` bytes go (the OTLP exporter, or a test)."""


class Tracer:
    """Turns request records into spans and exports them.

    ``sink`` receives each encoded export request instead of (or, with an endpoint,
    besides) the OTLP exporter (tests decode it); ``recent`` keeps the last *n* spans
    for :meth:`recent`; ``servers`` maps a deployment id to its base URL, for
    ``server.address``/``server.port``.  ``queue_size`` defaults to
    ``telemetry.writer_queue``.
    """

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        sink: SpanSink | None = None,
        recent: int = 0,
        servers: Mapping[str, str] | None = None,
        queue_size: int | None = None,
        batch_size: int = 128,
        flush_interval: float = 0.25,
        close_timeout: float = 5.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._sink = sink
        self._servers = {k: _server(v) for k, v in (servers or {}).items()}
        self._queue: deque[RequestRecord] = deque()
        self._queue_size = queue_size if queue_size is not None else config.writer_queue
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._close_timeout = close_timeout
        self.active = bool(config.otlp_endpoint) or sink is not None or recent > 0
        """Whether spans are built at all (an endpoint, a sink or a ring to fill)."""
        ratio = config.trace_sample_ratio
        self._sample_below = 1 << 64 if ratio >= 1.0 else int(ratio * (1 << 64))
        """A record whose trace id's low 64 bits are below this is traced (the rule of
        OpenTelemetry's ``TraceIdRatioBased``); records with a failure always are."""
        # OTEL_RESOURCE_ATTRIBUTES is merged, as every OpenTelemetry SDK does;
        # service.name from the config wins.
        self.resource: dict[str, AttributeValue] = {
            **env_resource_attributes(env if env is not None else os.environ),
            "service.name": config.service_name,
            "telemetry.sdk.name": "brace",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": __version__,
        }
        self.sampled_out = 0
        """Records not traced because of ``telemetry.trace_sample_ratio``."""
        self.dropped = 0
        """Records dropped because the queue was full (or the tracer closed)."""
        self.traced = 0
        """Records turned into spans."""
        self.errors = 0
        """Records that could not be turned into spans (bad ids...)."""
        self._exporter: OtlpHttpExporter | None = None
        self._ring: deque[SpanData] | None = deque(maxlen=recent) if recent > 0 else None
        self._keys = _Keys()
        # child span ids must be random, not secret: a PRNG seeded from the OS
        self._rand = random.Random(os.urandom(16))
        self._wake: asyncio.Event | None = None
        self._convert_lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    @property
    def export_failures(self) -> int:
        """Export requests the collector never accepted (after retries)."""
        return self._exporter.failed if self._exporter is not None else 0

    def stats(self) -> dict[str, int]:
        """For ``/metrics``: records queued, traced and dropped; ``errors`` adds records
        that could not become spans and export requests the collector never took."""
        return {
            "queued": len(self._queue),
            "written": self.traced,
            "dropped": self.dropped,
            "errors": self.errors + self.export_failures,
        }

    async def start(self) -> None:
        if not self.active or self._started:
            return
        self._started = True
        if self.config.otlp_endpoint:
            self._exporter = OtlpHttpExporter(
                self.config.otlp_endpoint,
                dict(self.config.otlp_headers),
                timeout=self._close_timeout,
            )
        self._wake = asyncio.Event()
        self._convert_lock = asyncio.Lock()
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
        if self._wake is not None and len(self._queue) >= self._batch_size:
            self._wake.set()

    async def flush(self) -> None:
        """Turn every queued record into spans and send them (each batch once)."""
        await self._drain()

    def recent(self, trace_id: str | None = None) -> list[SpanData]:
        """The last spans kept in memory (``recent=`` > 0), of one trace or all."""
        if self._ring is None:
            return []
        spans = list(self._ring)
        return spans if trace_id is None else [s for s in spans if s.trace_id == trace_id]

    async def aclose(self) -> None:
        """Drain the queue and send what is left, within ``close_timeout``."""
        if self._closed:
            return
        self._closed = True
        if self._exporter is not None:
            self._exporter.deadline = asyncio.get_running_loop().time() + self._close_timeout
        try:
            async with asyncio.timeout(self._close_timeout):
                await self._drain()  # after the batch the background task may be sending
        except TimeoutError:
            log.warning("tracer: queue not drained in %.1fs; dropped the rest", self._close_timeout)
        task, self._task = self._task, None
        await stop_task(task)
        # left over: a drain cut short, or records submitted to a tracer never started
        self.dropped += len(self._queue)
        self._queue.clear()
        if self._exporter is not None:
            await self._exporter.aclose()

    # -- background -------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if len(self._queue) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> None:
        if self._convert_lock is None:  # never started
            return
        async with self._convert_lock:
            while self._queue:
                n = min(self._batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                spans = self._convert(batch)
                if self._ring is not None:
                    self._ring.extend(spans)
                if spans and (self._exporter is not None or self._sink is not None):
                    body = encode_request(
                        spans, resource=self.resource, scope=_SCOPE, keys=self._keys
                    )
                    if self._sink is not None:
                        await self._sink(body)
                    if self._exporter is not None:
                        await self._exporter.export(body)
                else:
                    await asyncio.sleep(0)  # let requests run between batches

    def _convert(self, batch: Sequence[RequestRecord]) -> list[SpanData]:
        out: list[SpanData] = []
        for record in batch:
            try:
                spans = self._spans(record)
            except Exception:  # one bad record must never stop the tracer
                self.errors += 1
                if self.errors == 1:
                    log.exception("tracer: could not build spans for %s", record.request_id)
            else:
                out += spans
                self.traced += 1
        return out

    def _spans(self, record: RequestRecord) -> list[SpanData]:
        trace_id = record.trace_id
        span_id = record.span_id
        if len(trace_id) != 32 or len(span_id) != 16 or not _hex(trace_id + span_id):
            raise ValueError(f"bad trace or span id: {trace_id!r} {span_id!r}")
        start = _ns(record.started_at)
        end = start + _ns(record.duration)
        bits = self._rand.getrandbits
        span = SpanData(
            f"{record.operation} {record.model}",
            KIND_CLIENT,
            trace_id,
            span_id,
            record.parent_span_id or None,
            start,
            end,
            self._request_attributes(record),
            parent_remote=bool(record.parent_span_id),
        )
        out = [span]
        if record.queue_wait and record.queue_wait > 0:
            out.append(
                SpanData(
                    "brace.admission",
                    KIND_INTERNAL,
                    trace_id,
                    f"{bits(64) or 1:016x}",
                    span_id,
                    start,
                    start + _ns(record.queue_wait),
                    _clean(
                        {
                            "brace.group": record.model,
                            "brace.priority": record.priority,
                            "brace.queue_wait_s": record.queue_wait,
                        }
                    ),
                )
            )

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
                "brace.attempt.retry_delay_s": attempt.retry_delay,
            }
            server = self._servers.get(attempt.deployment)
            if server is not None:
                attrs["server.address"], attrs["server.port"] = server
            a_start = start + _ns(attempt.offset)
            child = SpanData(
                f"brace.attempt {attempt.deployment}",
                KIND_CLIENT,
                trace_id,
                f"{bits(64) or 1:016x}",
                span_id,
                a_start,
                a_start + _ns(attempt.duration),
                _clean(attrs),
            )
            if attempt.error_class is not None:
                child.status_code = STATUS_ERROR
                child.status_message = attempt.error or attempt.error_class
            out.append(child)

        if record.ttft is not None:
            span.events.append(
                ("gen_ai.first_token", start + _ns(record.ttft), {"brace.ttft_s": record.ttft})
            )
        if record.error_class is not None:
            span.status_code = STATUS_ERROR
            span.status_message = record.error or record.error_class
        return out

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
            "gen_ai.conversation.id": record.run_id,
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


def _hex(value: str) -> bool:
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


def _ns(seconds: float) -> int:
    return round(seconds * _NS)


def _clean(attrs: Mapping[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {k: v for k, v in attrs.items() if v is not None}


def _provider_name(preset: str | None) -> str | None:
    """The GenAI ``gen_ai.provider.name`` of a preset (the registry's; an unknown
    preset is reported as it is: the conventions allow custom values)."""
    if not preset:
        return None
    entry = PRESETS.get(preset)
    return entry.provider_name if entry is not None else preset


def _server(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port
