"""OTLP/HTTP trace export: Brace's spans encoded as protobuf, POSTed with aiohttp.

Why not the OpenTelemetry SDK and its OTLP exporter?  Measured here (``bench/micro.py``,
``bench/telemetry.py``): building two SDK spans per request and encoding them with the
generated protobuf classes cost ~85 µs of CPU per request, more than the rest of Brace
together, and halved the gateway's throughput with every request traced.  Brace's spans
are finished when they are built (explicit ids, times, attributes, no context
propagation), so what the SDK adds — live spans, processors, samplers — is unused.
This module writes the OTLP wire format directly (the messages of
``opentelemetry/proto/trace/v1/trace.proto`` and ``collector/trace/v1/
trace_service.proto``: a few fixed fields, varints and length-delimited bytes), caching
the bytes of every attribute key; the tests decode its output with the official
``opentelemetry-proto`` classes.

:class:`SpanData` is one finished span; :func:`encode_request` turns spans into an
``ExportTraceServiceRequest``; :class:`OtlpHttpExporter` sends it (``Content-Type:
application/x-protobuf``), retrying what OTLP/HTTP says is retryable (429, 502, 503,
504, connection errors) with backoff and ``Retry-After``, within a time bound.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

import aiohttp

from ..state._url import redact_url

__all__ = [
    "KIND_CLIENT",
    "KIND_INTERNAL",
    "STATUS_ERROR",
    "AttributeValue",
    "OtlpHttpExporter",
    "SpanData",
    "encode_request",
    "env_resource_attributes",
]

log = logging.getLogger("brace.telemetry.otlp")

AttributeValue = str | bool | int | float | Sequence[str]

KIND_INTERNAL = 1
KIND_CLIENT = 3
STATUS_ERROR = 2
_FLAG_SAMPLED = 0x01
_FLAG_HAS_IS_REMOTE = 0x100
_FLAG_IS_REMOTE = 0x200
_U64 = (1 << 64) - 1


@dataclass(slots=True)
class SpanData:
    """One finished span.  Ids are hex strings (32 and 16 digits); times are Unix ns."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, AttributeValue]
    parent_remote: bool = False
    events: list[tuple[str, int, dict[str, AttributeValue]]] = field(default_factory=list)
    """(name, Unix ns, attributes) of each span event."""
    status_code: int = 0
    """0: unset, 2: error (OTLP ``Status.StatusCode``)."""
    status_message: str | None = None


# ---------------------------------------------------------------------- wire format


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]
_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the length, the bytes."""
    return tag + _varint(len(payload)) + payload


_LOW_CARDINALITY = frozenset(
    {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.request.stream",
        "gen_ai.response.model",
        "error.type",
        "http.response.status_code",
        "server.address",
        "server.port",
        "brace.group",
        "brace.deployment",
        "brace.status_code",
        "brace.attempts",
        "brace.absorbed_failures",
        "brace.hedged",
        "brace.hedge",
        "brace.priority",
        "brace.client_disconnected",
        "brace.attempt.index",
        "brace.attempt.retry",
        "brace.attempt.fallback",
    }
)
"""Attributes with few distinct values: their whole ``KeyValue`` bytes are cached."""
_MAX_CACHED = 10_000


class _Keys(dict[str, bytes]):
    """``KeyValue.key`` (field 1) bytes of each attribute name, encoded once; and the
    whole ``KeyValue`` field of low-cardinality attributes (``pairs``: by field tag,
    then by (name, value); bounded)."""

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        super().__init__()
        self.pairs: dict[bytes, dict[tuple[str, AttributeValue], bytes]] = {}

    def __missing__(self, key: str) -> bytes:
        value = self[key] = _field(b"\x0a", key.encode())
        return value


def _any_value(value: AttributeValue) -> bytes:
    """An ``AnyValue`` message."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())  # string_value = 1
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"  # bool_value = 2
    if isinstance(value, int):
        return b"\x18" + _varint(value & _U64)  # int_value = 3 (two's complement)
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)  # double_value = 4
    # array_value = 5: ArrayValue { repeated AnyValue values = 1 }
    return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))


def _attributes(tag: bytes, attrs: Mapping[str, AttributeValue], keys: _Keys) -> bytes:
    """Repeated ``KeyValue`` fields under ``tag``."""
    cached = keys.pairs.get(tag)
    if cached is None:
        cached = keys.pairs[tag] = {}
    out = []
    for k, v in attrs.items():
        if k in _LOW_CARDINALITY:
            kv = cached.get((k, v))
            if kv is None:
                kv = _field(tag, keys[k] + _field(b"\x12", _any_value(v)))
                if len(cached) < _MAX_CACHED:
                    cached[k, v] = kv
            out.append(kv)
        else:
            out.append(_field(tag, keys[k] + _field(b"\x12", _any_value(v))))
    return b"".join(out)


def _span(span: SpanData, keys: _Keys) -> bytes:
    flags = _FLAG_SAMPLED | _FLAG_HAS_IS_REMOTE | (_FLAG_IS_REMOTE if span.parent_remote else 0)
    parts = [
        b"\x0a\x10" + bytes.fromhex(span.trace_id),  # trace_id = 1
        b"\x12\x08" + bytes.fromhex(span.span_id),  # span_id = 2
    ]
    if span.parent_span_id:
        parts.append(b"\x22\x08" + bytes.fromhex(span.parent_span_id))  # parent_span_id = 4
    parts += [
        _field(b"\x2a", span.name.encode()),  # name = 5
        b"\x30" + _varint(span.kind),  # kind = 6
        b"\x39" + _pack_q(span.start_ns),  # start_time_unix_nano = 7 (fixed64)
        b"\x41" + _pack_q(span.end_ns),  # end_time_unix_nano = 8 (fixed64)
        _attributes(b"\x4a", span.attributes, keys),  # attributes = 9
    ]
    for name, ts, attrs in span.events:  # events = 11
        event = b"\x09" + _pack_q(ts) + _field(b"\x12", name.encode())
        parts.append(_field(b"\x5a", event + _attributes(b"\x1a", attrs, keys)))
    if span.status_code:  # status = 15: Status { message = 2; code = 3 }
        status = _field(b"\x12", span.status_message.encode()) if span.status_message else b""
        parts.append(_field(b"\x7a", status + b"\x18" + _varint(span.status_code)))
    parts.append(b"\x85\x01" + _pack_i(flags))  # flags = 16 (fixed32)
    return b"".join(parts)


def encode_request(
    spans: Sequence[SpanData],
    *,
    resource: Mapping[str, AttributeValue],
    scope: tuple[str, str],
    keys: _Keys | None = None,
) -> bytes:
    """An ``ExportTraceServiceRequest`` with one resource and one instrumentation scope."""
    keys = keys if keys is not None else _Keys()
    scope_msg = _field(b"\x0a", scope[0].encode()) + _field(b"\x12", scope[1].encode())
    scope_spans = _field(b"\x0a", scope_msg) + b"".join(
        _field(b"\x12", _span(s, keys)) for s in spans
    )
    resource_msg = _attributes(b"\x0a", resource, keys)
    resource_spans = _field(b"\x0a", resource_msg) + _field(b"\x12", scope_spans)
    return _field(b"\x0a", resource_spans)


def env_resource_attributes(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, values percent-decoded), as every
    OpenTelemetry SDK reads it; malformed entries are skipped."""
    raw = (env if env is not None else os.environ).get("OTEL_RESOURCE_ATTRIBUTES", "")
    out: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


# ---------------------------------------------------------------------- HTTP export

_RETRYABLE = frozenset({408, 429, 502, 503, 504})


class OtlpHttpExporter:
    """POSTs encoded requests to one OTLP/HTTP traces endpoint.

    ``export`` retries a retryable failure up to ``attempts`` times in all, waiting
    ``Retry-After`` (if given and ≤ 5 s) or 0.5 s, 1 s, 2 s...; a request that still
    fails is dropped, counted in ``failed`` and logged (the first time, then every
    100th).  ``timeout`` bounds each POST, and ``deadline`` (set when closing) all of
    them: a cancellation alone is not enough, since aiohttp turns a cancellation that
    meets its own timer into a ``TimeoutError``, which is retryable.
    """

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.endpoint = endpoint
        self._headers = {**(headers or {}), "Content-Type": "application/x-protobuf"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = max(1, attempts)
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        """Requests the collector accepted."""
        self.failed = 0
        """Requests dropped after their last attempt."""
        self.last_error: str | None = None
        self.deadline: float | None = None
        """Loop time after which nothing more is sent or retried (set when closing)."""

    async def export(self, body: bytes) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=2), cookie_jar=aiohttp.DummyCookieJar()
            )
        loop = asyncio.get_running_loop()
        error = "not sent: the exporter is closing"
        for attempt in range(self._attempts):
            timeout = self._timeout
            if self.deadline is not None:
                left = self.deadline - loop.time()
                if left <= 0:
                    break
                timeout = aiohttp.ClientTimeout(total=min(left, self._timeout.total or left))
            wait: float | None = None
            try:
                async with self._session.post(
                    self.endpoint, data=body, headers=self._headers, timeout=timeout
                ) as resp:
                    await resp.read()
                    if resp.status < 300:
                        self.sent += 1
                        return True
                    error = f"HTTP {resp.status}"
                    if resp.status not in _RETRYABLE:
                        break
                    wait = _retry_after(resp.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
            except Exception as exc:  # a request that cannot be made (bad URL, header clash)
                error = f"{type(exc).__name__}: {exc}"[:200]
                break
            if attempt + 1 < self._attempts:
                delay = wait if wait is not None else 0.5 * 2**attempt
                if self.deadline is not None and loop.time() + delay >= self.deadline:
                    break
                await self._sleep(delay)
        self.failed += 1
        self.last_error = error
        if self.failed == 1 or self.failed % 100 == 0:
            log.warning(
                "tracer: exporting spans to %s failed (%s); %d batches dropped so far",
                redact_url(self.endpoint, keep_user=False),
                error,
                self.failed,
            )
        return False

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds <= 5 else None
