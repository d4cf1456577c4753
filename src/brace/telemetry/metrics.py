"""Prometheus metrics: what Brace did, and what state its layers are in now.

Two kinds of series, both exposed from one :class:`~prometheus_client.CollectorRegistry`
per :class:`Metrics` (never the process-global one: two gateways in one process never
share a counter):

* **Event series** — counters and histograms bumped by :meth:`Metrics.observe_request`
  (one :class:`~brace.telemetry.record.RequestRecord` per request, its attempts
  included) and :meth:`Metrics.on_event` (retries, fallbacks, hedges, breaker
  transitions).  They live in plain dicts keyed by label tuples, so recording is a
  few dict updates and a bisect: no lock, no allocation beyond the key tuple.
* **State series** — breaker state, queue depth, limiter headroom, retry budget,
  limiter mode — read at scrape time from ``engine.deployments()``,
  ``engine.admission()`` and ``engine.limiter.describe()``; the request path does no
  work for them.  Extra sources (the store writer's queue, say) plug in with
  :meth:`Metrics.add_source`.

Everything is called on the engine's event loop; a scrape copies each dict (atomic
under the GIL) before reading it, so scraping from another thread is safe too.

Label values come only from the config (model groups, deployment ids) or from fixed
sets in the code (error classes, HTTP status codes, breaker states), so cardinality
is bounded.  No request id, trace id, tenant or message content is ever a label.
The full list is in ``docs/metrics.md``.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from ..events import BreakerChanged, FellBack, Hedged, Retried
from .record import RequestEnded, RequestRecord

if TYPE_CHECKING:
    from ..config import BraceConfig
    from ..events import EventBus
    from ..state import LimiterBackend

__all__ = ["DURATION_BUCKETS", "TTFT_BUCKETS", "EngineView", "Metrics"]


class EngineView(Protocol):
    """What telemetry reads of an engine (``brace.engine.Engine`` is one): its config,
    its event bus, and its state at scrape time.  Telemetry sits below the engine and
    never imports it."""

    config: BraceConfig
    events: EventBus
    limiter: LimiterBackend | None

    def deployments(self) -> dict[str, list[dict[str, Any]]]: ...

    def admission(self) -> dict[str, dict[str, Any]]: ...


log = logging.getLogger("brace.telemetry")

DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""OpenTelemetry GenAI ``gen_ai.client.operation.duration`` boundaries (seconds)."""

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
"""OpenTelemetry GenAI ``gen_ai.server.time_to_first_token`` boundaries (seconds)."""

_NONE = "none"
_BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_LIMITER_MODES = ("local", "shared", "degraded")

Source = Callable[[], Mapping[str, float]]
"""An extra metric source: ``{name: value}``, read at scrape time (see :meth:`Metrics.add_source`)."""

Key = tuple[str, ...]

_WRITER_FIELDS = {
    "queued": ("queue_depth", "Records waiting for the writer."),
    "written": ("written_total", "Records written."),
    "dropped": ("dropped_total", "Records dropped: the writer's queue was full or it failed."),
    "errors": ("errors_total", "Write errors (a failed batch is retried once, then dropped)."),
}


class _Counter:
    """One counter family: label tuple → value."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.values: dict[Key, float] = {}

    def inc(self, key: Key, amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.copy().items():
            fam.add_metric(key, value)
        return fam


class _Histogram:
    """One histogram family: label tuple → [count per bucket (+Inf last), sum]."""

    __slots__ = ("bounds", "doc", "labels", "les", "name", "series")

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]
    ) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.bounds = bounds
        self.les = [repr(float(b)) for b in bounds] + ["+Inf"]
        self.series: dict[Key, tuple[list[int], list[float]]] = {}

    def observe(self, key: Key, value: float) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = ([0] * (len(self.bounds) + 1), [0.0])
        s[0][bisect_left(self.bounds, value)] += 1  # le is inclusive: first bound >= value
        s[1][0] += value

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, (counts, total) in self.series.copy().items():
            cumulative, buckets = 0, []
            for le, n in zip(self.les, list(counts), strict=True):
                cumulative += n
                buckets.append((le, float(cumulative)))
            fam.add_metric(key, buckets, total[0])
        return fam


class Metrics:
    """Brace's Prometheus metrics for one engine (see the module docstring)."""

    kinds: frozenset[type] = frozenset({RequestEnded, Retried, FellBack, Hedged, BreakerChanged})
    """The events :meth:`on_event` counts.  Attempts are read from each request's
    record, so metrics never need :class:`~brace.events.AttemptEnded`."""

    def __init__(self, engine: EngineView, *, sources: Iterable[Source] = ()) -> None:
        self.engine = engine
        self._sources: list[Source] = list(sources)
        self._docs: dict[str, str] = {}
        self.collect_errors = 0
        """Scrape-time state reads that raised (the rest of the scrape still works)."""

        c, h = _Counter, _Histogram
        self._requests = c(
            "brace_requests",
            "Requests answered, by model asked, group and deployment that answered, "
            "HTTP status, error class (none on success) and stream.",
            ("model", "group", "deployment", "status", "error_class", "stream"),
        )
        self._duration = h(
            "brace_request_duration_seconds",
            "Time from a request's arrival in the stack to its end (a stream's last "
            "chunk), retries, fallbacks and queueing included.",
            ("model", "group", "deployment", "stream"),
            DURATION_BUCKETS,
        )
        self._ttft = h(
            "brace_time_to_first_token_seconds",
            "Streams: time from a request's arrival to its first chunk.",
            ("model", "group", "deployment"),
            TTFT_BUCKETS,
        )
        self._queue_wait = h(
            "brace_queue_wait_seconds",
            "Time requests that waited spent in the admission queue.",
            ("model",),
            TTFT_BUCKETS,
        )
        self._tokens = c(
            "brace_tokens",
            "Tokens reported by upstreams, by type: input, output, cached (part of "
            "input) and reasoning (part of output).",
            ("model", "group", "deployment", "type"),
        )
        self._cost = c(
            "brace_cost_usd",
            "Estimated spend in US dollars, from the configured prices.",
            ("model", "group", "deployment"),
        )
        self._errors = c(
            "brace_errors",
            "Failures by class: outcome=absorbed counts failed attempts of requests "
            "that still succeeded (the caller never saw them); outcome=surfaced counts "
            "requests that ended in an error for the caller.",
            ("model", "error_class", "outcome"),
        )
        self._attempts = c(
            "brace_attempts",
            "Calls to upstream deployments, by outcome (error_class none on success) "
            "and upstream HTTP status (none without one).",
            ("group", "deployment", "error_class", "status"),
        )
        self._attempt_duration = h(
            "brace_attempt_duration_seconds",
            "One upstream call: time to the answer (JSON) or to the first chunk (stream).",
            ("group", "deployment"),
            DURATION_BUCKETS,
        )
        self._retries = c(
            "brace_retries",
            "Retries, by group, the deployment whose failure caused them and its class.",
            ("group", "deployment", "error_class"),
        )
        self._fallbacks = c(
            "brace_fallbacks",
            "Fallbacks from one model group to another, by the error class that caused them.",
            ("from_model", "to_model", "error_class"),
        )
        self._hedges = c("brace_hedges", "Hedged (second) attempts sent.", ("group",))
        self._transitions = c(
            "brace_breaker_transitions",
            "Circuit breaker state changes per deployment.",
            ("deployment", "from_state", "to_state"),
        )
        self._counters = (
            self._requests,
            self._tokens,
            self._cost,
            self._errors,
            self._attempts,
            self._retries,
            self._fallbacks,
            self._hedges,
            self._transitions,
        )
        self._histograms = (self._duration, self._ttft, self._queue_wait, self._attempt_duration)
        self._dispatch: dict[type, Callable[[Any], None]] = {
            Retried: self._retried,
            FellBack: self._fell_back,
            Hedged: self._hedged,
            BreakerChanged: self._breaker_changed,
            RequestEnded: self._request_ended,
        }
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    # ------------------------------------------------------------------ recording

    def observe_request(self, record: RequestRecord) -> None:
        """Count one finished request (called once per request; cheap)."""
        model = record.model
        group = record.group or model
        dep = record.deployment or _NONE
        err = record.error_class
        stream = "true" if record.stream else "false"
        self._requests.inc((model, group, dep, str(record.status), err or _NONE, stream))
        self._duration.observe((model, group, dep, stream), record.duration)
        if record.ttft is not None:
            self._ttft.observe((model, group, dep), record.ttft)
        if record.queue_wait is not None:
            self._queue_wait.observe((model,), record.queue_wait)
        if err is not None:
            self._errors.inc((model, err, "surfaced"))
        attempts, attempt_duration = self._attempts, self._attempt_duration
        for a in record.attempts:
            a_err = a.error_class
            status = str(a.status) if a.status is not None else _NONE
            attempts.inc((a.group, a.deployment, a_err or _NONE, status))
            attempt_duration.observe((a.group, a.deployment), a.duration)
            if a_err is not None and err is None:
                self._errors.inc((model, a_err, "absorbed"))
        tokens = self._tokens
        if record.input_tokens:
            tokens.inc((model, group, dep, "input"), record.input_tokens)
        if record.output_tokens:
            tokens.inc((model, group, dep, "output"), record.output_tokens)
        if record.cached_tokens:
            tokens.inc((model, group, dep, "cached"), record.cached_tokens)
        if record.reasoning_tokens:
            tokens.inc((model, group, dep, "reasoning"), record.reasoning_tokens)
        if record.cost_usd:
            self._cost.inc((model, group, dep), record.cost_usd)

    def on_event(self, event: Any) -> None:
        """Count one engine event (others are ignored)."""
        fn = self._dispatch.get(type(event))
        if fn is not None:
            fn(event)

    def _request_ended(self, event: RequestEnded) -> None:
        self.observe_request(event.record)

    def _retried(self, e: Retried) -> None:
        self._retries.inc((e.group, e.deployment, e.error_class))

    def _fell_back(self, e: FellBack) -> None:
        self._fallbacks.inc((e.from_group, e.to_group, e.error_class))

    def _hedged(self, e: Hedged) -> None:
        self._hedges.inc((e.group,))

    def _breaker_changed(self, e: BreakerChanged) -> None:
        self._transitions.inc((e.deployment, e.old, e.new))

    # ------------------------------------------------------------------ exposing

    def add_source(self, source: Source, docs: Mapping[str, str] | None = None) -> None:
        """Expose more values, read at every scrape: ``source()`` returns
        ``{name: value}``; each becomes ``brace_<name>`` (the prefix is added when
        missing), a counter when the name ends in ``_total``, else a gauge.  ``docs``
        gives a HELP text by name.  A source that raises is skipped for that scrape."""
        self._sources.append(source)
        if docs:
            self._docs.update({_prefixed(k): v for k, v in docs.items()})

    def add_writer(self, name: str, stats: Callable[[], Mapping[str, Any]]) -> None:
        """Expose a background writer's counters (the request-log store, the tracer):
        ``stats()`` returns any of ``queued``, ``written``, ``dropped``, ``errors``,
        exposed as ``brace_<name>_queue_depth`` (gauge) and ``brace_<name>_written_total``,
        ``..._dropped_total``, ``..._errors_total`` (counters)."""

        def source() -> dict[str, float]:
            s = stats()
            return {
                f"{name}_{suffix}": float(s[key])
                for key, (suffix, _) in _WRITER_FIELDS.items()
                if isinstance(s.get(key), int | float)
            }

        self.add_source(
            source, {f"{name}_{suffix}": doc for suffix, doc in _WRITER_FIELDS.values()}
        )

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition (format 0.0.4, which every Prometheus reads)
        and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4

    def collect(self) -> Iterator[Metric]:
        """Every family: event series, then state read from the engine now."""
        for counter in self._counters:
            yield counter.family()
        for hist in self._histograms:
            yield hist.family()
        for read in (self._deployment_state, self._admission_state, self._limiter_state):
            try:
                yield from read()
            except Exception:  # a scrape must not fail because one state read did
                self.collect_errors += 1
                log.debug("metrics: %s failed", read.__name__, exc_info=True)
        yield from self._source_state()

    def _deployment_state(self) -> list[Metric]:
        labels = ["group", "deployment"]
        breaker = GaugeMetricFamily(
            "brace_breaker_state",
            "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "brace_deployment_in_flight", "Attempts in flight to the deployment.", labels=labels
        )
        concurrency = GaugeMetricFamily(
            "brace_limiter_concurrency_limit",
            "Adaptive concurrency limit of the deployment (AIMD).",
            labels=labels,
        )
        rpm = GaugeMetricFamily(
            "brace_limiter_effective_rpm",
            "Requests per minute the deployment is paced to now (configured or learned "
            "limit times the AIMD factor); absent when unlimited.",
            labels=labels,
        )
        tpm = GaugeMetricFamily(
            "brace_limiter_effective_tpm",
            "Tokens per minute the deployment is paced to now; absent when unlimited.",
            labels=labels,
        )
        learned_rpm = GaugeMetricFamily(
            "brace_limiter_learned_rpm",
            "Requests per minute learned from the upstream's rate-limit headers.",
            labels=labels,
        )
        learned_tpm = GaugeMetricFamily(
            "brace_limiter_learned_tpm",
            "Tokens per minute learned from the upstream's rate-limit headers.",
            labels=labels,
        )
        factor = GaugeMetricFamily(
            "brace_limiter_rate_factor",
            "AIMD factor applied to the rate limits (1 = full, shrinks on upstream 429s).",
            labels=labels,
        )
        throttled = CounterMetricFamily(
            "brace_upstream_rate_limited",
            "Upstream 429s seen by the deployment's pacer.",
            labels=labels,
        )
        budget = GaugeMetricFamily(
            "brace_retry_budget_remaining",
            "Retries the deployment's retry budget still allows now.",
            labels=labels,
        )
        for group, deployments in self.engine.deployments().items():
            for d in deployments:
                key = [group, str(d.get("id"))]
                b = d.get("breaker")
                if b is not None:
                    breaker.add_metric(key, _BREAKER_STATES.get(b.get("state"), 2.0))
                cap = d.get("capacity")
                if cap is not None:
                    _add(in_flight, key, cap.get("in_flight"))
                    _add(concurrency, key, cap.get("concurrency_limit"))
                    _add(rpm, key, cap.get("effective_rpm"))
                    _add(tpm, key, cap.get("effective_tpm"))
                    _add(learned_rpm, key, cap.get("learned_rpm"))
                    _add(learned_tpm, key, cap.get("learned_tpm"))
                    _add(factor, key, cap.get("factor"))
                    _add(throttled, key, cap.get("upstream_429s"))
                rb = d.get("retry_budget")
                if rb is not None:
                    left = rb.get("allowed", 0.0) - rb.get("retries", 0.0)
                    budget.add_metric(key, max(0.0, float(left)))
        return [
            breaker,
            in_flight,
            concurrency,
            rpm,
            tpm,
            learned_rpm,
            learned_tpm,
            factor,
            throttled,
            budget,
        ]

    def _admission_state(self) -> list[Metric]:
        depth = GaugeMetricFamily(
            "brace_queue_depth",
            "Requests waiting in the model group's admission queue now.",
            labels=["model"],
        )
        shed = CounterMetricFamily(
            "brace_shed",
            "Requests refused by admission (queue full or no capacity before the "
            "deadline): honest 429s.",
            labels=["model"],
        )
        waited = CounterMetricFamily(
            "brace_admitted_after_wait",
            "Requests admitted after waiting in the queue.",
            labels=["model"],
        )
        for model, snap in self.engine.admission().items():
            _add(depth, [model], snap.get("queue_depth"))
            _add(shed, [model], snap.get("shed"))
            _add(waited, [model], snap.get("admitted_after_wait"))
        return [depth, shed, waited]

    def _limiter_state(self) -> list[Metric]:
        out: list[Metric] = []
        events = getattr(self.engine, "events", None)
        if events is not None:
            errors = CounterMetricFamily(
                "brace_event_subscriber_errors",
                "Telemetry subscribers that raised on an event (the request went on).",
            )
            errors.add_metric([], float(events.errors))
            out.append(errors)
        limiter = self.engine.limiter
        if limiter is None:
            return out
        desc = limiter.describe()
        backend, current = str(desc.get("backend", "local")), desc.get("mode", "local")
        mode = GaugeMetricFamily(
            "brace_limiter_mode",
            "Rate-limit state backend mode: 1 for the current mode (local: in-process; "
            "shared: Redis; degraded: Redis unreachable, pacing locally), 0 for others.",
            labels=["backend", "mode"],
        )
        for m in _LIMITER_MODES:
            mode.add_metric([backend, m], 1.0 if m == current else 0.0)
        out.append(mode)
        if "live_instances" in desc:
            out.append(
                GaugeMetricFamily(
                    "brace_limiter_live_instances",
                    "Gateway instances sharing the Redis limiter (heartbeats).",
                    value=float(desc["live_instances"]),
                )
            )
        if "degraded_calls" in desc:
            out.append(
                CounterMetricFamily(
                    "brace_limiter_degraded_calls",
                    "Limiter calls answered locally because Redis was unreachable.",
                    value=float(desc["degraded_calls"]),
                )
            )
        return out

    def _source_state(self) -> Iterator[Metric]:
        for source in list(self._sources):
            try:
                values = dict(source())
            except Exception:  # a broken source must not fail the scrape
                self.collect_errors += 1
                log.debug("metrics: source %r failed", source, exc_info=True)
                continue
            for name, value in values.items():
                full = _prefixed(name)
                doc = self._docs.get(full, full)
                if full.endswith("_total"):
                    yield CounterMetricFamily(full[: -len("_total")], doc, value=float(value))
                else:
                    yield GaugeMetricFamily(full, doc, value=float(value))


def _prefixed(name: str) -> str:
    return name if name.startswith("brace_") else f"brace_{name}"


def _add(fam: GaugeMetricFamily | CounterMetricFamily, key: list[str], value: Any) -> None:
    if value is not None:
        fam.add_metric(key, float(value))


class _Collector(Collector):
    """Adapts :class:`Metrics` to the registry's collector protocol."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()
